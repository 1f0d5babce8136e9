# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The receiver's ``symbol_uploader`` section, parsed and validated.

Keys and defaults follow Datadog's Go host profiler: ``enabled`` (true), ``upload_dynamic_symbols``
(false), ``upload_go_pcln_tab`` (true), ``symbol_query_interval`` (5 s, 0 = no batching),
``dry_run`` (false), ``symbol_endpoints: [{site, api_key, url?, query_url?}]``. ``queue_size``
(1000) and the worker counts are extras with the Go host profiler's values. ``url`` replaces
``https://sourcemap-intake.<site>`` and ``query_url`` replaces ``https://api.<site>``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional, Tuple

from datadog_checks.base import ConfigurationError

SECTION = 'receiver.symbol_uploader'

DEFAULT_QUEUE_SIZE = 1000
DEFAULT_QUERY_INTERVAL_S = 5.0
MAX_BATCH = 100
RETRIEVAL_WORKERS = 10
UPLOAD_WORKERS = 10
QUERY_WORKERS_UNBATCHED = 10
OBJCOPY_TIMEOUT_S = 10.0
UPLOAD_TIMEOUT_S = 15.0
QUERY_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class SymbolEndpoint:
    site: str
    api_key: str = field(repr=False)  # never printed
    url: str = ''  # base of the upload URL, default https://sourcemap-intake.<site>
    query_url: str = ''  # base of the query URL, default https://api.<site>

    @property
    def upload_endpoint(self) -> str:
        return (self.url or 'https://sourcemap-intake.' + self.site).rstrip('/') + '/api/v2/srcmap'

    @property
    def query_endpoint(self) -> str:
        return (self.query_url or 'https://api.' + self.site).rstrip('/') + '/api/v2/profiles/symbols/query'

    @property
    def name(self) -> str:
        """A label safe to log and tag with (no key)."""
        return self.site or self.url


@dataclass(frozen=True)
class UploaderConfig:
    enabled: bool = True
    upload_dynamic_symbols: bool = False
    upload_go_pcln_tab: bool = True
    symbol_query_interval: float = DEFAULT_QUERY_INTERVAL_S
    dry_run: bool = False
    queue_size: int = DEFAULT_QUEUE_SIZE
    endpoints: Tuple[SymbolEndpoint, ...] = ()
    disable_debug_section_compression: bool = False  # tests only, as in the Go host profiler
    retrieval_workers: int = RETRIEVAL_WORKERS
    upload_workers: int = UPLOAD_WORKERS
    objcopy: str = 'objcopy'
    objcopy_timeout: float = OBJCOPY_TIMEOUT_S
    upload_timeout: float = UPLOAD_TIMEOUT_S
    query_timeout: float = QUERY_TIMEOUT_S
    temp_dir: Optional[str] = None


_DURATION = re.compile(r'^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*$')


def parse_duration(value: Any, key: str) -> float:
    """Seconds from a number or a Go-style duration string ('5s', '500ms', '1m')."""
    if isinstance(value, bool):
        raise ConfigurationError('{}.{}: expected a duration, got {!r}'.format(SECTION, key, value))
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ConfigurationError('{}.{}: invalid duration {!r}'.format(SECTION, key, value))
        seconds = float(m.group(1)) * {'ms': 0.001, 's': 1, 'm': 60, 'h': 3600, None: 1}[m.group(2)]
    if seconds < 0:
        raise ConfigurationError('{}.{}: must be >= 0'.format(SECTION, key))
    return seconds


def _bool(raw: Mapping[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ('true', 'false', '1', '0', 'yes', 'no'):
        return value.lower() in ('true', '1', 'yes')
    raise ConfigurationError('{}.{}: expected a boolean, got {!r}'.format(SECTION, key, value))


def parse_config(raw: Optional[Mapping[str, Any]]) -> UploaderConfig:
    """Validate the section. Enabled requires >= 1 endpoint, each with site (or url) and api_key."""
    raw = dict(raw or {})
    enabled = _bool(raw, 'enabled', True)
    endpoints: List[SymbolEndpoint] = []
    for i, ep in enumerate(raw.get('symbol_endpoints') or []):
        if not isinstance(ep, Mapping):
            raise ConfigurationError('{}.symbol_endpoints[{}]: expected a mapping'.format(SECTION, i))
        site = str(ep.get('site') or '').strip()
        api_key = str(ep.get('api_key') or '').strip()
        url = str(ep.get('url') or '').strip()
        query_url = str(ep.get('query_url') or '').strip()
        if enabled and not api_key:
            raise ConfigurationError('{}.symbol_endpoints[{}].api_key is required'.format(SECTION, i))
        if enabled and not site and not (url and query_url):
            raise ConfigurationError('{}.symbol_endpoints[{}].site is required'.format(SECTION, i))
        endpoints.append(SymbolEndpoint(site=site, api_key=api_key, url=url, query_url=query_url))
    if enabled and not endpoints:
        raise ConfigurationError('{}.symbol_endpoints: at least one endpoint is required when enabled'.format(SECTION))
    queue_size = raw.get('queue_size', DEFAULT_QUEUE_SIZE)
    if not isinstance(queue_size, int) or isinstance(queue_size, bool) or queue_size < 1:
        raise ConfigurationError('{}.queue_size: expected a positive integer'.format(SECTION))
    interval = raw.get('symbol_query_interval', DEFAULT_QUERY_INTERVAL_S)
    kwargs = {}
    for key in ('retrieval_workers', 'upload_workers'):
        if key in raw:
            value = raw[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError('{}.{}: expected a positive integer'.format(SECTION, key))
            kwargs[key] = value
    for key in ('objcopy_timeout', 'upload_timeout', 'query_timeout'):
        if key in raw:
            kwargs[key] = parse_duration(raw[key], key)
    if raw.get('objcopy'):
        kwargs['objcopy'] = str(raw['objcopy'])
    if raw.get('temp_dir'):
        kwargs['temp_dir'] = str(raw['temp_dir'])
    return UploaderConfig(
        enabled=enabled,
        upload_dynamic_symbols=_bool(raw, 'upload_dynamic_symbols', False),
        upload_go_pcln_tab=_bool(raw, 'upload_go_pcln_tab', True),
        symbol_query_interval=parse_duration(DEFAULT_QUERY_INTERVAL_S if interval is None else interval,
                                             'symbol_query_interval'),
        dry_run=_bool(raw, 'dry_run', False),
        queue_size=queue_size,
        endpoints=tuple(endpoints),
        disable_debug_section_compression=_bool(raw, 'disable_debug_section_compression', False),
        **kwargs
    )
