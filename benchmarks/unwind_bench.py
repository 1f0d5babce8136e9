# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""User-space unwinding benchmarks (root: ptrace and BPF).

1. CFI table build, cold (no cache), for libc.so.6 (target <= 300 ms), python3.11, ld.so,
   libm; rows, distinct rules, bytes. pyelftools' CFI decoding of the same files is timed
   with ``--pyelftools`` for comparison.
2. Per-sample unwind cost in microseconds on real stacks: live workloads (the no-frame-pointer
   C split workload, the depth-40 recursion, Debian's python3 busy loop) are stopped with ptrace,
   their registers + 16 KiB of stack copied (what the BPF program hands over), then unwound
   with warm tables: median / p99 per sample and per frame.
3. ``--profile``: the profiler's own CPU (utime+stime of this process, all threads, including
   the sampler thread's ring-buffer reads and unwinding) while every core is busy with the
   no-frame-pointer workload, for ``frame_pointers`` and ``auto`` at 20 Hz and 99 Hz
   (targets: auto <= 1% of a core at 20 Hz, <= 2% at 99 Hz), after a warm-up that lasts until
   no CFI table was compiled for 3 s; CFI compiles that still happen in the window (new
   binaries on a busy host) are reported apart. The BPF program's own time (charged to the
   sampled tasks) comes from ``kernel.bpf_stats_enabled``. ``--workload-only`` samples only
   the workload (pid filter): the cost without the rest of the host.

    python benchmarks/unwind_bench.py [--samples 200] [--profile] [--seconds 20] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..'))

from datadog_checks.host_profiler.runtime.telemetry import Telemetry  # noqa: E402
from datadog_checks.host_profiler.receiver.processes import read_process  # noqa: E402
from datadog_checks.host_profiler.unwind.cfi import build_cfi_table  # noqa: E402
from datadog_checks.host_profiler.unwind.unwinder import COMPLETE, Unwinder, unwind_ex  # noqa: E402
from tests.workloads import NO_FRAME_POINTERS, compile_c  # noqa: E402

NOTAIL = NO_FRAME_POINTERS + ('-fno-optimize-sibling-calls',)
FILES = ['/lib/x86_64-linux-gnu/libc.so.6', '/usr/bin/python3.11', '/lib64/ld-linux-x86-64.so.2',
         '/lib/x86_64-linux-gnu/libm.so.6']


def bench_build(use_pyelftools: bool):
    out = {}
    for path in FILES:
        if not os.path.exists(path):
            continue
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            table, info = build_cfi_table(path, lazy=False)  # the whole table, compiled
            times.append(time.perf_counter() - t0)
        row = {'cold_ms_first': times[0] * 1e3, 'cold_ms_best': min(times) * 1e3, 'rows': len(table),
               'rules': len(table.rules), 'fdes': table.fdes, 'bytes': table.nbytes}
        t0 = time.perf_counter()
        auto, _ = build_cfi_table(path)  # what the profiler uses: lazy for big .eh_frame sections
        row['profiler_table'] = type(auto).__name__
        row['profiler_table_cold_ms'] = (time.perf_counter() - t0) * 1e3
        if use_pyelftools:
            from elftools.elf.elffile import ELFFile

            t0 = time.perf_counter()
            with open(path, 'rb') as f:
                dw = ELFFile(f).get_dwarf_info(follow_links=False)
                for e in dw.EH_CFI_entries():
                    if hasattr(e, 'get_decoded'):
                        try:
                            e.get_decoded()
                        except Exception:  # noqa: BLE001
                            pass
            row['pyelftools_ms'] = (time.perf_counter() - t0) * 1e3
        out[path] = row
    return out


