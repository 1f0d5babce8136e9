# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""What short-lived processes cost the profiler: its CPU while the host execs `/bin/true` at a
fixed rate, against the same window with no exec, in one run.

    python benchmarks/exec_churn.py [--rates 0,50,200] [--window 30] [--rounds 2] [--unwinding auto]

For each round and rate, `host-profiler run --frequency 20` starts, warms up 15 s, then the
script execs `/bin/true` RATE times a second for --window seconds and reads the profiler's CPU
(utime+stime, /proc/PID/stat). Reported: CPU s per window, and the extra CPU per exec against
rate 0 (ms). A build-server or CI host can run hundreds of execs a second; the profiler reads a
process's metadata only when it is first sampled, so execs never sampled should cost ~0.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import workloads as w  # noqa: E402

HOST_PROFILER = os.path.join(os.path.dirname(sys.executable), 'host-profiler')


def one(rate: float, window: float, unwinding: str) -> dict:
    tmp = tempfile.mkdtemp(prefix='hp-exec-')
    cfg = os.path.join(tmp, 'conf.yaml')
    with open(cfg, 'w') as f:
        f.write('lock_file: {0}/hp.lock\ndiagnostics_dir: {0}/diag\nreceiver:\n  unwinding: {1}\n'.format(tmp, unwinding))
    proc = subprocess.Popen([HOST_PROFILER, 'run', '--config', cfg, '--frequency', '20', '--interval', '10',
                             '--duration', '100000', '--output', os.path.join(tmp, 'out')],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, 'err'), 'w'),
                            start_new_session=True)
    try:
        time.sleep(15)
        c0 = w.tree_cpu_seconds(proc.pid)
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < window:
            if rate > 0:
                subprocess.run(['/bin/true'])
                n += 1
                time.sleep(max(0.0, t0 + n / rate - time.monotonic()))
            else:
                time.sleep(0.5)
        c1 = w.tree_cpu_seconds(proc.pid)
        return {'rate': rate, 'execs': n, 'cpu_s': round(c1 - c0, 3), 'window_s': round(time.monotonic() - t0, 1)}
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rates', default='0,50,200')
    ap.add_argument('--window', type=float, default=30.0)
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--unwinding', default='auto')
    ap.add_argument('--json')
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(',')]
    rows = []
    for rnd in range(args.rounds):
        for rate in rates:
            row = one(rate, args.window, args.unwinding)
            row['round'] = rnd
            rows.append(row)
            print(json.dumps(row), flush=True)
    print('\nrate/s  execs  CPU s per window (rounds)  extra ms per exec (median)')
    base = w.median([r['cpu_s'] for r in rows if r['rate'] == 0]) if 0 in rates else 0.0
    for rate in rates:
        rs = [r for r in rows if r['rate'] == rate]
        extra = [(r['cpu_s'] - base) / r['execs'] * 1e3 for r in rs if r['execs']]
        print('%6g  %5d  %-26s  %s' % (rate, rs[0]['execs'], ' '.join('%.2f' % r['cpu_s'] for r in rs),
                                        '%.3f' % w.median(extra) if extra else '-'))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'machine': w.machine(), 'rows': rows}, f, indent=1)


if __name__ == '__main__':
    main()
