# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Scale: samples, processes and unique stacks per check run against run time and memory.

    python benchmarks/scale.py [--processes 1,10,100,1000,10000] [--stacks 1000,10000,100000]
                               [--frequency 999] [--interval 10] [--runs 2] [--quick]

Every point runs in a fresh Python process (so that its RSS is its own) that drives
ProfilerPipeline in-process with a file exporter (OTLP encoding included), one warm-up run,
then --runs measured runs --interval s apart. Per point: samples, resources (processes),
unique stacks per run; run_once duration (median), its CPU time on the check thread (the rest
is waiting: for the GIL held by the sampler thread, or for a busy host's CPUs) and, for the
processes sweep, ms per process seen; RSS after the runs and peak (VmHWM).

  processes  benchmarks/workloads/spawner.c: N mostly-sleeping processes, each burning 2 ms
             at random moments, about 0.6 of one core in total; the real kernel path
             (BPF maps, drains, /proc metadata of every new pid, symbolization).
  stacks     the real kernel path with benchmarks/workloads/stacks.c (one process per core,
             PATHS distinct call paths of depth 10; maps sized for 128k entries). Sampling
             bounds how many distinct stacks a run can see (frequency x CPUs x interval).
  inject     1k..100k unique stacks in one run, whatever the sampling rate: the receiver is
             replaced by a stub whose collect() returns N distinct stacks made of real return
             addresses inside a live `stacks` process (depth 21), so the symbolizer, builder,
             processors and OTLP encoder do the real work.
The per-stack cost (run time / unique stacks) should stay flat (linear or better), with no
step at a map size.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import workloads as w  # noqa: E402


def _measure(pipeline, telemetry, runs, interval, before_run=None):
    out = []
    receiver = pipeline.receiver
    for i in range(runs):
        time.sleep(interval)
        if before_run:
            before_run()
        t0, c0 = time.monotonic(), time.thread_time()
        r = pipeline.run_once()
        dt, cpu = time.monotonic() - t0, time.thread_time() - c0
        prof = r.profile
        out.append({
            'run_s': dt,
            'run_cpu_s': cpu,  # the check thread's own CPU time: what is not waiting (GIL, host load)
            'samples': sum(s.value for res in prof.resources for s in res.samples) if prof else 0,
            'resources': len(prof.resources) if prof else 0,
            'unique_stacks': telemetry.gauge_sum('sampler.unique_stacks'),
            'rss_mb': w.rss_mb(os.getpid()),
            # the sampler thread was started again (it stopped or failed): such a run pays a BPF compile
            'restarted': pipeline.receiver is not receiver,
        })
        receiver = pipeline.receiver
    return out


def _summary(kind, n, runs, extra=None, telemetry=None):
    d = {
        'symbols_cache_mb': round(telemetry.gauge_sum('symbols.cache.bytes') / 1e6, 1) if telemetry else None,
        'kind': kind, 'n': n,
        'samples': int(w.median([r['samples'] for r in runs])),
        'resources': int(w.median([r['resources'] for r in runs])),
        'unique_stacks': int(w.median([r['unique_stacks'] for r in runs])),
        'run_s': round(w.median([r['run_s'] for r in runs]), 3),
        'run_cpu_s': round(w.median([r['run_cpu_s'] for r in runs]), 3),
        'ms_per_process': round(w.median([r['run_s'] * 1e3 / max(1, r['resources']) for r in runs]), 3),
        'rss_mb': round(runs[-1]['rss_mb'], 1),
        'hwm_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3, 1),
    }
    if any(r.get('restarted') for r in runs):
        d['sampler_restarted'] = True  # the figures include a sampler start-up: not comparable
    d.update(extra or {})
    return d


def point_processes(n, args):
    tmp = tempfile.mkdtemp(prefix='hp-scale-')
    spawner = w.build('spawner')
    period_ms = max(10, int(n * 2 / 0.6))
    total = 30 + (args.runs + 1) * args.interval + n / 500
    sp = subprocess.Popen([spawner, str(n), '2', str(period_ms), str(total)], stdout=subprocess.PIPE, text=True)
    sp.stdout.readline()  # ready
    pipeline, telemetry = w.make_pipeline(w.pipeline_instance(tmp, args.frequency, {
        'file': {'directory': os.path.join(tmp, 'out'), 'formats': ['otlp'], 'max_files': 2}}), args.interval)
    try:
        pipeline.run_once()
        runs = _measure(pipeline, telemetry, args.runs + 1, args.interval)[1:]
        return _summary('processes', n, runs, {'tracked': telemetry.gauge_sum('processes.tracked'),
                                               'lost': telemetry.total('sampler.lost')}, telemetry)
    finally:
        w.close_pipeline(pipeline)
        sp.terminate()
        sp.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def point_stacks(n, args):
    tmp = tempfile.mkdtemp(prefix='hp-scale-')
    stacks = w.build('stacks')
    procs = [subprocess.Popen([stacks, str(n), '10']) for _ in range(os.cpu_count() or 1)]
    pipeline, telemetry = w.make_pipeline(w.pipeline_instance(tmp, args.frequency, {
        'file': {'directory': os.path.join(tmp, 'out'), 'formats': ['otlp'], 'max_files': 2}},
        stack_storage_size=131072, max_stack_keys=131072), args.interval)
    try:
        pipeline.run_once()
        runs = _measure(pipeline, telemetry, args.runs + 1, args.interval)[1:]
        return _summary('stacks', n, runs, {'lost': telemetry.total('sampler.lost')}, telemetry)
    finally:
        w.close_pipeline(pipeline)
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _symbols(binary):
    out = subprocess.run(['nm', binary], capture_output=True, text=True, check=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            syms[parts[2]] = int(parts[0], 16)
    return syms


class _StubReceiver:
    """Stands in for the receiver: collect() returns N distinct stacks of a live process."""

    running = True

    def __init__(self, pid, binary, n):
        from datadog_checks.host_profiler.receiver.processes import ProcessRegistry

        self.registry = ProcessRegistry()
        self.registry.ensure(pid)
        info = self.registry.get(pid)
        base = min(m.start - m.offset for m in info.mappings if m.path == binary)
        syms = _symbols(binary)
        ret = lambda name, off: base + syms[name] + off  # noqa: E731 - an address inside the function
        self.pid, self.n = pid, n
        digits = 1
        while 4 ** digits < n:
            digits += 1
        r = [ret('r0', 9), ret('r1', 9), ret('r2', 9), ret('r3', 9)]
        nxt, leaf, drive, main = ret('next', 40), ret('leaf', 12), ret('drive', 30), ret('main', 40)
        self.stacks = []
        for k in range(n):
            frames = [leaf]
            x = k
            for _ in range(digits):
                frames += [nxt, r[x & 3]]
                x >>= 2
            frames += [nxt, drive, main]
            self.stacks.append(tuple(frames))
        self.t = time.time_ns()

    def heartbeat(self):
        pass

    def collect(self):
        from datadog_checks.host_profiler.profile.model import RawSample
        from datadog_checks.host_profiler.receiver.receiver import Collected

        samples = [RawSample(self.pid, self.pid, 'stacks', s, (), 1) for s in self.stacks]
        t0, self.t = self.t, time.time_ns()
        return Collected(samples=samples, lost={}, processes=self.registry.snapshot(), start_ns=t0, end_ns=self.t,
                         unique_stacks=self.n)


def point_inject(n, args):
    tmp = tempfile.mkdtemp(prefix='hp-scale-')
    binary = w.build('stacks')
    proc = subprocess.Popen([binary, '1', '1'])  # alive, mostly idle-cheap
    pipeline, telemetry = w.make_pipeline(w.pipeline_instance(tmp, args.frequency, {
        'file': {'directory': os.path.join(tmp, 'out'), 'formats': ['otlp'], 'max_files': 2}}), args.interval)
    try:
        time.sleep(0.2)
        pipeline.receiver = _StubReceiver(proc.pid, binary, n)
        telemetry.gauge('sampler.unique_stacks', n)
        pipeline.run_once()  # warm: symbol caches
        runs = _measure(pipeline, telemetry, args.runs, 0.0)
        return _summary('inject', n, runs, telemetry=telemetry)
    finally:
        pipeline.receiver = None
        pipeline.close()
        proc.kill()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def run_point(kind, n, args):
    cmd = [sys.executable, os.path.abspath(__file__), '--point', kind, str(n), '--frequency', str(args.frequency),
           '--interval', str(args.interval), '--runs', str(args.runs)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    lines = [x for x in p.stdout.splitlines() if x.startswith('{')]
    if not lines:
        return {'kind': kind, 'n': n, 'error': p.stderr[-800:]}
    return json.loads(lines[-1])


def linearity(points):
    """Per-unit cost (run time / unique stacks, samples or processes seen) across the sweep: flat or
    falling = linear or better."""
    notes = []
    for kind, unit in (('processes', 'samples'), ('processes', 'resources'), ('stacks', 'unique_stacks'),
                       ('inject', 'unique_stacks')):
        ps = [p for p in points if p.get('kind') == kind and not p.get('error') and p.get(unit)]
        if len(ps) < 2:
            continue
        per = [p['run_s'] / p[unit] * 1e3 for p in ps]
        steps = [per[i + 1] / per[i] for i in range(len(per) - 1)]
        notes.append({'kind': kind, 'ms_per_' + unit: [round(x, 4) for x in per],
                      'max_step': round(max(steps), 2), 'linear_or_better': max(steps) <= 1.5})
    return notes


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--processes', default='1,10,100,1000,10000')
    ap.add_argument('--stacks', default='1000,10000,100000')
    ap.add_argument('--inject', default='1000,3000,10000,30000,100000')
    ap.add_argument('--frequency', type=int, default=999)
    ap.add_argument('--interval', type=float, default=10.0)
    ap.add_argument('--runs', type=int, default=2)
    ap.add_argument('--quick', action='store_true', help='smaller sweeps, 1 run, 5 s interval')
    ap.add_argument('--point', nargs=2, metavar=('KIND', 'N'), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.point:
        kind, n = args.point[0], int(args.point[1])
        fn = {'processes': point_processes, 'stacks': point_stacks, 'inject': point_inject}[kind]
        print(json.dumps(fn(n, args)))
        return 0
    if args.quick:
        args.processes, args.stacks, args.inject = '1,100,1000', '1000,10000', '1000,10000,30000'
        args.runs, args.interval = 1, 5.0
    points = []
    for kind, values in (('processes', args.processes), ('stacks', args.stacks), ('inject', args.inject)):
        for v in [int(x) for x in values.split(',') if x]:
            p = run_point(kind, v, args)
            points.append(p)
            print(json.dumps(p), flush=True)
    print()
    print('| Sweep | N | Samples/run | Processes/run | Unique stacks/run | run_once s | CPU s | ms per process '
          '| ms per 1k stacks | RSS MB | Peak MB |')
    print('|---|---|---|---|---|---|---|---|---|---|---|')
    for p in points:
        if p.get('error'):
            print('| {} | {} | error: {} |'.format(p['kind'], p['n'], p['error'].strip().splitlines()[-1:]))
            continue
        print('| {} | {} | {} | {} | {} | {:.3f} | {:.3f} | {:.3f} | {:.1f} | {:.0f} | {:.0f} |'.format(
            p['kind'], p['n'], p['samples'], p['resources'], p['unique_stacks'], p['run_s'], p.get('run_cpu_s', 0),
            p['run_s'] / max(1, p['resources']) * 1e3, p['run_s'] / max(1, p['unique_stacks']) * 1e6,
            p['rss_mb'], p['hwm_mb']))
    lin = linearity(points)
    for note in lin:
        unit = [k for k in note if k.startswith('ms_per_')][0][len('ms_per_'):]
        print('{} {} (per {}): max step of per-unit cost between points {:.2f}x'.format(
            'LINEAR' if note['linear_or_better'] else 'STEP', note['kind'], unit, note['max_step']))
    print(json.dumps({'points': points, 'linearity': lin, 'machine': w.machine(), 'args': vars(args)}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
