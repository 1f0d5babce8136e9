# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The profiler profiles itself with Datadog's Python profiler (``ddtrace``), as the Go host profiler's
"DD Profiling" extension does (instance section ``ddprofiling``).

It starts when the sampler starts and stops when the sampler stops (``cancel()``, the
sampler's own stop when no heartbeat comes, the end of ``host-profiler run``).

Why a loopback relay: in the installed ddtrace (4.x) the profile upload is native code
(libdatadog) that reports a failure only on stderr, and ``ddup.upload()`` returns nothing;
ddtrace also has no agentless upload any more. So ddtrace uploads to a small HTTP server on
127.0.0.1 in this process, which forwards each upload to the configured endpoint (a trace
agent's ``/profiling/v1/input``, its unix socket, or the agentless intake's
``/api/v2/profile`` with the API key, which thus never reaches ddtrace or its logs) and
counts what went through and what failed. A failure ends there: ddtrace gets a 502, the
sampler never sees anything.

Why a stand-in ``tracer``: ddtrace sends to ``tracer.agent_trace_url``. Giving the relay URL
to the global tracer would redirect every trace of the process (the Agent's Python checks
share it), so ddtrace's profiler gets its own small object with that one URL.
"""
from __future__ import annotations

import http.client
import http.server
import logging
import os
import signal
import socket
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlparse

from .datadog_endpoints import ddprofiling_is_agentless
from .scrub import scrub_text
from .telemetry import Telemetry

LOG = logging.getLogger(__name__)

SERVICE = 'host-profiler'
AGENT_UPLOAD_PATH = '/profiling/v1/input'
AGENTLESS_UPLOAD_PATH = '/api/v2/profile'
FORWARD_TIMEOUT_S = 10.0
DEFAULT_PERIOD_S = 60.0
# Headers of ddtrace's request that are about the loopback hop, not the upload.
_HOP_HEADERS = frozenset(('host', 'content-length', 'connection', 'accept-encoding', 'keep-alive',
                          'transfer-encoding'))


def upload_url(endpoint: str) -> str:
    """The URL an upload goes to: the endpoint when it has a path, else the trace agent's or the
    agentless intake's upload path on it."""
    endpoint = endpoint.strip()
    parsed = urlparse(endpoint)
    if parsed.scheme == 'unix' or parsed.path not in ('', '/'):
        return endpoint
    path = AGENTLESS_UPLOAD_PATH if ddprofiling_is_agentless(endpoint) else AGENT_UPLOAD_PATH
    return endpoint.rstrip('/') + path


def profile_tags(tags: List[Any]) -> Tuple[Dict[str, str], List[str]]:
    """Instance tags ``key:value`` -> the profiler's tag mapping; also the tags without a value
    (ddtrace's tags are key/value pairs only), which the caller reports."""
    out: Dict[str, str] = {}
    bare: List[str] = []
    for tag in tags or ():
        key, sep, value = str(tag).partition(':')
        if sep and key and value:
            out[key] = value
        else:
            bare.append(str(tag))
    return out, bare


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the trace agent's unix socket (``apm_config.receiver_socket``)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__('localhost', timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class _RelayHandler(http.server.BaseHTTPRequestHandler):
    server: '_RelayServer'

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        status = self.server.forward(body, headers)
        self.send_response(status if 200 <= status < 600 else 502)
        self.send_header('Content-Length', '0')
        self.end_headers()

    def log_message(self, *_args: Any) -> None:  # no access log on stderr
        pass


class _RelayServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, forward: Callable[[bytes, Dict[str, str]], int]) -> None:
        super().__init__(('127.0.0.1', 0), _RelayHandler)
        self.forward = forward


class _UploadTarget:
    """What ddtrace's profiler reads from its ``tracer``: where to upload, and the endpoint
    counter (the process's own, untouched: this profiler serves no web endpoints)."""

    def __init__(self, url: str) -> None:
        import ddtrace

        self.agent_trace_url = url
        self._endpoint_call_counter_span_processor = ddtrace.tracer._endpoint_call_counter_span_processor


