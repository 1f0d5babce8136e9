# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The ``debug`` exporter: logs what would be exported.

- ``basic``: one line per export (resources, samples, off-CPU time, OTLP bytes);
- ``normal``: plus one line per process (pid, name, container, samples);
- ``detailed``: plus every stack of every process, folded (``name;root;...;leaf count``).

It logs the profile only: never headers, keys or exporter settings.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from .base import LocalExporter, config_error
from ..profile.folded import folded_counts, process_name

VERBOSITIES = ('basic', 'normal', 'detailed')


class DebugExporter(LocalExporter):
    kind = 'debug'

    def __init__(
        self,
        config: dict,
        *,
        telemetry: Any,
        encoder: Any = None,
        log: Optional[logging.Logger] = None,
    ) -> None:
        verbosity = str((config or {}).get('verbosity') or 'basic').lower()
        if verbosity not in VERBOSITIES:
            raise config_error(
                'exporters.debug.verbosity must be one of {}, got {!r}'.format(', '.join(VERBOSITIES), verbosity)
            )
        self.verbosity = verbosity
        super().__init__(telemetry, encoder, log)

    def export(self, profile: Any) -> None:
        self._seq += 1
        try:
            self._export(profile)
        except Exception as e:
            self._telemetry.count('export.errors', 1, ('exporter:debug', 'reason:encode'))
            self.log.error('debug exporter: cannot describe the profile: %s: %s', type(e).__name__, e)
            return
        self._telemetry.count('export.count', 1, ('exporter:debug',))

    def _export(self, profile: Any) -> None:
        size = 'n/a'
        if self._encoder is not None:
            try:
                size = str(len(self._encoder.raw(profile)))
            except Exception:
                size = 'n/a'
        resources = profile.resources
        off_cpu_ns = sum(s.value for r in resources for s in r.off_cpu_samples)
        self.log.info(
            'host_profiler export #%d: %d resources, %d samples, %d stacks, off-cpu %.3fs, %s bytes (otlp), '
            'duration %.1fs',
            self._seq,
            len(resources),
            profile.total_samples,
            sum(len(r.samples) for r in resources),
            off_cpu_ns / 1e9,
            size,
            profile.duration_nano / 1e9,
        )
        if self.verbosity == 'basic':
            return
        ordered = sorted(resources, key=lambda r: -sum(s.value for s in r.samples))
        for r in ordered:
            extra = ''
            cid = r.attributes.get('container.id')
            if cid:
                extra += ' container={}'.format(str(cid)[:12])
            svc = r.attributes.get('service.name')
            if svc:
                extra += ' service={}'.format(svc)
            self.log.info(
                '  pid=%d name=%s samples=%d stacks=%d off_cpu_ms=%.1f%s',
                r.pid,
                process_name(r),
                sum(s.value for s in r.samples),
                len(r.samples),
                sum(s.value for s in r.off_cpu_samples) / 1e6,
                extra,
            )
        if self.verbosity != 'detailed':
            return
        for stack, count in folded_counts(profile).items():
            self.log.info('    %s %d', stack, count)
        off = folded_counts(profile, off_cpu=True)
        if off:
            self.log.info('  off-cpu stacks (ns):')
            for stack, ns in off.items():
                self.log.info('    %s %d', stack, ns)
