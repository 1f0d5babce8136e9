# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""A local OTLP/HTTP receiver for tests and benchmarks (127.0.0.1, a thread).

It decompresses (gzip, zstd) and decodes every body with the official protos:
``ProfilesData`` on ``/v1development/profiles`` (the same wire shape as
``ExportProfilesServiceRequest``), ``ExportMetricsServiceRequest`` on ``/v1/metrics``,
``ExportLogsServiceRequest`` on ``/v1/logs``. It records headers and bodies and can be
told how to answer::

    with FakeOtlp() as srv:
        srv.respond(429, retry_after='2', count=3)   # the next 3 requests get 429
        srv.respond(500)                            # every request from now on: 500
        srv.slow(1.5, count=1)                      # the next request waits 1.5 s, then answers
        srv.close_connection(count=2)               # the next 2 requests: connection dropped
        srv.partial_success(rejected=2, message='...', count=1)
        srv.reset_behaviour()                       # back to 200
        srv.wait_for(5, timeout=10)                 # until 5 requests were accepted (2xx)
        srv.accepted[0].message                     # the decoded ProfilesData

``srv.url`` is the endpoint (``http://127.0.0.1:PORT``) to give an exporter.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional

from datadog_checks.host_profiler.exporters.encoding import decompress

PROFILES_PATH = '/v1development/profiles'
METRICS_PATH = '/v1/metrics'
LOGS_PATH = '/v1/logs'


def _decode(path: str, body: bytes) -> Any:
    if path == PROFILES_PATH:
        from opentelemetry.proto.profiles.v1development.profiles_pb2 import ProfilesData

        msg = ProfilesData()
    elif path == METRICS_PATH:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

        msg = ExportMetricsServiceRequest()
    elif path == LOGS_PATH:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

        msg = ExportLogsServiceRequest()
    else:
        return None
    msg.ParseFromString(body)
    return msg


def _ok_body(path: str, rejected: int = 0, message: str = '') -> bytes:
    if path == PROFILES_PATH:
        from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as m

        resp = m.ExportProfilesServiceResponse()
        if rejected or message:
            resp.partial_success.rejected_profiles = rejected
            resp.partial_success.error_message = message
        return resp.SerializeToString()
    if path == METRICS_PATH:
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as m

        resp = m.ExportMetricsServiceResponse()
        if rejected or message:
            resp.partial_success.rejected_data_points = rejected
            resp.partial_success.error_message = message
        return resp.SerializeToString()
    return b''


@dataclass
class Behaviour:
    status: int = 200
    retry_after: Optional[str] = None
    delay: float = 0.0
    close: bool = False
    rejected: int = 0
    message: str = ''
    body: bytes = b''


@dataclass
class Request:
    path: str
    headers: Dict[str, str]  # lower-case names
    raw_body: bytes
    body: bytes  # decompressed
    message: Any  # decoded proto, or None
    status: int  # what was answered (0 = connection closed)
    time: float = field(default_factory=time.monotonic)
    error: str = ''


class FakeOtlp:
    def __init__(self, host: str = '127.0.0.1', port: int = 0, decode: bool = True, keep_bodies: bool = True) -> None:
        """``decode=False`` skips decompression and decoding (benchmarks: measure the client);
        ``keep_bodies=False`` records requests without their bodies (long runs)."""
        self.decode = decode
        self.keep_bodies = keep_bodies
        self._lock = threading.Condition()
        self._plan: List[Behaviour] = []
        self._default = Behaviour()
        self.requests: List[Request] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                outer._handle(self)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={'poll_interval': 0.05}, name='fake-otlp', daemon=True
        )
        self.host, self.port = self._server.server_address[:2]
        self.url = 'http://{}:{}'.format(self.host, self.port)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> 'FakeOtlp':
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> 'FakeOtlp':
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- behaviour ---------------------------------------------------------------------
    def _set(self, b: Behaviour, count: Optional[int]) -> None:
        with self._lock:
            if count is None:
                self._plan = []
                self._default = b
            else:
                self._plan.extend(Behaviour(**vars(b)) for _ in range(count))

    def respond(
        self, status: int = 200, retry_after: Optional[Any] = None, count: Optional[int] = None, body: bytes = b''
    ) -> None:
        """Answer ``status`` to the next ``count`` requests, or to every request until changed."""
        self._set(
            Behaviour(status=status, retry_after=None if retry_after is None else str(retry_after), body=body), count
        )

    def slow(self, delay: float, status: int = 200, count: Optional[int] = None) -> None:
        self._set(Behaviour(status=status, delay=delay), count)

    def close_connection(self, count: Optional[int] = None) -> None:
        self._set(Behaviour(close=True), count)

    def partial_success(self, rejected: int, message: str = '', count: Optional[int] = None) -> None:
        self._set(Behaviour(rejected=rejected, message=message), count)

    def reset_behaviour(self) -> None:
        self._set(Behaviour(), None)

    # -- results -----------------------------------------------------------------------
    @property
    def accepted(self) -> List[Request]:
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def wait_for(self, n: int, timeout: float = 10.0, path: Optional[str] = None) -> bool:
        """Wait until ``n`` requests (to ``path`` if given) were accepted."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                got = sum(1 for r in self.requests if 200 <= r.status < 300 and (path is None or r.path == path))
                if got >= n:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)

    def wait_requests(self, n: int, timeout: float = 10.0) -> bool:
        """Wait until ``n`` requests arrived, whatever was answered."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return True

    def clear(self) -> None:
        with self._lock:
            self.requests = []

    # -- handler -----------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get('Content-Length') or 0)
        raw = h.rfile.read(length) if length else b''
        headers = {k.lower(): v for k, v in h.headers.items()}
        with self._lock:
            b = self._plan.pop(0) if self._plan else self._default
        if b.delay:
            time.sleep(b.delay)
        body, message, error = b'', None, ''
        try:
            if self.decode:
                body = decompress(raw, headers.get('content-encoding', ''))
                message = _decode(h.path, body)
        except Exception as e:  # a malformed body is a 400, as a real receiver would answer
            error = '{}: {}'.format(type(e).__name__, e)
        status = 0 if b.close else (400 if error and b.status < 300 else b.status)
        with self._lock:
            if not self.keep_bodies:
                raw, body, message = b'', b'', None
            self.requests.append(Request(h.path, headers, raw, body, message, status, error=error))
            self._lock.notify_all()
        if b.close:
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if 200 <= status < 300:
            out = b.body or _ok_body(h.path, b.rejected, b.message)
            ctype = 'application/x-protobuf'
        else:
            out = b.body or (error or 'fake otlp says {}'.format(status)).encode()
            ctype = 'text/plain'
        h.send_response(status)
        h.send_header('Content-Type', ctype)
        h.send_header('Content-Length', str(len(out)))
        if b.retry_after is not None:
            h.send_header('Retry-After', b.retry_after)
        h.end_headers()
        h.wfile.write(out)


