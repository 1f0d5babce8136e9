# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Benchmark: encode 10,000 unique stacks of depth 30 into OTLP bytes (target <= 200 ms).

    python benchmarks/profile_encode.py [--stacks N] [--depth D] [--runs R]

Prints the median of R runs for:
  - shared frames: frames come from a per-address pool, as the symbolizer's caches hand
    them out (the normal case);
  - distinct frames: every frame is its own object (equal values), the encoder's slow
    path that dedupes by value;
and, for reference, the builder (RawSample -> Profile) with trivial symbolizers, pprof and
folded encoding of the same data.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datadog_checks.host_profiler.profile import builder, folded, otlp, pprof  # noqa: E402
from datadog_checks.host_profiler.profile.model import (  # noqa: E402
    BUILD_ID_GNU,
    FRAME_KERNEL,
    Frame,
    Mapping,
    Profile,
    RawSample,
    Resource,
    Sample,
)

N_PROCESSES = 20
FUNCTIONS_PER_MAPPING = 400
KERNEL_FUNCTIONS = 300
KERNEL_DEPTH = 6


def make_pools(rng):
    kernel = [Frame('kfunc_%d' % i, 0xFFFFFFFF81000000 + i * 64, FRAME_KERNEL) for i in range(KERNEL_FUNCTIONS)]
    per_process = []
    for p in range(N_PROCESSES):
        frames = []
        for m in range(3):
            start = 0x400000 + m * 0x10000000
            path = '/usr/lib/proc%d/lib%d.so' % (p, m)
            mapping = Mapping(start, start + 0x1000000, 0x1000 * m, path, 'ab%038x' % (p * 3 + m), BUILD_ID_GNU)
            for f in range(FUNCTIONS_PER_MAPPING):
                name = 'func_%d_%d' % (m, f) if f % 10 else ''  # 10% unknown frames
                frames.append(Frame(name, start + 0x1000 + f * 32, mapping=mapping, source_file='src%d.c' % m))
        per_process.append(frames)
    return kernel, per_process


def make_profile(n_stacks, depth, distinct_objects, rng):
    kernel, per_process = make_pools(rng)
    resources = [
        Resource(attributes={'process.pid': 1000 + p, 'process.executable.name': 'proc%d' % p}, comm='proc%d' % p)
        for p in range(N_PROCESSES)
    ]
    for i in range(n_stacks):
        p = i % N_PROCESSES
        frames = rng.sample(kernel, KERNEL_DEPTH) + rng.sample(per_process[p], depth - KERNEL_DEPTH)
        if distinct_objects:
            frames = [Frame(f.function, f.address, f.kind, f.mapping, f.source_file, f.line) for f in frames]
        sample = Sample(tuple(frames), rng.randint(1, 50), thread_id=1000 + p + i % 4, thread_name='t%d' % (i % 4))
        resources[p].samples.append(sample)
    return Profile(time_unix_nano=1_700_000_000 * 10**9, duration_nano=10 * 10**9, period_nano=50_000_000, resources=resources)


def make_raw(n_stacks, depth, rng):
    out = []
    for i in range(n_stacks):
        p = i % N_PROCESSES
        ustack = tuple(rng.randrange(0x400000, 0x500000) for _ in range(depth - KERNEL_DEPTH))
        kstack = tuple(0xFFFFFFFF81000000 + rng.randrange(KERNEL_FUNCTIONS) * 64 for _ in range(KERNEL_DEPTH))
        out.append(RawSample(1000 + p, 1000 + p, 'proc%d' % p, ustack, kstack, rng.randint(1, 50)))
    return out


def timed(fn, runs):
    """Median CPU time of the runs, in ms (CPU time, not wall: the figure should not
    depend on what else the machine is doing; wall time is printed at the end too)."""
    times = []
    walls = []
    result = None
    for _ in range(runs):
        w0, t0 = time.perf_counter(), time.process_time()
        result = fn()
        times.append((time.process_time() - t0) * 1000)
        walls.append((time.perf_counter() - w0) * 1000)
    WALL.append(statistics.median(walls))
    return statistics.median(times), result


WALL = []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--stacks', type=int, default=10_000)
    ap.add_argument('--depth', type=int, default=30)
    ap.add_argument('--runs', type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(42)

    shared = make_profile(args.stacks, args.depth, False, rng)
    distinct = make_profile(args.stacks, args.depth, True, rng)
    ms, payload = timed(lambda: otlp.encode_bytes(shared), args.runs)
    print(
        'otlp encode, shared frames:   %7.1f ms  (%d stacks x %d frames, %d bytes)'
        % (ms, args.stacks, args.depth, len(payload))
    )
    ms, payload = timed(lambda: otlp.encode_bytes(distinct), args.runs)
    print('otlp encode, distinct frames: %7.1f ms  (%d bytes)' % (ms, len(payload)))
    errors = otlp.validate(otlp.decode_bytes(payload))
    assert not errors, errors[:5]

    raw = make_raw(args.stacks, args.depth, rng)
    ksym = {}

    def sym_kernel(addresses):
        return [ksym.setdefault(a, Frame('k_%x' % a, a, FRAME_KERNEL)) for a in addresses]

    def sym_user(process, addresses):
        return [Frame('', a) for a in addresses]

    ms, _ = timed(lambda: builder.build_profile(raw, lambda pid: None, sym_user, sym_kernel,
                                                time_unix_nano=0, duration_nano=1, period_nano=1), args.runs)
    print('builder (trivial symbolizers):%7.1f ms' % ms)
    ms, gz = timed(lambda: pprof.encode([shared]), args.runs)
    print('pprof encode (gzip):          %7.1f ms  (%d bytes)' % (ms, len(gz)))
    ms, _ = timed(lambda: folded.to_folded([shared]), args.runs)
    print('folded:                       %7.1f ms' % ms)
    print('(CPU time medians; wall-clock medians: %s ms)' % ', '.join('%.1f' % w for w in WALL))


if __name__ == '__main__':
    main()
