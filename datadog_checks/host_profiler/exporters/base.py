# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The exporter interface and ``build_exporters`` (from the instance's ``exporters:``).

``exporters:`` section::

    exporters:
      otlp_http:                      # a list (a single mapping is accepted too)
        - endpoint: https://otlp.datadoghq.com   # or site: datadoghq.com
          headers: {dd-api-key: ...}             # or api_key: ...
          compression: gzip            # gzip (default) | zstd | none
          timeout: 10                  # seconds per request
          queue_size_mb: 64            # bytes held while the endpoint is slow or down
          retry: {initial_interval: 5, max_interval: 30, max_elapsed_time: 0}
      debug: {verbosity: basic}        # basic | normal | detailed
      file: {directory: DIR, formats: [otlp], max_files: 100}
"""

from __future__ import annotations

import abc
import logging
from typing import Any, Callable, List, Optional


def config_error(message: str) -> Exception:
    try:
        from datadog_checks.base import ConfigurationError
    except Exception:  # pragma: no cover - base always installed with the check
        return ValueError(message)
    return ConfigurationError(message)


class Exporter(abc.ABC):
    """Receives every exported ``Profile``.

    - ``export(profile)`` never blocks beyond a bounded time (network exporters only
      encode and enqueue);
    - ``flush(timeout_s)`` waits until what was exported has left (True) or the time is up
      (False);
    - ``close()`` releases threads and files, within a bounded time.
    """

    name: str = ''
    kind: str = ''

    @abc.abstractmethod
    def export(self, profile: Any) -> None: ...

    def flush(self, timeout_s: float) -> bool:
        return True

    def close(self) -> None:
        return None

    def status(self):
        """(level 'ok'|'warning'|'critical', message) for host_profiler.can_export, or None
        when this exporter has no say in it (debug)."""
        return None


class LocalExporter(Exporter):
    """An exporter that writes on this host (debug, file): named after its kind, numbering its
    exports, counting them under ``export.count{exporter:KIND}``."""

    def __init__(self, telemetry: Any, encoder: Any, log: Optional[logging.Logger]) -> None:
        self.name = self.kind
        self._telemetry = telemetry
        self._encoder = encoder
        self.log = log or logging.getLogger(type(self).__module__)
        self._seq = 0
        telemetry.declare('export.count', ('exporter:' + self.kind,))


def _as_list(value: Any, path: str) -> List[dict]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    if isinstance(value, (list, tuple)):
        out = []
        for i, v in enumerate(value):
            if v is None:
                v = {}
            if not isinstance(v, dict):
                raise config_error('{}[{}] must be a mapping'.format(path, i))
            out.append(v)
        return out
    raise config_error('{} must be a mapping or a list of mappings'.format(path))


def _number_same_hosts(exporters: List[Exporter]) -> None:
    """Two exporters to the same host: the second is named ``otlp_http/HOST#2`` (and so on)."""
    hosts: dict = {}
    for exp in exporters:
        host = getattr(exp, 'host', None)
        if host is None:
            continue
        n = hosts.get(host, 0)
        hosts[host] = n + 1
        if n:
            exp.name = '{}#{}'.format(exp.name, n + 1)


def _default_http_factory(_config: dict) -> Any:
    import requests

    return requests.Session()


def build_exporters(
    config: Optional[dict],
    *,
    http_factory: Optional[Callable[[dict], Any]] = None,
    telemetry: Any = None,
    mode: str = 'standalone',
    version: str = '',
    log: Optional[logging.Logger] = None,
    encoder: Any = None,
) -> List[Exporter]:
    """Build the exporters of the ``exporters:`` section (the whole instance is accepted too).

    ``http_factory(exporter_config)`` returns a requests-like session (``.post(url, data=,
    headers=, timeout=)``); in the check it returns ``self.http`` (RequestsWrapper, whose
    ``extra_headers`` are used), standalone a ``requests.Session`` (the default).
    ``mode`` is 'agent' or 'standalone' (picks ``dd-evp-origin``); ``version`` is sent as
    ``dd-evp-origin-version`` and as the OTLP scope version. All exporters share one encoder,
    so each profile is encoded (and compressed per compression) once.
    """
    from ..runtime.telemetry import Telemetry
    from .encoding import SharedEncoder, default_otlp_encoder
    from .registry import EXPORTERS, BuildContext, all_keys, exporter_keys, section_of

    log = log or logging.getLogger('datadog_checks.host_profiler.exporters')
    telemetry = telemetry if telemetry is not None else Telemetry()
    http_factory = http_factory or _default_http_factory
    if not version:
        try:
            from ..__about__ import __version__ as version  # type: ignore
        except Exception:
            version = '0.0.0'
    config = dict(config or {})
    if isinstance(config.get('exporters'), dict):
        config = dict(config['exporters'])
    unknown = sorted(set(config) - set(all_keys()))
    if unknown:
        raise config_error(
            'exporters: unknown exporter(s) {} (known: {})'.format(', '.join(unknown), ', '.join(exporter_keys()))
        )
    encoder = encoder or SharedEncoder(default_otlp_encoder(version))
    context = BuildContext(telemetry=telemetry, encoder=encoder, http_factory=http_factory, mode=mode,
                           version=version, log=log)

    exporters: List[Exporter] = []
    try:
        for kind in EXPORTERS:
            key, value = section_of(config, kind)
            if key is None:
                continue
            if kind.many or kind.list_too:
                for i, entry in enumerate(_as_list(value, 'exporters.' + key)):
                    one = not kind.many and isinstance(value, dict)
                    path = 'exporters.' + key if one else 'exporters.{}[{}]'.format(key, i)
                    exporters.append(kind.build(entry, path, context))
            else:
                if value is not None and not isinstance(value, dict):
                    raise config_error('exporters.{} must be a mapping{}'.format(key, kind.hint))
                exporters.append(kind.build(value or {}, 'exporters.' + key, context))
        _number_same_hosts(exporters)
    except Exception:
        for e in exporters:
            try:
                e.close()
            except Exception:
                pass
        raise
    return exporters
