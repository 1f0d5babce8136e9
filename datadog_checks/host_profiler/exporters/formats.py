# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Text and file formats used by the debug and file exporters.

``folded_lines`` is the folded-stack format of the design (``comm;root;...;leaf count``,
kernel frames suffixed ``_[k]``), used by the debug exporter; the file exporter writes
``profile.pprof.encode`` and ``profile.folded.to_folded`` (imported lazily).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, List

from ..profile.model import FRAME_KERNEL


def resource_name(resource: Any) -> str:
    a = resource.attributes
    for key in ('process.executable.name', 'process.command', 'service.name'):
        v = a.get(key)
        if v:
            return str(v)
    path = a.get('process.executable.path')
    if path:
        return str(path).rsplit('/', 1)[-1]
    return 'pid-{}'.format(resource.pid)


def _frame_name(frame: Any) -> str:
    name = frame.display_name.replace(';', ':').replace('\n', ' ')
    if frame.kind == FRAME_KERNEL:
        name += '_[k]'
    return name


def folded_lines(profile: Any, off_cpu: bool = False) -> List[str]:
    """One line per distinct stack: ``name;root;...;leaf count`` (aggregated, in first-seen order)."""
    acc: 'OrderedDict[str, int]' = OrderedDict()
    for r in profile.resources:
        name = resource_name(r).replace(';', ':').replace(' ', '_')
        for s in r.off_cpu_samples if off_cpu else r.samples:
            key = ';'.join([name] + [_frame_name(f) for f in reversed(s.frames)])
            acc[key] = acc.get(key, 0) + int(s.value)
    return ['{} {}'.format(k, v) for k, v in acc.items()]


def pprof_bytes(profile: Any) -> bytes:
    """gzip-compressed pprof of the profile (``profile.pprof.encode``)."""
    from ..profile import pprof

    return pprof.encode(profile)


def folded_text(profile: Any) -> str:
    """Folded stacks (``profile.folded.to_folded``), falling back to ``folded_lines``."""
    try:
        from ..profile import folded
    except ImportError:  # pragma: no cover - always present in the package
        lines = folded_lines(profile)
        return '\n'.join(lines) + ('\n' if lines else '')
    out = folded.to_folded(profile)
    return out if not out or out.endswith('\n') else out + '\n'