# -- out of process (benchmarks: keep the receiver's memory and CPU out of the measurement) --
class FakeOtlpProcess:
    """The same receiver in a child process, driven over its stdin:
    ``respond(status)``, ``reset_behaviour()``, ``count()`` (requests answered 2xx)."""

    def __init__(self, decode: bool = False) -> None:
        import subprocess
        import sys

        args = [sys.executable, __file__, '--serve'] + ([] if decode else ['--no-decode'])
        self._p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.url = self._p.stdout.readline().strip()

    def _cmd(self, line: str) -> str:
        self._p.stdin.write(line + '\n')
        self._p.stdin.flush()
        return self._p.stdout.readline().strip()

    def respond(self, status: int) -> None:
        self._cmd('respond {}'.format(status))

    def reset_behaviour(self) -> None:
        self._cmd('reset')

    def count(self) -> int:
        return int(self._cmd('count'))

    def stop(self) -> None:
        try:
            self._cmd('quit')
        except (OSError, ValueError):
            pass
        self._p.wait(5)

    def __enter__(self) -> 'FakeOtlpProcess':
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _serve(decode: bool) -> None:
    import sys

    with FakeOtlp(decode=decode, keep_bodies=False) as srv:
        print(srv.url, flush=True)
        for line in sys.stdin:
            cmd = line.split()
            if not cmd or cmd[0] == 'quit':
                print('ok', flush=True)
                break
            if cmd[0] == 'respond':
                srv.respond(int(cmd[1]))
                print('ok', flush=True)
            elif cmd[0] == 'reset':
                srv.reset_behaviour()
                print('ok', flush=True)
            elif cmd[0] == 'count':
                print(len(srv.accepted), flush=True)
            else:
                print('?', flush=True)


