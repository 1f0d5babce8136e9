# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The diagnostics file every Agent flare collects.

Python checks have no flare hook, but a flare takes every ``*.log`` / ``*.log.N`` under
the Agent's log directory, unscrubbed. So the check keeps ``host_profiler_diagnostics.log``
there: one JSON document (schema: ``diagnostics_schema.json``) with the scrubbed effective
config, the sampler state, telemetry totals and gauges, the kernel/BPF probe, the last
errors, the top stacks of the last export and, in ``extra.file_refusals``, the last files
the opener refused to read for a process (path, pid, reason; ``host.files``). The previous
document is kept as ``.1``.

``maybe_write(now)`` rewrites it at most once per ``min_interval`` (60 s); the document is
shrunk until it fits ``max_bytes`` (1 MiB), and the whole text passes through the scrubber
before it touches the disk.
"""
from __future__ import annotations

import collections
import datetime
import json
import os
import tempfile
import threading
import time
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional

from ..host.files import recent_refusals
from . import scrub
from .telemetry import Telemetry

FILE_NAME = 'host_profiler_diagnostics.log'
SCHEMA_VERSION = 1
DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_MIN_INTERVAL = 60.0
DEFAULT_MAX_ERRORS = 50
DEFAULT_TOP_STACKS = 100
MAX_ERROR_CHARS = 2000
SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'diagnostics_schema.json')


def package_version() -> str:
    try:
        from datadog_checks.host_profiler.__about__ import __version__

        return str(__version__)
    except Exception:
        return 'unknown'


def _writable_dir(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return False
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def default_log_directory() -> str:
    """The Agent's log directory (dir of ``log_file``), else /var/log/datadog, else a temp dir."""
    candidates = []
    try:
        from datadog_checks.base.agent import datadog_agent

        log_file = datadog_agent.get_config('log_file')
        if log_file:
            candidates.append(os.path.dirname(str(log_file)))
    except Exception:
        pass
    candidates.append('/var/log/datadog')
    for c in candidates:
        if c and os.path.isdir(c) and os.access(c, os.W_OK | os.X_OK):
            return c
    fallback = os.path.join(tempfile.gettempdir(), 'host_profiler')
    _writable_dir(fallback)
    return fallback


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc).isoformat()


