# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Own CPU of three `host-profiler run` processes at once, over the same window and the same two
Python workers: on a host shared with other sessions, the load changes between the rounds of
python_host_overhead.py more than what is measured (a few hundredths of a percent of a core).

    .venv/bin/python benchmarks/python_cpu_side_by_side.py --baseline DIR [--window 120] [--warmup 40]

  python       this checkout, `receiver.interpreters: [python]`
  python_base  the checkout in DIR (e.g. `git archive <commit> | tar -x -C DIR`), the same configuration
  native_only  this checkout, `receiver.interpreters: []`

All at --frequency Hz (20), profiling only the two workers (pysplit.py, as python_host_overhead.py);
with --whole-host, the whole host (each profiler then also sees the other two, the same for all
three): on a host shared with other sessions, the only way to compare whole-host figures, which
follow what the others run.
CPU time of each thread from /proc/PID/task/*/schedstat (ns), as % of one core, per thread in
creation order (main, kernel-unwind, events, observe, sampler/drain, runtimes) and in total.
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
sys.path.insert(0, HERE)
from python_host_overhead import PYSPLIT, PYTHONS, start  # noqa: E402
from overhead import stop_profiler  # noqa: E402


def threads_ns(pid: int) -> dict:
    out = {}
    for t in os.listdir('/proc/{}/task'.format(pid)):
        try:
            with open('/proc/{}/task/{}/schedstat'.format(pid, t)) as f:
                out[int(t)] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--baseline', required=True)
    ap.add_argument('--window', type=float, default=120.0)
    ap.add_argument('--warmup', type=float, default=40.0)
    ap.add_argument('--frequency', type=int, default=20)
    ap.add_argument('--json')
    ap.add_argument('--whole-host', action='store_true', help='profile the whole host, not only the two workers')
    args = ap.parse_args()
    total = args.window + args.warmup + 60
    workers = [subprocess.Popen([p, PYSPLIT, str(total), '20'], stdout=subprocess.DEVNULL)
               for p in PYTHONS if os.path.exists(p)]
    pids = None if args.whole_host else [w.pid for w in workers]
    procs = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in ('python', 'python_base', 'native_only'):
                procs[name] = start(name, args.frequency, tmp, pids, args.baseline if name == 'python_base' else '')
            time.sleep(args.warmup)
            for name, p in procs.items():
                if p.poll() is not None:
                    raise SystemExit('{} exited: see {}'.format(name, os.path.join(tmp, name, 'err')))
            load0 = os.getloadavg()[0]
            a = {n: threads_ns(p.pid) for n, p in procs.items()}
            t0 = time.monotonic()
            time.sleep(args.window)
            b = {n: threads_ns(p.pid) for n, p in procs.items()}
            wall = time.monotonic() - t0
            rows = {}
            for n in procs:
                per = [round(100.0 * (b[n][t] - a[n].get(t, b[n][t])) / 1e9 / wall, 4) for t in sorted(b[n])]
                rows[n] = {'own_cpu_pct_core': round(sum(per), 3), 'threads_pct_core': per}
            out = {'window_s': round(wall, 1), 'frequency': args.frequency, 'whole_host': args.whole_host, 'load1': [round(load0, 2),
                   round(os.getloadavg()[0], 2)], 'rows': rows}
            print(json.dumps(out, indent=1))
            if args.json:
                with open(args.json, 'w') as f:
                    json.dump(out, f, indent=1)
    finally:
        for p in procs.values():
            stop_profiler(p)
        for w in workers:
            w.kill()
            w.wait()


if __name__ == '__main__':
    main()
