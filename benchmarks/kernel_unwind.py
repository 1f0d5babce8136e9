# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""In-kernel unwinding (issue #20): per-sample cost of `auto` (kernel unwinding), `frame_pointers`
and `dwarf` (every stack copied and unwound in user space), in one run, on C, CPython, Go and JVM
workloads at 999 Hz; the projection to 96/192-core hosts at 20/99 Hz; BPF map memory of the
tables (the maps' memlock, as `bpftool map show` prints it); the profiler's RSS; cold build
times of the tables (libc, libpython3.11, libLLVM).

Per sample = (BPF run time of on_cpu_sample, which includes its tail calls, from
kernel.bpf_stats_enabled + the profiler process's CPU time, CLOCK_PROCESS_CPUTIME_ID) / samples of
the workload (sampler.samples), in a steady-state
window after the tables are loaded. Each (workload, mode) runs in a fresh child process (clean
RSS and CPU accounting) sampling only the workload's pids (receiver pids filter).

    python benchmarks/kernel_unwind.py [--seconds 6] [--workloads c,python,go,jvm] [--rounds N] [--together]
        [--modes auto,frame_pointers,dwarf] [--json]

--rounds N repeats each workload's modes N times, alternating their order, and reports each
non-frame-pointer mode's ratio to `frame_pointers` round by round (median, min, max), so that one
noisy round does not decide; --together runs a round's modes at the same time with their windows
opened at the same moment (paired: same schedule of the workload, same load beside it).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..'))

MODES = ('auto', 'frame_pointers', 'dwarf')
LIBS = {
    'libc.so.6': '/lib/x86_64-linux-gnu/libc.so.6',
    'libpython3.11.so': '/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0',
    'libLLVM-14.so': '/usr/lib/llvm-14/lib/libLLVM-14.so.1',
}


def _fdinfo(fd: int) -> dict:
    out = {}
    with open('/proc/self/fdinfo/{}'.format(fd)) as f:
        for line in f:
            k, _, v = line.partition(':')
            out[k.strip()] = v.strip()
    return out


def _rss_kb() -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def _status_kb(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return 0


def one(mode: str, pids, seconds: float, sync: bool = False) -> dict:
    """Runs in the child: one receiver, warm-up, a measured window. With `sync`, the child prints
    `ready` after its warm-up and waits for a line on stdin before its window, so that the parent
    can open the windows of several children (one per mode) at the same moment."""
    from datadog_checks.host_profiler.receiver.receiver import Receiver, ReceiverConfig
    from datadog_checks.host_profiler.runtime.bpf_stats import enable_stats_fd, prog_info_by_id
    from datadog_checks.host_profiler.runtime.telemetry import Telemetry

    if os.environ.get('KU_TIMING'):  # --ku-timing: the walk's own clock (kernel_unwind.h's KU_TIMING)
        from datadog_checks.host_profiler.receiver import kernel_unwind as kumod

        cflags = kumod.KernelUnwind.cflags
        kumod.KernelUnwind.cflags = lambda self: dict(cflags(self), KU_TIMING=1)
    stats_fd = enable_stats_fd()
    tel = Telemetry()
    tmp = tempfile.mkdtemp()
    rx = Receiver(ReceiverConfig(samples_per_second=999, drain_interval=1.0, check_interval=0, pids=list(pids),
                                 lock_path=os.path.join(tmp, 'hp.lock'), unwinding=mode), telemetry=tel)
    rx.start()
    try:
        ku = rx._sampler.kernel_unwind
        t0 = time.monotonic()
        if ku is not None:  # every workload process loaded (its first sample), then no load pending
            end = time.monotonic() + 180
            while time.monotonic() < end and ku.stats()['processes'] < len(pids):
                time.sleep(0.2)
            ku.wait_idle(120)
        time.sleep(3.0)  # dwarf: the CFI tables compile during the first drains
        warm = time.monotonic() - t0
        rss_warm = _rss_kb()
        if sync:
            print('ready', flush=True)
            sys.stdin.readline()
        ids = {i: n for i, n in rx.program_ids().items() if n == 'on_cpu_sample'}

        def snap():
            run = [0, 0]
            for i in ids:
                info = prog_info_by_id(i)
                run[0] += info['run_time_ns'] or 0
                run[1] += info['run_cnt'] or 0
            return run, time.process_time(), dict(tel.totals()), time.monotonic(), (
                ku.kernel_stats() if ku is not None else {})

        rx.collect()
        a = snap()
        time.sleep(seconds)
        b = snap()
        rx.collect()
        maps = {}
        if ku is not None:
            for name in ('ku_rows', 'ku_rules', 'ku_tables', 'ku_procs', 'ku_stacks0', 'ku_stacks1', 'ku_state',
                         'ku_cache'):
                maps[name] = int(_fdinfo(rx._sampler.table(name).map_fd).get('memlock', 0))
        kstats = ku.stats() if ku is not None else {}
        rss_end = _rss_kb()
    finally:
        rx.stop(block=True, timeout=30)
        os.close(stats_fd)

    def d(name, prefix=False):
        if prefix:
            return sum(v for k, v in b[2].items() if k.startswith(name)) - sum(
                v for k, v in a[2].items() if k.startswith(name))
        return b[2].get(name, 0) - a[2].get(name, 0)

    runs = b[0][1] - a[0][1]
    bpf_ns = b[0][0] - a[0][0]
    cpu_s = b[1] - a[1]
    samples = d('sampler.samples')
    return {
        'mode': mode, 'warmup_s': round(warm, 1), 'window_s': round(b[3] - a[3], 2), 'runs': runs, 'samples': samples,
        # per sample kept (the workload's): the program also runs, briefly, for the other tasks
        'bpf_us_per_sample': bpf_ns / 1e3 / max(1, samples),
        'user_us_per_sample': cpu_s * 1e6 / max(1, samples),
        'total_us_per_sample': (bpf_ns / 1e3 + cpu_s * 1e6) / max(1, samples),
        'bpf_us_per_run': bpf_ns / 1e3 / max(1, runs),  # every invocation, filtered-out tasks included
        'bpf_ms_per_s': bpf_ns / 1e6 / max(1e-9, b[3] - a[3]),
        'user_ms_per_s': cpu_s * 1e3 / max(1e-9, b[3] - a[3]),
        'lost': d('sampler.lost', True), 'partial': d('sampler.stacks.partial', True),
        'copy_fallback': d('unwind.kernel.copy_fallback', True),
        'user_unwound': d('unwind.samples', True), 'kernel_unwound': d('unwind.kernel.samples'),
        'rss_kb': rss_end, 'rss_warm_kb': rss_warm, 'rss_peak_kb': _status_kb('VmHWM'),
        'maps_memlock': maps, 'kernel_tables': kstats,
        # the in-kernel walk's counters over the window (ku_stats): frames, tail calls, rule searches
        # (ku_cache misses), per sample walked
        'ku_window': {k: b[4].get(k, 0) - a[4].get(k, 0) for k in b[4]},
    }


def _start_workloads(kind: str, tmp: str):
    from tests.workloads import NO_FRAME_POINTERS, compile_c, compile_java, start_java

    notail = NO_FRAME_POINTERS + ('-fno-optimize-sibling-calls',)
    if kind == 'c':
        b = compile_c('split.c', tmp, cflags=notail)
        return [subprocess.Popen([b, '600']) for _ in range(2)]
    if kind == 'python':
        return [subprocess.Popen(['/usr/bin/python3', '-c', 'while True: pass']) for _ in range(4)]
    if kind == 'go':
        out = os.path.join(tmp, 'gospin')
        env = dict(os.environ, GOCACHE=os.path.join(tmp, 'gocache'), GOPATH=os.path.join(tmp, 'gopath'))
        subprocess.run(['go', 'build', '-o', out, os.path.join(HERE, 'workloads', 'gospin.go')], check=True,
                       env=env, capture_output=True)
        return [subprocess.Popen([out, '600']) for _ in range(2)]
    if kind == 'jvm':
        cp = compile_java('JvmSplit.java', tmp)
        return [start_java(cp, 'JvmSplit', '600')]
    raise ValueError(kind)


def cold_builds() -> dict:
    from datadog_checks.host_profiler.unwind.cfi import build_cfi_table
    from datadog_checks.host_profiler.unwind.stack_deltas import RuleSet, compile_deltas

    out = {}
    for name, path in LIBS.items():
        if not os.path.exists(path):
            continue
        t0 = time.perf_counter()
        table, _ = build_cfi_table(path, lazy=False)
        t1 = time.perf_counter()
        d = compile_deltas(table, RuleSet(65536))
        t2 = time.perf_counter()
        out[name] = {'cfi_s': t1 - t0, 'deltas_s': t2 - t1, 'total_s': t2 - t0, 'cfi_rows': len(table),
                     'rows': len(d), 'bytes': d.nbytes, 'rules': d.rules_used}
    return out


def _run_children(modes, pids: str, seconds: float, together: bool, filtered_us: float) -> dict:
    """One child per mode. `together`: all started at once, their windows opened at the same moment
    (paired: same workload schedule, same load); else one after the other in the given order."""
    def start(mode):
        # 'auto@/other/tree': that tree's code (its copy of this script), for A/B runs of two versions
        mode, _, tree = mode.partition('@')
        script = os.path.join(tree, 'benchmarks', os.path.basename(__file__)) if tree else __file__
        return subprocess.Popen([sys.executable, script, '--one', mode, '--pids', pids, '--seconds', str(seconds),
                                 '--sync'], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def finish(mode, child):
        out, err = child.communicate(timeout=600)
        try:
            res = json.loads(out.strip().splitlines()[-1])
            n = max(1, res['samples'])
            net = max(0.0, res['bpf_us_per_run'] * res['runs'] - filtered_us * max(0, res['runs'] - n)) / n
            res['bpf_net_us_per_sample'] = net
            res['net_total_us_per_sample'] = net + res['user_us_per_sample']
            res['load'] = os.getloadavg()[0]
            return res
        except (ValueError, IndexError, KeyError):
            return {'error': err[-800:]}

    def ready(child):
        line = child.stdout.readline()
        if line.strip() != 'ready':
            raise RuntimeError('child did not warm up: {!r}'.format(line))

    out = {}
    if together:
        children = {m: start(m) for m in modes}
        try:
            for c in children.values():
                ready(c)
        except RuntimeError:
            pass
        for c in children.values():
            if c.poll() is None:
                c.stdin.write('go\n')
                c.stdin.flush()
        for m, c in children.items():
            out[m] = finish(m, c)
        return out
    for m in modes:
        c = start(m)
        try:
            ready(c)
            c.stdin.write('go\n')
            c.stdin.flush()
        except (RuntimeError, BrokenPipeError):
            pass
        out[m] = finish(m, c)
    return out


def _spread(values):
    v = sorted(values)
    if not v:
        return None
    mid = v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
    return {'median': mid, 'min': v[0], 'max': v[-1], 'n': len(v), 'values': values}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--seconds', type=float, default=6.0)
    ap.add_argument('--workloads', default='c,python,go,jvm')
    ap.add_argument('--modes', default=','.join(MODES))
    ap.add_argument('--rounds', type=int, default=1,
                    help='rounds per workload; the order of the modes alternates from one round to the next')
    ap.add_argument('--together', action='store_true',
                    help='run the modes of a round at the same time, their windows opened together (paired)')
    ap.add_argument('--baseline', default='frame_pointers', help='the mode the others are compared with')
    ap.add_argument('--json', action='store_true')
    ap.add_argument('--ku-timing', action='store_true',
                    help='time each in-kernel walk (ku_start to the end of ku_finish) and report its mean')
    ap.add_argument('--one', help=argparse.SUPPRESS)
    ap.add_argument('--pids', help=argparse.SUPPRESS)
    ap.add_argument('--sync', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--no-builds', action='store_true')
    args = ap.parse_args()
    if args.ku_timing:
        os.environ['KU_TIMING'] = '1'  # inherited by the children
    if args.one:
        print(json.dumps(one(args.one, [int(p) for p in args.pids.split(',')], args.seconds, args.sync)))
        return
    results = {}
    rounds = {}
    tmp = tempfile.mkdtemp()
    # the program's cost for a sample it filters out (another task, idle): with a pid filter that keeps
    # nothing, every run is one; subtracted below to get the cost of the workload's samples alone
    r = subprocess.run([sys.executable, __file__, '--one', 'frame_pointers', '--pids', '1', '--seconds',
                        str(args.seconds)], capture_output=True, text=True)
    base = json.loads(r.stdout.strip().splitlines()[-1])
    filtered_us = base['bpf_us_per_run']
    print('filtered-out run: {:.2f} us'.format(filtered_us), file=sys.stderr, flush=True)
    modes = args.modes.split(',')
    for kind in args.workloads.split(','):
        procs = _start_workloads(kind, tmp)
        try:
            time.sleep(2.0 if kind != 'jvm' else 4.0)
            pids = ','.join(str(p.pid) for p in procs)
            for rnd in range(args.rounds):
                order = modes if rnd % 2 == 0 else modes[::-1]
                res = _run_children(order, pids, args.seconds, args.together, filtered_us)
                for mode in modes:
                    rounds.setdefault(kind, {}).setdefault(mode, []).append(res[mode])
                    print(kind, rnd, mode, json.dumps(res[mode]), file=sys.stderr, flush=True)
        finally:
            for p in procs:
                p.kill()
                p.wait()
        for mode in modes:  # the table shows the median round (by total per sample)
            ok = [x for x in rounds[kind][mode] if 'net_total_us_per_sample' in x]
            if ok:
                ok.sort(key=lambda x: x['net_total_us_per_sample'])
                results.setdefault(kind, {})[mode] = ok[len(ok) // 2]
            else:
                results.setdefault(kind, {})[mode] = rounds[kind][mode][0]
    ratios = {}
    for kind, modes_r in rounds.items():
        for mode in modes_r:
            if mode == args.baseline or args.baseline not in modes_r:
                continue
            tot, bpf, user = [], [], []
            for a, fp in zip(modes_r[mode], modes_r[args.baseline]):
                if 'net_total_us_per_sample' in a and 'net_total_us_per_sample' in fp:
                    tot.append(a['net_total_us_per_sample'] / fp['net_total_us_per_sample'])
                    bpf.append(a['bpf_net_us_per_sample'] / max(1e-9, fp['bpf_net_us_per_sample']))
                    user.append(a['user_us_per_sample'] / max(1e-9, fp['user_us_per_sample']))
            ratios['{} {}/{}'.format(kind, mode, args.baseline)] = {
                'total': _spread(tot), 'bpf': _spread(bpf), 'user': _spread(user)}
    report = {'results': results, 'rounds': rounds, 'ratios': ratios, 'filtered_run_us': filtered_us,
              'together': args.together}
    proj = {}
    for kind, modes_r in results.items():
        for mode, r in modes_r.items():
            if 'net_total_us_per_sample' not in r:
                continue
            for cores in (96, 192):
                for hz in (20, 99):
                    key = '{} {} {}c {}Hz'.format(kind, mode, cores, hz)
                    proj[key] = r['net_total_us_per_sample'] * cores * hz / 1e6
    report['projection_cores'] = proj
    if not args.no_builds:
        report['cold_builds'] = cold_builds()
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print('filtered-out run: {:.2f} µs; {} round(s), modes {}'.format(
        filtered_us, args.rounds, 'together (paired windows)' if args.together else 'one after the other, alternated'))
    print('| workload | mode | BPF µs/sample (net) | user µs/sample | total µs/sample | BPF ms/s | user ms/s '
          '| samples | lost | partial | copy fallbacks | RSS MiB (warm / end / peak) | load |')
    print('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
    for kind, modes_r in results.items():
        for mode, r in modes_r.items():
            if 'net_total_us_per_sample' not in r:
                print('| {} | {} | error | | | | | | | | | | |'.format(kind, mode))
                continue
            print('| {} | {} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {} | {} | {} | {} | {:.0f} / {:.0f} / {:.0f} '
                  '| {:.1f} |'.format(
                      kind, mode, r['bpf_net_us_per_sample'], r['user_us_per_sample'], r['net_total_us_per_sample'],
                      r['bpf_ms_per_s'], r['user_ms_per_s'], r['samples'], r['lost'], r['partial'],
                      r['copy_fallback'], r['rss_warm_kb'] / 1024, r['rss_kb'] / 1024, r['rss_peak_kb'] / 1024,
                      r['load']))
    for key, sp in ratios.items():
        if sp['total']:
            print('{}: total {:.2f}x (min {:.2f}, max {:.2f}, {} rounds), BPF {:.2f}x ({:.2f}-{:.2f}), '
                  'user {:.2f}x ({:.2f}-{:.2f})'.format(
                      key, sp['total']['median'], sp['total']['min'], sp['total']['max'], sp['total']['n'],
                      sp['bpf']['median'], sp['bpf']['min'], sp['bpf']['max'],
                      sp['user']['median'], sp['user']['min'], sp['user']['max']))
    for kind, modes_r in rounds.items():
        for mode, rs in modes_r.items():
            ok = [x for x in rs if 'rss_kb' in x]
            if ok:
                print('{} {}: lost {} partial {} copy fallbacks {} over {} rounds; RSS end {} MiB, peak {} MiB'.format(
                    kind, mode, sum(x['lost'] for x in ok), sum(x['partial'] for x in ok),
                    sum(x['copy_fallback'] for x in ok), len(ok),
                    '/'.join(str(x['rss_kb'] // 1024) for x in ok), '/'.join(str(x['rss_peak_kb'] // 1024) for x in ok)))
    for kind, modes_r in rounds.items():
        for mode, rs in modes_r.items():
            for x in rs:
                kw = x.get('ku_window') or {}
                if kw.get('walks'):
                    w = kw['walks']
                    print('{} {}: per walk {:.1f} frames ({:.1f} by frame pointers), {:.2f} tail calls, {:.2f} rule '
                          'searches (ku_cache misses){}, over {} walks'.format(
                              kind, mode, kw.get('frames', 0) / w, kw.get('fp_frames', 0) / w,
                              kw.get('tail_calls', 0) / w, kw.get('rule_searches', 0) / w,
                              ', {:.2f} µs in the walk'.format(kw['walk_ns'] / w / 1e3) if kw.get('walk_ns') else '',
                              w))
    for kind, modes_r in results.items():
        a = modes_r.get('auto', {})
        if a.get('maps_memlock'):
            print('{}: ku maps memlock {}'.format(kind, a['maps_memlock']))
            print('{}: tables {}'.format(kind, a['kernel_tables']))
    for k, v in proj.items():
        print('projection {}: {:.3f} cores'.format(k, v))
    for name, r in report.get('cold_builds', {}).items():
        print('cold build {}: {:.2f} s (CFI {:.2f} s + deltas {:.2f} s), {} rows, {} KiB'.format(
            name, r['total_s'], r['cfi_s'], r['deltas_s'], r['rows'], r['bytes'] // 1024))


if __name__ == '__main__':
    main()