def bench_unwind(n: int):
    from datadog_checks.host_profiler.unwind.snapshot import capture

    tmp = tempfile.mkdtemp()
    workloads = {
        'c_split_no_fp': [compile_c('split.c', tmp, cflags=NOTAIL), '60'],
        'c_recursion_40': [compile_c('recurse.c', tmp, cflags=NOTAIL, defines=('DEPTH=40',)), '60'],
        'python3_busy_loop': ['/usr/bin/python3', '-c', 'while True: pass'],
    }
    out = {}
    t = Telemetry()
    u = Unwinder(t)
    for name, cmd in workloads.items():
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            proc = read_process(p.pid)
            snaps = []
            for _ in range(n):
                snaps.append(capture(p.pid, 16384))
                time.sleep(0.001)
            t0 = time.perf_counter()
            find = u.tables.finder(proc)
            for s in snaps[:1]:
                unwind_ex(s.regs, s.stack, s.sp, find)  # cold: compiles the tables this stack needs
            cold = time.perf_counter() - t0
        finally:
            p.kill()
            p.wait()
        per, frames, complete = [], 0, 0
        for _ in range(5):
            for s in snaps:
                t0 = time.perf_counter()
                addrs, result = unwind_ex(s.regs, s.stack, s.sp, find)
                per.append(time.perf_counter() - t0)
                frames += len(addrs)
                complete += result == COMPLETE
        per.sort()
        # what the profiler does: the process's pc -> rule cache kept across samples
        find, rules, _memo = u.tables.walk_state(proc)
        cached = []
        for _ in range(5):
            for s in snaps:
                t0 = time.perf_counter()
                unwind_ex(s.regs, s.stack, s.sp, find, rule_cache=rules)
                cached.append(time.perf_counter() - t0)
        # and the whole-walk memo (unwind/memo.py): the profiler's path, Unwinder.unwind_sample.
        # Each snapshot comes back 5 times: the first is a miss, then a hit if the words it read
        # are the same (they are: the same snapshot), so this is the cost of a hit, not a hit rate.
        memoized = []
        for _ in range(5):
            for s in snaps:
                t0 = time.perf_counter()
                u.unwind_sample(proc, s.regs, s.stack, s.sp)
                memoized.append(time.perf_counter() - t0)
        _f, _r, memo = u.tables.walk_state(proc)
        out[name] = {
            'samples': len(per), 'complete_pct': 100.0 * complete / len(per), 'frames_per_sample': frames / len(per),
            'us_per_sample_median': statistics.median(per) * 1e6, 'us_per_sample_p99': per[int(len(per) * 0.99)] * 1e6,
            'us_per_frame': sum(per) / frames * 1e6, 'first_sample_cold_ms': cold * 1e3,
            'us_per_sample_median_rule_cache': statistics.median(cached) * 1e6,
            'us_per_sample_median_walk_memo_hit': statistics.median(memoized) * 1e6,
            'walk_memo_hits': memo.hits, 'walk_memo_misses': memo.misses,
        }
    return out


def _bpf_prog_ns(name: str = 'on_cpu_sample'):
    """(run_time_ns, run_cnt) of our perf-event program (kernel.bpf_stats_enabled must be 1)."""
    import shutil

    if not shutil.which('bpftool'):
        return None
    out = subprocess.run(['bpftool', 'prog', 'show', '-j'], capture_output=True, text=True).stdout
    tot = [0, 0]
    for prog in json.loads(out or '[]'):
        if prog.get('name') == name:
            tot[0] += prog.get('run_time_ns', 0)
            tot[1] += prog.get('run_cnt', 0)
    return tot