class SelfProfiling:
    """ddtrace's profiler on this process, service ``host-profiler``; see the module docstring."""

    def __init__(
        self,
        conf: Optional[Dict[str, Any]],
        *,
        mode: str,
        tags: Optional[List[Any]] = None,
        telemetry: Optional[Telemetry] = None,
        version: str = '',
        http_factory: Optional[Callable[[dict], Any]] = None,
        agent_config: Optional[Callable[[str], Any]] = None,
        log: Optional[logging.Logger] = None,
    ) -> None:
        conf = conf or {}
        self.enabled = bool(conf.get('enabled', False))
        self.endpoint = str(conf.get('endpoint') or '')
        self.period = float(conf.get('period') or DEFAULT_PERIOD_S)
        self.mode = mode
        self.version = version
        self.tags, self.bare_tags = profile_tags(list(tags or ()))
        self.telemetry = telemetry if telemetry is not None else Telemetry()
        self.log = log or LOG
        self._api_key = str(conf['api_key']) if conf.get('api_key') else ''
        self._http_factory = http_factory
        self._agent_config = agent_config
        self._lock = threading.Lock()
        self._profiler: Any = None
        self._relay: Optional[_RelayServer] = None
        self._session: Any = None
        self._stopping: Optional[threading.Thread] = None
        self._last_error = ''
        self.state = 'off' if not self.enabled else 'not started'
        if self.enabled:
            self.telemetry.declare('self_profiling.uploads')
            for reason in ('connection', 'timeout'):  # http_<status> ones appear when they happen
                self.telemetry.declare('self_profiling.upload_errors', ['reason:' + reason])
            self.telemetry.gauge('self_profiling.running', 0)

    # -- lifecycle --------------------------------------------------------------------------
    def hold(self, reason: str) -> None:
        """Never start (e.g. ``host-profiler flare``, which sends nothing); the status says why."""
        if self.enabled:
            self.state = 'held: ' + reason

    def start(self) -> bool:
        """Start ddtrace's profiler (idempotent). Never raises: a failure is logged and kept as
        the state, the sampler goes on."""
        if not self.enabled or self.state.startswith('held'):
            return False
        if self._profiler is None and not self.join(FORWARD_TIMEOUT_S):
            return False  # the previous run's last upload is still going: ddtrace allows one profiler
        # Importing ddtrace (its global tracer) and starting its profiler each chain a SIGTERM/SIGINT
        # handler when in the main thread (a flush inside the handler); the sampler's owner (the
        # Agent, `host-profiler run`) stops it instead, so its handlers are put back as they were.
        saved = _signal_handlers()
        try:
            return self._start()
        finally:
            _restore_signal_handlers(saved)

    def _start(self) -> bool:
        with self._lock:
            if self._profiler is not None:
                return True
            reason = self._reason_not_to_start()
            if reason:
                if self.state != 'skipped: ' + reason:
                    self.log.info('host_profiler self-profiling (ddprofiling) not started: %s', reason)
                self.state = 'skipped: ' + reason
                return False
            try:
                self._start_profiler()
            except Exception as e:  # noqa: BLE001 - self-profiling must never stop the profiler
                self._close_relay()
                self.state = 'failed: {}'.format(scrub_text(e, [self._api_key]))
                self.log.warning('host_profiler self-profiling (ddprofiling) cannot start: %s. '
                                 'Sampling goes on; check that ddtrace imports in this Python.', self.state[8:])
                return False
            self.state = 'running'
            self.telemetry.gauge('self_profiling.running', 1)
            self.log.info('host_profiler self-profiling sends every %.0f s to %s', self.period, self.target())
            return True

    def _reason_not_to_start(self) -> str:
        if self.mode == 'agent' and self._agent_config is not None:
            try:
                shared = self._agent_config('integration_profiling')
            except Exception:  # noqa: BLE001 - a stub or an old Agent without the key
                shared = None
            if shared not in (None, '', False, 'false', 'False', '0', 0):
                return ("the Agent's integration_profiling is on: its profiler already covers this process "
                        '(service datadog-agent-integrations), and only one Python profiler can run per process')
        if self.mode != 'agent':
            # Standalone, this is our own process: ddtrace's instrumentation telemetry would report
            # to a trace agent on localhost:8126 nobody configured. Read once, when ddtrace is
            # imported; the user's own setting wins. (Under the Agent, the Agent's environment rules.)
            os.environ.setdefault('DD_INSTRUMENTATION_TELEMETRY_ENABLED', 'false')
        try:
            from ddtrace.profiling.profiler import Profiler
        except Exception as e:  # noqa: BLE001
            return 'ddtrace.profiling cannot be imported: {}'.format(e)
        if getattr(Profiler, '_active_instance', None) is not None:
            return 'another ddtrace profiler already runs in this process'
        return ''

    def _start_profiler(self) -> None:
        from ddtrace.profiling.profiler import Profiler

        self._relay = _RelayServer(self._forward)
        threading.Thread(target=self._relay.serve_forever, kwargs={'poll_interval': 0.5},
                         name='host_profiler-self-profiling-relay', daemon=True).start()
        relay_url = 'http://127.0.0.1:{}'.format(self._relay.server_address[1])
        profiler = Profiler(
            service=SERVICE,
            version=self.version or None,
            env=self.tags.get('env'),
            tags=dict(self.tags),
            tracer=_UploadTarget(relay_url),
            # The lock collector wraps every threading lock of the process (under the Agent, every
            # check's); exceptions and PyTorch say nothing about this profiler.
            _lock_collector_enabled=False,
            _exception_profiling_enabled=False,
            _pytorch_collector_enabled=False,
            enable_code_provenance=False,
            endpoint_collection_enabled=False,
        )
        # ddtrace takes the upload interval only from DD_PROFILING_UPLOAD_INTERVAL, read once when
        # ddtrace is imported (and under the Agent it is imported already): set it on the scheduler.
        scheduler = profiler._scheduler
        scheduler.interval = self.period
        scheduler._configured_interval = self.period
        profiler.start()
        self._profiler = profiler
        if self.bare_tags:
            self.log.warning('host_profiler self-profiling: tags without a value are not sent with the profile '
                             '(ddtrace tags are key:value): %s', ', '.join(self.bare_tags))

    def stop(self, block: bool = False, timeout: Optional[float] = None) -> None:
        """Stop the profiler after a last upload. Non-blocking unless ``block``: the stop (which
        waits for that upload, bounded by the forward timeout) runs on its own thread."""
        with self._lock:
            profiler, self._profiler = self._profiler, None
            relay, self._relay = self._relay, None
            if profiler is None:
                return
            if self.state == 'running':
                self.state = 'stopped'
            thread = threading.Thread(target=self._stop_profiler, args=(profiler, relay),
                                      name='host_profiler-self-profiling-stop', daemon=True)
            self._stopping = thread
            thread.start()
        if block:
            self.join(timeout)

    def _stop_profiler(self, profiler: Any, relay: Optional[_RelayServer]) -> None:
        try:
            profiler.stop(flush=True)  # the last upload still goes through the relay
        except Exception as e:  # noqa: BLE001
            self.log.warning('host_profiler self-profiling: stopping ddtrace failed: %s', e)
        finally:
            if relay is not None:
                relay.shutdown()
                relay.server_close()
            self.telemetry.gauge('self_profiling.running', 0)

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for a stop in progress; True when none is left."""
        thread = self._stopping
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _close_relay(self) -> None:
        relay, self._relay = self._relay, None
        if relay is not None:
            relay.shutdown()
            relay.server_close()

    # -- the relay: forward one upload, count the outcome -----------------------------------
    def _forward(self, body: bytes, headers: Dict[str, str]) -> int:
        url = upload_url(self.endpoint)
        if self._api_key and ddprofiling_is_agentless(self.endpoint):
            headers['DD-API-KEY'] = self._api_key
        try:
            status = self._send(url, body, headers)
        except Exception as e:  # noqa: BLE001 - counted and logged, never raised
            reason = 'timeout' if isinstance(e, (socket.timeout, TimeoutError)) or 'timed out' in str(e) \
                else 'connection'
            self._failed(reason, '{}: {}'.format(type(e).__name__, e))
            return 502
        if 200 <= status < 300:
            self.telemetry.count('self_profiling.uploads', 1)
            if self._last_error:
                self.log.info('host_profiler self-profiling uploads to %s work again', self.target())
                self._last_error = ''
            return status
        self._failed('http_{}'.format(status), 'HTTP {}'.format(status))
        return status

    def _send(self, url: str, body: bytes, headers: Dict[str, str]) -> int:
        parsed = urlparse(url)
        if parsed.scheme == 'unix':
            conn = _UnixHTTPConnection(parsed.path, FORWARD_TIMEOUT_S)
            try:
                conn.request('POST', AGENT_UPLOAD_PATH, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                return response.status
            finally:
                conn.close()
        if self._session is None:
            if self._http_factory is not None:
                self._session = self._http_factory({})
            else:
                import requests

                self._session = requests.Session()
        response = self._session.post(url, data=body, headers=headers, timeout=FORWARD_TIMEOUT_S)
        return int(response.status_code)

    def _failed(self, reason: str, detail: str) -> None:
        self.telemetry.count('self_profiling.upload_errors', 1, ['reason:' + reason])
        message = scrub_text(detail, [self._api_key])
        if message != self._last_error:  # once per kind of failure, not once per upload
            self.log.warning('host_profiler self-profiling upload to %s failed (%s); sampling is not affected. '
                             'Check ddprofiling.endpoint and that a trace agent or the intake is reachable.',
                             self.target(), message)
        self._last_error = message

    # -- reporting ---------------------------------------------------------------------------
    def target(self) -> str:
        """Where profiles go, scrubbed (no credentials)."""
        return scrub_text(upload_url(self.endpoint), [self._api_key]) if self.endpoint else ''

    def status(self) -> Dict[str, Any]:
        """For diagnostics, the flare and metadata: whether it is on and where it sends."""
        out: Dict[str, Any] = {'enabled': self.enabled, 'state': self.state}
        if self.enabled:
            out.update({
                'running': self._profiler is not None,
                'endpoint': self.target(),
                'agentless': ddprofiling_is_agentless(self.endpoint),
                'period_seconds': self.period,
                'service': SERVICE,
                'uploads': self.telemetry.total('self_profiling.uploads'),
                'upload_errors': self.telemetry.total('self_profiling.upload_errors'),
            })
            if self._last_error:
                out['last_error'] = self._last_error
        return out


def _signal_handlers() -> Optional[Dict[int, Any]]:
    if threading.current_thread() is not threading.main_thread():
        return None  # ddtrace installs no handler outside the main thread
    return {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore_signal_handlers(saved: Optional[Dict[int, Any]]) -> None:
    if not saved:
        return
    for sig, handler in saved.items():
        if signal.getsignal(sig) is not handler and handler is not None:
            signal.signal(sig, handler)