class Diagnostics:
    """Keeps the rotating, scrubbed diagnostics file up to date.

    Thread-safe: any stage may call ``record_error``; the check run calls the setters and
    ``maybe_write``. ``probe`` is a callable returning the kernel/BPF probe dict (default:
    ``host.kernel.probe``), run once and cached (``refresh_probe()`` re-runs it).
    """

    def __init__(
        self,
        directory: Optional[str] = None,
        telemetry: Optional[Telemetry] = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        max_errors: int = DEFAULT_MAX_ERRORS,
        top_stacks: int = DEFAULT_TOP_STACKS,
        probe: Optional[Callable[[], Dict[str, Any]]] = None,
        secrets: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory or default_log_directory()
        self.path = os.path.join(self.directory, FILE_NAME)
        self.telemetry = telemetry
        self.max_bytes = int(max_bytes)
        self.min_interval = float(min_interval)
        self.top_stacks_limit = int(top_stacks)
        self._clock = clock
        self._lock = threading.Lock()
        self._errors: Deque[Dict[str, Any]] = collections.deque(maxlen=max_errors)
        self._config: Dict[str, Any] = {}
        self._sampler: Dict[str, Any] = {}
        self._top_stacks: List[Dict[str, Any]] = []
        self._extra: Dict[str, Any] = {}
        self._probe_fn = probe
        self._probe: Optional[Dict[str, Any]] = None
        self._secrets: List[str] = [s for s in secrets if s]
        self._last_write: Optional[float] = None
        self._started = clock()
        self.write_errors = 0
        self._scrubber = scrub.LineScrubber()

    # -- inputs -----------------------------------------------------------------------------

    def set_config(self, instance: Optional[dict]) -> None:
        """The effective config (after converters); stored scrubbed, secrets remembered."""
        secrets = scrub.secrets_in(instance or {})
        with self._lock:
            self._secrets = sorted(set(self._secrets) | set(secrets), key=len, reverse=True)
            self._config = scrub.scrub_config(instance or {}, self._secrets)

    def set_sampler_state(self, state: Dict[str, Any]) -> None:
        """Free-form sampler state (running, frequency, cpus, maps, last drain...)."""
        with self._lock:
            self._sampler = dict(state or {})

    def set_top_stacks(self, folded: Optional[Dict[str, int]]) -> None:
        """Top stacks of the last export, given as folded stack -> count."""
        items = sorted((folded or {}).items(), key=lambda kv: (-kv[1], kv[0]))[: self.top_stacks_limit]
        with self._lock:
            self._top_stacks = [{'stack': str(k), 'count': int(v)} for k, v in items]

    def set_extra(self, key: str, value: Any) -> None:
        """Any other JSON-serialisable section (e.g. 'exporters', 'symbols')."""
        with self._lock:
            self._extra[key] = value

    def record_error(self, message: Any) -> None:
        text = scrub.scrub_text(message, self._secrets)
        if len(text) > MAX_ERROR_CHARS:
            text = text[:MAX_ERROR_CHARS] + '...'
        now = self._clock()
        with self._lock:
            self._errors.append({'time': _iso(now), 'message': text})

    def refresh_probe(self) -> Dict[str, Any]:
        fn = self._probe_fn
        if fn is None:
            from ..host.kernel import probe as probe_kernel

            fn = probe_kernel
        try:
            result = fn()
        except Exception as e:  # never let a probe break the check
            result = {'error': str(e)}
        with self._lock:
            self._probe = result
        return result

    @property
    def errors(self) -> List[Dict[str, Any]]:
        with self._lock:
            return list(self._errors)

    # -- output -----------------------------------------------------------------------------

    def payload(self, now: Optional[float] = None) -> Dict[str, Any]:
        """The diagnostics document (already scrubbed config; text scrubbing happens on write)."""
        now = self._clock() if now is None else now
        if self._probe is None:
            self.refresh_probe()
        totals: Dict[str, float] = {}
        gauges: Dict[str, float] = {}
        if self.telemetry is not None:
            totals = self.telemetry.totals()
            gauges = self.telemetry.gauges() if hasattr(self.telemetry, 'gauges') else {}
        refusals = recent_refusals()
        with self._lock:
            extra = dict(self._extra)
            if refusals:
                extra['file_refusals'] = refusals
            doc = {
                'schema_version': SCHEMA_VERSION,
                'generated_at': _iso(now),
                'generated_at_unix': float(now),
                'uptime_seconds': max(0.0, float(now - self._started)),
                'host_profiler_version': package_version(),
                'pid': os.getpid(),
                'config': self._config,
                'sampler': self._sampler,
                'telemetry': {'totals': totals, 'gauges': gauges},
                'probe': self._probe or {},
                'errors': list(self._errors),
                'top_stacks': list(self._top_stacks),
                'extra': extra,
                'truncated': False,
            }
        return doc

    def render(self, now: Optional[float] = None) -> str:
        """The scrubbed JSON text, shrunk to ``max_bytes``."""
        doc = self.payload(now)
        text = self._dump(doc)
        if len(text.encode('utf-8')) <= self.max_bytes:
            return text
        doc['truncated'] = True
        # Shrink the biggest variable parts first, halving until it fits.
        for key in ('top_stacks', 'errors', 'extra'):
            while len(text.encode('utf-8')) > self.max_bytes and doc[key]:
                if isinstance(doc[key], list):
                    doc[key] = doc[key][: len(doc[key]) // 2]
                else:
                    doc[key] = {}
                text = self._dump(doc)
        for key in ('telemetry', 'sampler', 'config', 'probe'):
            if len(text.encode('utf-8')) <= self.max_bytes:
                break
            doc[key] = {'totals': {}, 'gauges': {}} if key == 'telemetry' else {}
            text = self._dump(doc)
        return text

    def _dump(self, doc: Dict[str, Any]) -> str:
        text = json.dumps(doc, indent=1, sort_keys=True, default=str)
        # line by line, the lines of the last writes remembered (json.dumps with indent: no
        # pattern's match spans lines)
        return self._scrubber.scrub(text, self._secrets) + '\n'

    def due(self, now: Optional[float] = None) -> bool:
        now = self._clock() if now is None else now
        return self._last_write is None or now - self._last_write >= self.min_interval

    def maybe_write(self, now: Optional[float] = None) -> bool:
        """Writes when ``min_interval`` has passed since the last write. Never raises."""
        now = self._clock() if now is None else now
        if not self.due(now):
            return False
        return self.write(now)

    def write(self, now: Optional[float] = None) -> bool:
        """Writes now: the previous file becomes ``.1``; atomic replace. Never raises."""
        now = self._clock() if now is None else now
        self._last_write = now  # also on failure: do not retry every run
        try:
            text = self.render(now)
            os.makedirs(self.directory, exist_ok=True)
            tmp = self.path + '.tmp'
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            with os.fdopen(fd, 'w', encoding='utf-8') as f:
                f.write(text)
            if os.path.exists(self.path):
                os.replace(self.path, self.path + '.1')
            os.replace(tmp, self.path)
            return True
        except Exception:
            self.write_errors += 1
            return False