def bench_profiler_cpu(seconds: float, modes=('frame_pointers', 'auto'), rates=(20, 99), workload_only=False):
    """CPU of this process (all threads: the sampler thread polls the ring buffer, unwinds, drains)
    in steady state while every core runs the no-frame-pointer workload; plus the BPF program's
    own run time (charged to the interrupted tasks, not to us) from kernel.bpf_stats_enabled."""
    from datadog_checks.host_profiler.receiver.receiver import Receiver, ReceiverConfig

    tmp = tempfile.mkdtemp()
    binary = compile_c('split.c', tmp, cflags=NOTAIL)
    ncpu = os.cpu_count() or 1
    try:
        with open('/proc/sys/kernel/bpf_stats_enabled') as f:
            stats_before = f.read().strip()
        with open('/proc/sys/kernel/bpf_stats_enabled', 'w') as f:
            f.write('1')
    except OSError:
        stats_before = None
    out = {}
    try:
        for rate in rates:
            for mode in modes:
                busy = [subprocess.Popen([binary, str(seconds + 90)]) for _ in range(ncpu)]
                tel = Telemetry()
                rx = Receiver(ReceiverConfig(samples_per_second=rate, unwinding=mode, check_interval=0,
                                             pids=[p.pid for p in busy] if workload_only else [],
                                             lock_path=os.path.join(tmp, 'lock')), telemetry=tel)
                try:
                    rx.start()
                    # warm-up: until no CFI table was compiled for 3 s (at most 30 s)
                    t_end = time.monotonic() + 30
                    last, quiet_since = -1, time.monotonic()
                    while time.monotonic() < t_end:
                        time.sleep(0.5)
                        built = tel.total('unwind.cfi.tables.built')
                        if built != last:
                            last, quiet_since = built, time.monotonic()
                        elif time.monotonic() - quiet_since >= 3 or mode == 'frame_pointers':
                            break
                    rx.collect()
                    build0 = tel.total('unwind.cfi.build_duration')
                    u0, n0 = tel.total('unwind.duration'), tel.total('unwind.samples')
                    b0 = _bpf_prog_ns()
                    r0 = os.times()
                    w0 = time.monotonic()
                    time.sleep(seconds)
                    r1 = os.times()
                    wall = time.monotonic() - w0
                    b1 = _bpf_prog_ns()
                    col = rx.collect()
                finally:
                    rx.stop(block=True, timeout=30)
                    for p in busy:
                        p.kill()
                        p.wait()
                cpu = (r1.user - r0.user) + (r1.system - r0.system)
                samples = sum(s.count for s in col.samples)
                builds = tel.total('unwind.cfi.build_duration') - build0
                row = {'profiler_cpu_pct_of_one_core': 100.0 * cpu / wall, 'samples': samples,
                       'cfi_build_s_in_window': builds,
                       'profiler_cpu_pct_excluding_cfi_builds': 100.0 * (cpu - builds) / wall,
                       'samples_per_s': samples / wall, 'us_cpu_per_sample': 1e6 * cpu / max(1, samples),
                       'unwind_us_per_sample': 1e6 * (tel.total('unwind.duration') - u0 - builds)
                       / max(1, tel.total('unwind.samples') - n0),
                       'unwound': tel.totals().get('unwind.samples{result:complete}', 0),
                       'lost': {k: v for k, v in col.lost.items() if v}}
                if b0 and b1 and b1[1] > b0[1] and b1[0] > b0[0]:  # (a program of the previous run may vanish)
                    row['bpf_us_per_sample'] = (b1[0] - b0[0]) / 1e3 / (b1[1] - b0[1])
                    row['bpf_cpu_pct_of_one_core'] = 100.0 * (b1[0] - b0[0]) / 1e9 / wall
                out['{}@{}Hz'.format(mode, rate)] = row
    finally:
        if stats_before is not None:
            with open('/proc/sys/kernel/bpf_stats_enabled', 'w') as f:
                f.write(stats_before)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--samples', type=int, default=200)
    ap.add_argument('--pyelftools', action='store_true')
    ap.add_argument('--profile', action='store_true', help='profiler CPU in frame_pointers vs auto (needs BPF)')
    ap.add_argument('--seconds', type=float, default=20)
    ap.add_argument('--workload-only', action='store_true', help='--profile: sample only the busy workload (pid filter)')
    ap.add_argument('--json', action='store_true')
    args = ap.parse_args()
    result = {'cfi_build': bench_build(args.pyelftools), 'unwind': bench_unwind(args.samples)}
    if args.profile:
        result['profiler_cpu'] = bench_profiler_cpu(args.seconds, workload_only=args.workload_only)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print('CFI table build (cold):')
    for path, r in result['cfi_build'].items():
        extra = ', pyelftools %.0f ms' % r['pyelftools_ms'] if 'pyelftools_ms' in r else ''
        print('  %-36s compiled %5.0f ms (best %4.0f) %6d rows %4d rules %7d bytes%s; profiler uses %s: %.1f ms' % (
            path, r['cold_ms_first'], r['cold_ms_best'], r['rows'], r['rules'], r['bytes'], extra,
            r['profiler_table'], r['profiler_table_cold_ms']))
    print('Unwinding (warm tables, 16 KiB stack copies from ptrace snapshots):')
    for name, r in result['unwind'].items():
        print('  %-20s %5.1f us/sample median (p99 %5.1f), %5.2f us/frame, %5.1f frames, %5.1f%% complete; '
              'with the rule cache %.1f us, a walk-memo hit %.1f us' % (
                  name, r['us_per_sample_median'], r['us_per_sample_p99'], r['us_per_frame'], r['frames_per_sample'],
                  r['complete_pct'], r['us_per_sample_median_rule_cache'], r['us_per_sample_median_walk_memo_hit']))
    if 'profiler_cpu' in result:
        print('Profiler CPU with every core busy (%d cores), steady state:' % (os.cpu_count() or 1))
        for name, r in result['profiler_cpu'].items():
            print('  %-20s %5.2f%% of a core (%.2f%% without the %.2f s of CFI compiles in the window) (%6.0f samples/s, '
                  '%5.1f us CPU/sample, unwind %5.1f us/sample, BPF %s us/sample = %s%% of a core) lost=%s' % (
                      name, r['profiler_cpu_pct_of_one_core'], r['profiler_cpu_pct_excluding_cfi_builds'],
                      r['cfi_build_s_in_window'], r['samples_per_s'], r['us_cpu_per_sample'],
                      r['unwind_us_per_sample'], '%.1f' % r['bpf_us_per_sample'] if 'bpf_us_per_sample' in r else '?',
                      '%.2f' % r['bpf_cpu_pct_of_one_core'] if 'bpf_cpu_pct_of_one_core' in r else '?', r['lost']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
