# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Exporter benchmarks (loopback, no root needed).

1. Compress + send a ~5 MB OTLP profile to the local fake receiver (gzip and zstd):
   the time from ``export(profile)`` of an already encoded profile to the 200, split into
   export() (compression + enqueue, on the caller's thread) and the POST. Target: <= 150 ms.
2. Memory during an outage: a 64 MB queue, the endpoint answering 500, pushed well past its
   bound (default 3x: 48 exports of 4 MB, fresh bytes each); peak RSS growth sampled every
   5 ms. Target: <= 80 MB. The simulated outage is shorter than 5 minutes (exports come
   back to back instead of once a minute): what matters is that the queue was filled past
   its bound; then it recovers and the newest exports are delivered.

    python benchmarks/exporters_bench.py [--repeat 10] [--queue-mb 64] [--push-factor 3] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..'))

from tests.fakes.otlp import FakeOtlpProcess  # noqa: E402

from datadog_checks.host_profiler.exporters import build_exporters  # noqa: E402
from datadog_checks.host_profiler.exporters.encoding import SharedEncoder  # noqa: E402
from datadog_checks.host_profiler.runtime.telemetry import Telemetry  # noqa: E402

LOG = logging.getLogger('bench.exporters')
LOG.setLevel(logging.ERROR)


def big_profile(target_bytes: int):
    """A synthetic host profile (many processes, deep unique stacks) whose OTLP encoding is
    about ``target_bytes``: realistic redundancy (shared frames, repeated names)."""
    from datadog_checks.host_profiler.profile import otlp
    from datadog_checks.host_profiler.profile.model import FRAME_KERNEL, Frame, Mapping, Profile, Resource, Sample

    def build(n_proc: int):
        resources = []
        for p in range(n_proc):
            m = Mapping(
                0x400000,
                0x4000000,
                0,
                '/usr/lib/app{}/libapp.so'.format(p % 40),
                build_id='%040x' % p,
                build_id_kind='gnu',
            )
            r = Resource(
                {
                    'process.pid': 1000 + p,
                    'process.executable.name': 'proc{}'.format(p),
                    'process.executable.path': '/usr/bin/proc{}'.format(p),
                    'container.id': '%064x' % (p % 30),
                }
            )
            for s in range(60):
                frames = tuple(
                    Frame(
                        'ns{}::Class{}::method_{}_{}'.format(p % 7, d % 11, (s * 7 + d) % 97, d),
                        0x401000 + s * 64 + d,
                        mapping=m,
                    )
                    for d in range(24)
                ) + (Frame('entry_SYSCALL_64', 0xFFFFFFFF81000000 + s, kind=FRAME_KERNEL),)
                r.samples.append(Sample(frames, value=1 + s % 5, thread_id=1000 + p + s % 4, thread_name='worker'))
            resources.append(r)
        return Profile(
            time_unix_nano=time.time_ns(), duration_nano=60 * 10**9, period_nano=50_000_000, resources=resources
        )

    n = 50
    size = len(otlp.encode_bytes(build(n)))
    n = max(1, int(n * target_bytes / size) + 1)
    while True:
        prof = build(n)
        raw = otlp.encode_bytes(prof)
        if len(raw) >= target_bytes:
            return prof, raw
        n = int(n * 1.1) + 1


def bench_send(repeat: int) -> dict:
    prof, raw = big_profile(5 * 1024 * 1024)
    out = {'raw_bytes': len(raw), 'processes': len(prof.resources)}
    with FakeOtlpProcess() as srv:
        for compression in ('gzip', 'zstd'):
            comp_ms, total_ms, post_ms = [], [], []
            size = 0
            for _ in range(repeat):
                enc = SharedEncoder(lambda p, raw=raw: raw)  # encoding measured separately
                t = Telemetry()
                (exp,) = build_exporters(
                    {'otlp_http': [{'endpoint': srv.url, 'compression': compression}]},
                    telemetry=t,
                    encoder=enc,
                    log=LOG,
                )
                try:
                    exp.export(prof)  # warm the connection: not measured
                    exp.flush(10)
                    exp._encoder = SharedEncoder(lambda p, raw=raw: raw)  # fresh: compress again
                    gc.collect()
                    t0 = time.perf_counter()
                    exp.export(prof)  # compress + enqueue, on the caller's thread
                    t1 = time.perf_counter()
                    assert exp.flush(10)  # until the 200 is in
                    t2 = time.perf_counter()
                    size = exp._queue.max_bytes and len(exp._encoder.get(prof, compression)[1])
                    comp_ms.append((t1 - t0) * 1e3)
                    total_ms.append((t2 - t0) * 1e3)
                    post_ms.append([m.value for m in t.snapshot() if m.name == 'export.latency'][0] * 1e3)
                finally:
                    exp.close()
            out[compression] = {
                'compressed_bytes': size,
                'ratio': round(len(raw) / size, 2),
                'compress_ms_median': round(statistics.median(comp_ms), 1),
                'post_ms_median': round(statistics.median(post_ms), 1),
                'export_to_200_ms_median': round(statistics.median(total_ms), 1),
                'export_to_200_ms_max': round(max(total_ms), 1),
            }
    t0 = time.perf_counter()
    from datadog_checks.host_profiler.profile import otlp

    otlp.encode_bytes(prof)
    out['otlp_encode_ms'] = round((time.perf_counter() - t0) * 1e3, 1)
    return out


def rss_bytes() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def bench_outage(queue_mb: int, push_factor: float, body_mb: int = 4) -> dict:
    gc.collect()
    n = int(queue_mb * push_factor / body_mb)
    peak = [0]
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.005)

    with FakeOtlpProcess() as srv:  # out of process: its buffers are not in our RSS
        srv.respond(500)
        t = Telemetry()
        (exp,) = build_exporters(
            {
                'otlp_http': [
                    {
                        'endpoint': srv.url,
                        'queue_size_mb': queue_mb,
                        'retry': {'initial_interval': 0.05, 'max_interval': 0.2},
                    }
                ]
            },
            telemetry=t,
            encoder=SharedEncoder(lambda p: b''),
            log=LOG,
        )
        base = rss_bytes()
        peak[0] = base
        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        t0 = time.monotonic()
        max_queued = 0
        for i in range(n):
            body = os.urandom(body_mb << 20)  # a fresh, incompressible export each time
            exp.export_bytes(body, body)
            del body
            max_queued = max(max_queued, exp.queued_bytes)
        fill_s = time.monotonic() - t0
        time.sleep(0.5)
        srv.reset_behaviour()
        flushed = exp.flush(60)
        stop.set()
        th.join()
        exp.close()
        delivered = t.total('export.count')
        dropped = t.total('export.queue.dropped')
    return {
        'queue_mb': queue_mb,
        'pushed_mb': n * body_mb,
        'exports_pushed': n,
        'fill_seconds': round(fill_s, 2),
        'max_queued_mb': round(max_queued / 2**20, 1),
        'peak_rss_growth_mb': round((peak[0] - base) / 2**20, 1),
        'delivered_after_recovery': int(delivered),
        'dropped_oldest': int(dropped),
        'flushed': flushed,
        'retries': int(t.total('export.retries')),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--repeat', type=int, default=10)
    ap.add_argument('--queue-mb', type=int, default=64)
    ap.add_argument('--push-factor', type=float, default=3.0)
    ap.add_argument('--json', action='store_true')
    args = ap.parse_args()
    res = {'outage': bench_outage(args.queue_mb, args.push_factor), 'send_5mb': bench_send(args.repeat)}
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    s = res['send_5mb']
    print(
        '5 MB profile ({} bytes raw, {} processes), loopback, median of {}:'.format(
            s['raw_bytes'], s['processes'], args.repeat
        )
    )
    for c in ('gzip', 'zstd'):
        r = s[c]
        print(
            '  {:5s} export() (compress+enqueue) {:6.1f} ms  POST {:6.1f} ms  export->200 {:6.1f} ms (max {:.1f})  {} bytes (x{})'.format(
                c,
                r['compress_ms_median'],
                r['post_ms_median'],
                r['export_to_200_ms_median'],
                r['export_to_200_ms_max'],
                r['compressed_bytes'],
                r['ratio'],
            )
        )
    print('  (OTLP encoding of that profile: {} ms, not included)'.format(s['otlp_encode_ms']))
    o = res['outage']
    print(
        'outage: {} MB queue, {} MB pushed in {} exports ({} s), max queued {} MB, peak RSS growth {} MB;'
        ' after recovery {} delivered, {} dropped (oldest), {} retries'.format(
            o['queue_mb'],
            o['pushed_mb'],
            o['exports_pushed'],
            o['fill_seconds'],
            o['max_queued_mb'],
            o['peak_rss_growth_mb'],
            o['delivered_after_recovery'],
            o['dropped_oldest'],
            o['retries'],
        )
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
