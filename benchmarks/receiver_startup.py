# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Start-up of the receiver: time to first sample, and the BCC compile cost.

Usage (as root): python benchmarks/receiver_startup.py [--runs N] [--frequency HZ] [--off-cpu P]

For each run: Receiver.start() (host lock + BCC compile + load + attach + thread), then wait
until a drain returns the first sample (a busy child keeps a CPU active). Prints one line per
run and a summary (median, max) as JSON on the last line.

Goal (exit status 1 when missed, or when no sample came within 30 s): at most 1.6 s of CPU of this
process (user + system, every thread) from Receiver.start() to the first sample, the budget issue #15
gives a whole cold start (benchmarks/startup.py measures that one, imports included). The wall-clock
figures are printed, not asserted: on a shared host they follow the other tenants' load.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from datadog_checks.host_profiler.receiver.receiver import Receiver, ReceiverConfig  # noqa: E402

GOAL_CPU_S = 1.6  # CPU from Receiver.start() to the first sample (issue #15's start-up budget)


def one_run(freq, off_cpu, lock_path):
    busy = None
    try:
        cfg = ReceiverConfig(
            samples_per_second=freq,
            off_cpu_threshold=off_cpu,
            drain_interval=0.01,
            check_interval=0,
            lock_path=lock_path,
        )
        rx = Receiver(cfg)
        t0, c0 = time.monotonic(), time.process_time()
        rx.start()
        started = time.monotonic() - t0
        # keep a CPU busy so a sample comes at once (started after the compile, which it would slow)
        busy = subprocess.Popen([sys.executable, '-c', 'while True: pass'])
        first = first_cpu = None
        while time.monotonic() - t0 < 30:
            if any(s.count for s in rx.collect().samples):
                first = time.monotonic() - t0
                first_cpu = time.process_time() - c0
                break
            time.sleep(0.005)
        rx.stop()
        rx.join(10)
        return {
            'compile_s': round(rx.compile_seconds, 3),
            'compile_cpu_s': round(rx.compile_cpu_seconds, 3),
            'start_s': round(started, 3),
            'first_sample_s': round(first, 3) if first is not None else None,
            'first_sample_cpu_s': round(first_cpu, 3) if first_cpu is not None else None,
        }
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--runs', type=int, default=5)
    ap.add_argument('--frequency', type=int, default=20)
    ap.add_argument('--off-cpu', type=float, default=0.0)
    args = ap.parse_args()
    lock = os.path.join(tempfile.mkdtemp(), 'bench.lock')
    runs = []
    for i in range(args.runs):
        r = one_run(args.frequency, args.off_cpu, lock)
        runs.append(r)
        print('run {}: BCC compile {:.3f} s ({:.3f} s CPU), start() {:.3f} s, first sample {} s ({} s CPU)'.format(
            i + 1, r['compile_s'], r['compile_cpu_s'], r['start_s'], r['first_sample_s'], r['first_sample_cpu_s']))
    firsts = [r['first_sample_s'] for r in runs if r['first_sample_s'] is not None]
    cpus = [r['first_sample_cpu_s'] for r in runs if r['first_sample_cpu_s'] is not None]
    summary = {
        'runs': len(runs),
        'frequency': args.frequency,
        'off_cpu_threshold': args.off_cpu,
        'cpus': os.cpu_count(),
        'kernel': os.uname().release,
        'compile_s_median': statistics.median(r['compile_s'] for r in runs),
        'compile_s_max': max(r['compile_s'] for r in runs),
        'first_sample_s_median': statistics.median(firsts) if firsts else None,
        'first_sample_s_max': max(firsts) if firsts else None,
        'compile_cpu_s_median': statistics.median(r['compile_cpu_s'] for r in runs),
        'first_sample_cpu_s_median': statistics.median(cpus) if cpus else None,
        'first_sample_cpu_s_max': max(cpus) if cpus else None,
        'goal_first_sample_cpu_s': GOAL_CPU_S,
    }
    ok = len(cpus) == len(runs) and summary['first_sample_cpu_s_max'] <= GOAL_CPU_S
    if len(cpus) < len(runs):
        print('FAIL: {} of {} runs returned no sample within 30 s'.format(len(runs) - len(cpus), len(runs)))
    else:
        print('{} first sample <= {} s of CPU (max): {:.2f} s'.format(
            'PASS' if ok else 'FAIL', GOAL_CPU_S, summary['first_sample_cpu_s_max']))
    print(json.dumps(summary))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
