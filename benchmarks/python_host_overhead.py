# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Whole-host cost of Python frames: both cores busy running Python, `host-profiler run` at 20 Hz.

    .venv/bin/python benchmarks/python_host_overhead.py [--rounds 3] [--window 60] [--warmup 20]
                                                       [--frequency 20] [--json FILE]

One hot-loop Python process per core (tests/workloads/pysplit.py, recursion 20 deep: 26 Python
frames per stack), pyenv's 3.12 (shared libpython) and Debian's python3.11 (static), run for the
whole benchmark. Each round runs the standalone command twice, in a shuffled order, with the
default configuration (`unwinding: auto`) and:

  python       `receiver.interpreters: [python]` (the default): Python frames walked and named
  native_only  `receiver.interpreters: []`

After --warmup s (start-up, BCC compile and the first reads of code objects are not counted), over
--window s:
  - own CPU: utime+stime of the host-profiler process, as % of one core;
  - BPF: run time of its BPF programs (kernel run_time_ns, BPF stats on for the benchmark), % of
    one core; it runs in the sampled tasks' context, so it is in no process's CPU;
  - in-kernel time per sample: run_time_ns / run_cnt of `on_cpu_sample`.
Compare python with native_only within a round (the host is shared).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from overhead import HOST_PROFILER, bpf_prog_ids, stop_profiler  # noqa: E402

from datadog_checks.host_profiler.runtime.bpf_stats import enable_stats_fd, prog_info_by_id  # noqa: E402

PYSPLIT = os.path.join(os.path.dirname(HERE), 'tests', 'workloads', 'pysplit.py')
PYTHONS = (os.path.expanduser('~/.pyenv/versions/3.12.1/bin/python3.12'), '/usr/bin/python3.11')


def start(name: str, hz: int, tmp: str) -> subprocess.Popen:
    import signal

    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    cfg = os.path.join(d, 'conf.yaml')
    with open(cfg, 'w') as f:
        f.write('lock_file: {}\ndiagnostics_dir: {}\nreceiver:\n  interpreters: {}\n'.format(
            os.path.join(d, 'hp.lock'), os.path.join(d, 'diag'), '[python]' if name == 'python' else '[]'))
    cmd = [HOST_PROFILER, 'run', '--config', cfg, '--frequency', str(hz), '--interval', '10',
           '--duration', '100000', '--output', os.path.join(d, 'out')]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, 'err'), 'w'),
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _progs(pid: int) -> dict:
    out = {}
    for i in bpf_prog_ids(pid):
        try:
            out[i] = prog_info_by_id(i)
        except OSError:
            pass
    return out


def _cpu_s(pid: int) -> float:
    with open('/proc/{}/stat'.format(pid)) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')  # utime + stime


def measure(name: str, args, tmp: str) -> dict:
    proc = start(name, args.frequency, tmp)
    try:
        time.sleep(args.warmup)
        if proc.poll() is not None:
            raise SystemExit('{} exited: see {}'.format(name, os.path.join(tmp, name, 'err')))
        load0 = os.getloadavg()[0]
        a, c0, t0 = _progs(proc.pid), _cpu_s(proc.pid), time.monotonic()
        time.sleep(args.window)
        b, c1, t1 = _progs(proc.pid), _cpu_s(proc.pid), time.monotonic()
    finally:
        stop_profiler(proc)
    wall = t1 - t0
    bpf_ns = sum((b[i]['run_time_ns'] or 0) - (a[i]['run_time_ns'] or 0) for i in b if i in a)
    sample = [(b[i]['run_time_ns'] - a[i]['run_time_ns'], b[i]['run_cnt'] - a[i]['run_cnt'])
              for i in b if i in a and b[i]['name'] == 'on_cpu_sample']
    ns, cnt = (sum(x) for x in zip(*sample)) if sample else (0, 0)
    return {'config': name, 'load1': round(load0, 2),
            'own_cpu_pct_core': round(100.0 * (c1 - c0) / wall, 3),
            'bpf_pct_core': round(100.0 * bpf_ns / 1e9 / wall, 4),
            'samples': cnt, 'us_per_sample': round(ns / max(1, cnt) / 1000.0, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--window', type=float, default=60.0)
    ap.add_argument('--warmup', type=float, default=20.0)
    ap.add_argument('--frequency', type=int, default=20)
    ap.add_argument('--json')
    args = ap.parse_args()
    pythons = [p for p in PYTHONS if os.path.exists(p)]
    total = args.rounds * 2 * (args.window + args.warmup + 10) + 60
    workers = [subprocess.Popen([p, PYSPLIT, str(total), '20'], stdout=subprocess.DEVNULL) for p in pythons]
    stats_fd = enable_stats_fd()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                order = ['python', 'native_only']
                random.shuffle(order)
                for name in order:
                    row = measure(name, args, tmp)
                    row['round'] = r
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        os.close(stats_fd)
        for p in workers:
            p.kill()
            p.wait()
    summary = {}
    for name in ('python', 'native_only'):
        mine = [x for x in rows if x['config'] == name]
        summary[name] = {k: statistics.median(x[k] for x in mine)
                         for k in ('own_cpu_pct_core', 'bpf_pct_core', 'us_per_sample', 'load1')}
        summary[name]['total_pct_core'] = round(summary[name]['own_cpu_pct_core'] + summary[name]['bpf_pct_core'], 3)
    summary['us_per_sample_more'] = [round(p['us_per_sample'] - n['us_per_sample'], 2) for p, n in zip(
        [x for x in rows if x['config'] == 'python'], [x for x in rows if x['config'] == 'native_only'])]
    out = {'pythons': pythons, 'frequency': args.frequency, 'window_s': args.window, 'ncpu': os.cpu_count(), 'rows': rows, 'summary': summary}
    print(json.dumps(out['summary'], indent=1))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=1)


if __name__ == '__main__':
    main()