# -- helpers for tests of exporters (and others) ------------------------------------------
def sample_profile(seq: int = 1, processes: int = 2, stacks: int = 3, off_cpu: bool = False) -> Any:
    """A small ``Profile`` whose ``time_unix_nano`` is ``seq`` (so order is checkable)."""
    from datadog_checks.host_profiler.profile.model import (
        FRAME_KERNEL,
        Frame,
        Mapping,
        Profile,
        Resource,
        Sample,
    )

    m = Mapping(0x400000, 0x500000, 0, '/usr/bin/app', build_id='ab' * 20, build_id_kind='gnu')
    resources = []
    for p in range(processes):
        r = Resource(
            {
                'process.pid': 100 + p,
                'process.executable.name': 'app{}'.format(p),
                'process.executable.path': '/usr/bin/app{}'.format(p),
            }
        )
        for s in range(stacks):
            frames = (
                Frame('leaf{}'.format(s), 0x401000 + s, mapping=m),
                Frame('', 0x402000 + s, mapping=m),
                Frame('main', 0x403000, mapping=m),
            )
            if s == 0:
                frames = (Frame('do_syscall_64', 0xFFFFFFFF81000000, kind=FRAME_KERNEL),) + frames
            r.samples.append(Sample(frames, value=10 + s, thread_id=100 + p, thread_name='t'))
            if off_cpu:
                r.off_cpu_samples.append(Sample(frames, value=1_000_000 * (s + 1)))
        resources.append(r)
    return Profile(time_unix_nano=seq, duration_nano=60 * 10**9, period_nano=50_000_000, resources=resources)


def proto_encode(profile: Any, payload_bytes: int = 0) -> bytes:
    """Encode a ``Profile`` into ``ProfilesData`` with the official proto directly (a minimal
    stand-in for ``profile.otlp``: resources, one Profile per resource, sample values and a
    string table). ``payload_bytes`` pads the string table to reach a given size."""
    import os

    from opentelemetry.proto.profiles.v1development import profiles_pb2 as pb

    data = pb.ProfilesData()
    data.dictionary.string_table.append('')
    for r in profile.resources:
        rp = data.resource_profiles.add()
        for k, v in sorted(r.attributes.items()):
            kv = rp.resource.attributes.add()
            kv.key = k
            if isinstance(v, int):
                kv.value.int_value = v
            else:
                kv.value.string_value = str(v)
        sp = rp.scope_profiles.add()
        sp.scope.name = 'host_profiler'
        prof = sp.profiles.add()
        prof.time_unix_nano = profile.time_unix_nano
        prof.duration_nano = profile.duration_nano
        prof.period = profile.period_nano
        for s in r.samples:
            smp = prof.samples.add()
            smp.values.append(s.value)
    if payload_bytes:
        # half-compressible padding: random hex strings
        chunk = 64
        for _ in range(max(1, payload_bytes // (chunk + 2))):
            data.dictionary.string_table.append(os.urandom(chunk // 2).hex())
    return data.SerializeToString()


def decoded_seqs(srv: 'FakeOtlp') -> List[int]:
    """``time_unix_nano`` of the first profile of every accepted profiles request, in order."""
    out = []
    for r in srv.accepted:
        if r.path == PROFILES_PATH and r.message is not None and r.message.resource_profiles:
            out.append(r.message.resource_profiles[0].scope_profiles[0].profiles[0].time_unix_nano)
    return out


try:
    import pytest

    @pytest.fixture
    def fake_otlp():
        srv = FakeOtlp().start()
        try:
            yield srv
        finally:
            srv.stop()

except ImportError:  # pragma: no cover - used outside pytest (benchmarks)
    pass


if __name__ == '__main__':
    import sys

    if '--serve' in sys.argv:
        _serve(decode='--no-decode' not in sys.argv)
