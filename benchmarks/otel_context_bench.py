# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Benchmark: the cost of OpenTelemetry process contexts (OTEP 4719) and of span links (root).

    python benchmarks/otel_context_bench.py [--processes N] [--runs R]

Starts N copies of the spec-following C publisher of the tests (tests/workloads/otel_ctx_publisher.c)
and one real dd-trace-py app, then prints medians of R runs for:
  - find_mapping over the dd-trace-py app's /proc/PID/maps text (done at every maps read);
  - a full read (header + payload + decode) and the 8-byte timestamp check of each drain;
  - ProcessContextReader.update over N processes whose contexts did not change (one drain);
  - a rescan of one process without a context (ProcessRegistry.refresh_mappings);
  - OTLP encoding of 10,000 samples with and without span links.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.runtimes.test_otel_process_context import RESOURCE_V1, encode_context, start_ddtrace_app  # noqa: E402
from tests.workloads import compile_c  # noqa: E402

from datadog_checks.host_profiler.profile import otlp  # noqa: E402
from datadog_checks.host_profiler.profile.model import Frame, Profile, Resource, Sample, SpanLink  # noqa: E402
from datadog_checks.host_profiler.receiver.processes import ProcessRegistry  # noqa: E402
from datadog_checks.host_profiler.runtime.telemetry import Telemetry  # noqa: E402
from datadog_checks.host_profiler.runtimes.otel_process_context import (  # noqa: E402
    ProcessContextReader,
    find_mapping,
    read_context,
    read_published_at,
)


def per_call_us(fn, n):
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--processes', type=int, default=50)
    ap.add_argument('--runs', type=int, default=5)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    binary = compile_c('otel_ctx_publisher.c', tmp, cflags=('-O1', '-pthread'))
    payload = os.path.join(tmp, 'payload.pb')
    with open(payload, 'wb') as f:
        f.write(encode_context(RESOURCE_V1))
    pubs = []
    for _ in range(args.processes):
        p = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        p.stdin.write('publish {}\n'.format(payload))
        p.stdin.flush()
        pubs.append((p, int(p.stdout.readline().split()[1], 16)))
    app, _ = start_ddtrace_app(__import__('pathlib').Path(tmp), 600)
    try:
        with open('/proc/{}/maps'.format(app.pid)) as f:
            maps = f.read()
        app_addr = find_mapping(maps)
        no_ctx = open('/proc/self/maps').read()
        rows = {}

        def med(name, fn, n):
            rows[name] = statistics.median(per_call_us(fn, n) for _ in range(args.runs))

        med('find_mapping, dd-trace-py maps ({} lines), context present'.format(maps.count('\n')),
            lambda: find_mapping(maps), 2000)
        med('find_mapping, maps without a context ({} lines)'.format(no_ctx.count('\n')),
            lambda: find_mapping(no_ctx), 2000)
        med('full read + decode, dd-trace-py context', lambda: read_context(app.pid, app_addr), 500)
        pid, addr = pubs[0][0].pid, pubs[0][1]
        med('full read + decode, C publisher context', lambda: read_context(pid, addr), 500)
        med('timestamp check (8 bytes)', lambda: read_published_at(pid, addr), 2000)

        registry = ProcessRegistry()
        pids = [p.pid for p, _ in pubs]
        for q in pids:
            registry.ensure(q)
        reader = ProcessContextReader(Telemetry())
        reader.update(registry, pids, time.monotonic())  # first reads
        med('drain with {} unchanged contexts (per drain)'.format(len(pids)),
            lambda: reader.update(registry, pids, time.monotonic()), 50)
        registry.ensure(os.getpid())
        med('rescan of a process without a context (refresh_mappings)',
            lambda: registry.refresh_mappings(os.getpid()), 500)

        frames = [tuple(Frame('f{}'.format(i * 7 + d), 0x400000 + i * 64 + d) for d in range(20)) for i in range(1000)]
        link = [SpanLink(os.urandom(16), os.urandom(8)) for _ in range(100)]

        def profile(with_links):
            samples = [Sample(frames[i % 1000], 1, 1, 't', link=link[i % 100] if with_links else None)
                       for i in range(10000)]
            return Profile(1, 1, 1, resources=[Resource({'process.pid': 1}, samples)])

        plain, linked = profile(False), profile(True)
        med('OTLP encode, 10,000 samples, no links (ms x1000)', lambda: otlp.encode(plain), 3)
        med('OTLP encode, 10,000 samples, 100 spans (ms x1000)', lambda: otlp.encode(linked), 3)
        for name, us in rows.items():
            print('{:70s} {:10.1f} us'.format(name, us))
        print('per process and drain: {:.1f} us'.format(
            rows['drain with {} unchanged contexts (per drain)'.format(len(pids))] / len(pids)))
    finally:
        app.kill()
        for p, _ in pubs:
            p.kill()
            p.wait()


if __name__ == '__main__':
    main()
