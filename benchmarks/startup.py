# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Start-up: time to first sample and the BCC compile cost (goals: cold start to the first sample
<= 1.6 s of CPU, issue #15, the exit status; first sample <= 3 s of wall clock, printed only).

    python benchmarks/startup.py [--runs 5] [--frequency 20] [--quick] [--baseline DIR] [--first-start-of-boot]

Two views, each repeated --runs times (medians and maxima):
  receiver  benchmarks/receiver_startup.py (the receiver engineer's script): Receiver.start()
            (host lock + BCC compile + load + attach + thread) until a drain returns a sample,
            in a warm interpreter.
  cold      a fresh `python` process, as the Agent starting the check or `host-profiler run`:
            t=0 at interpreter start; imports (bcc, the package), the check's first run
            (converter, config models, pipeline; BCC compile inside), then polling the
            receiver until the first sample arrives. Breaks down into import / init /
            compile / first sample.
Compared with `profile-bpfcc`, which compiles its own BPF program at start: time from spawn
until it has attached (its "Sampling ..." banner).
CPU figures (user + system of every thread of the process) beside the wall-clock ones: on a shared
host the wall clock follows the other tenants' load, the CPU does not (much).
A busy process keeps a CPU active so that a sample is due at once.
--baseline DIR: cold runs of another checkout (e.g. `git archive main | tar -x -C DIR`), interleaved
with this one's, and both medians (before/after on the same host load).
--first-start-of-boot: delete the per-boot kernel-symbols cache (/run/host_profiler/kallsyms.bin)
before every cold run, as at the first start after a reboot.
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

COLD = r'''
import time
T0 = time.monotonic()
C0 = time.process_time()  # CPU of this process (every thread) since it started: ~0 here
import json, os, sys
sys.path.insert(0, {repo!r})
import bcc  # noqa
from datadog_checks.host_profiler import HostProfilerCheck
t_import = time.monotonic() - T0
tmp = {tmp!r}
inst = {{'mode': 'standalone', 'min_collection_interval': 10, 'lock_file': tmp + '/l', 'diagnostics_dir': tmp + '/d',
        'receiver': {{'samples_per_second': {freq}, 'symbol_uploader': {{'enabled': False}}}},
        'exporters': {{'file': {{'directory': tmp + '/out', 'formats': ['otlp']}}}}}}
check = HostProfilerCheck('host_profiler', {{}}, [inst])
check.run()
t_run = time.monotonic() - T0
rx = check.pipeline.receiver
first = first_cpu = None
while time.monotonic() - T0 < 30:
    if any(s.count for s in rx.collect().samples):
        first = time.monotonic() - T0
        first_cpu = time.process_time()
        break
    time.sleep(0.01)
out = {{'import_s': t_import, 'first_run_s': t_run, 'compile_s': rx.compile_seconds,
       'receiver_start_s': rx.startup_seconds, 'first_sample_s': first,
       'compile_cpu_s': getattr(rx, 'compile_cpu_seconds', None), 'first_sample_cpu_s': first_cpu if first else None}}
check.cancel(); rx.join(10)
print(json.dumps(out))
'''


KALLSYMS_CACHE = '/run/host_profiler/kallsyms.bin'


def cold_run(freq, repo=None, first_start_of_boot=False):
    if first_start_of_boot:
        try:
            os.unlink(KALLSYMS_CACHE)
        except OSError:
            pass
    tmp = tempfile.mkdtemp(prefix='hp-start-')
    code = COLD.format(repo=repo or os.path.dirname(HERE), tmp=tmp, freq=freq)
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    wall = time.monotonic() - t0
    line = [x for x in p.stdout.splitlines() if x.startswith('{')]
    if not line:
        raise RuntimeError(p.stderr[-2000:])
    r = json.loads(line[-1])
    r['process_wall_s'] = wall
    return r


def _cpu_of(pid):
    """utime + stime of a process (all its threads) in seconds, from /proc/PID/stat."""
    try:
        with open('/proc/{}/stat'.format(pid)) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    except (OSError, IndexError, ValueError):
        return None


def bcc_profile_run(freq):
    """Seconds from spawning profile-bpfcc until its perf_event BPF program is loaded
    (polling `bpftool prog show`; attach follows within milliseconds)."""
    before = set(w.bpf_prog_ids())
    t0 = time.monotonic()
    # SIGINT stops it; restore the default in case this runs as a shell's background job
    # (which inherits SIGINT ignored, and Python keeps an inherited SIG_IGN)
    p = subprocess.Popen(['profile-bpfcc', '-F', str(freq), '-f'], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        while time.monotonic() - t0 < 30:
            out = subprocess.run(['bpftool', 'prog', 'show', '--json'], capture_output=True, text=True).stdout
            if any(pr.get('type') == 'perf_event' and pr['id'] not in before for pr in json.loads(out or '[]')):
                return time.monotonic() - t0, _cpu_of(p.pid)
            time.sleep(0.02)
        return None, None
    finally:
        p.send_signal(2)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--runs', type=int, default=5)
    ap.add_argument('--frequency', type=int, default=20)
    ap.add_argument('--quick', action='store_true', help='2 runs')
    ap.add_argument('--baseline', metavar='DIR', help='another checkout, cold runs interleaved with this one')
    ap.add_argument('--first-start-of-boot', action='store_true',
                    help='delete the per-boot kernel-symbols cache before every cold run')
    args = ap.parse_args()
    if args.quick:
        args.runs = 2
    busy = subprocess.Popen([sys.executable, '-c', 'while True: pass'])
    try:
        rx = subprocess.run([sys.executable, os.path.join(HERE, 'receiver_startup.py'), '--runs', str(args.runs),
                             '--frequency', str(args.frequency)], capture_output=True, text=True)
        lines = [x for x in rx.stdout.splitlines() if x.startswith('{')]
        receiver = json.loads(lines[-1]) if lines else {'error': rx.stderr[-1000:]}
        cold, bcc, base = [], [], []
        for _ in range(args.runs):
            if args.baseline:
                base.append(cold_run(args.frequency, args.baseline, args.first_start_of_boot))
            cold.append(cold_run(args.frequency, first_start_of_boot=args.first_start_of_boot))
            bcc.append(bcc_profile_run(args.frequency))
    finally:
        busy.kill()
        busy.wait()
    med = lambda k: round(w.median([r[k] for r in cold if r[k] is not None] or [float('nan')]), 3)  # noqa: E731
    mx = lambda k: round(max(r[k] for r in cold if r[k] is not None), 3)  # noqa: E731
    summary = {
        'frequency': args.frequency, 'runs': args.runs,
        'receiver_compile_s_median': receiver.get('compile_s_median'),
        'receiver_first_sample_s_median': receiver.get('first_sample_s_median'),
        'receiver_first_sample_s_max': receiver.get('first_sample_s_max'),
        'receiver_first_sample_cpu_s_median': receiver.get('first_sample_cpu_s_median'),
        'cold_import_s_median': med('import_s'),
        'cold_compile_s_median': med('compile_s'),
        'cold_receiver_start_s_median': med('receiver_start_s'),
        'cold_first_run_s_median': med('first_run_s'),
        'cold_first_sample_s_median': med('first_sample_s'),
        'cold_first_sample_s_max': mx('first_sample_s'),
        'bcc_profile_attach_s_median': round(w.median([b[0] for b in bcc if b[0] is not None]), 3),
        # CPU (user + system, every thread): what the host pays, whatever the load of the machine
        'cold_compile_cpu_s_median': med('compile_cpu_s'),
        'cold_first_sample_cpu_s_median': med('first_sample_cpu_s'),
        'cold_first_sample_cpu_s_max': mx('first_sample_cpu_s'),
        'bcc_profile_attach_cpu_s_median': round(w.median([b[1] for b in bcc if b[1] is not None]), 3),
    }
    print('| Measure | Median | Max |')
    print('|---|---|---|')
    print('| BCC compile (receiver, warm interpreter) | {:.2f} s | |'.format(summary['receiver_compile_s_median']))
    print('| First sample (receiver, warm interpreter) | {:.2f} s | {:.2f} s |'.format(
        summary['receiver_first_sample_s_median'], summary['receiver_first_sample_s_max']))
    print('| Cold: imports (bcc + package) | {:.2f} s | |'.format(summary['cold_import_s_median']))
    print('| Cold: BCC compile | {:.2f} s | |'.format(summary['cold_compile_s_median']))
    print('| Cold: receiver start (lock+compile+load+attach) | {:.2f} s | |'.format(
        summary['cold_receiver_start_s_median']))
    print('| Cold: first check run returns | {:.2f} s | |'.format(summary['cold_first_run_s_median']))
    print('| Cold: first sample (from interpreter start) | {:.2f} s | {:.2f} s |'.format(
        summary['cold_first_sample_s_median'], summary['cold_first_sample_s_max']))
    print('| profile-bpfcc: spawn to BPF program loaded | {:.2f} s | |'.format(summary['bcc_profile_attach_s_median']))
    print('| Cold: BCC compile, CPU | {:.2f} s | |'.format(summary['cold_compile_cpu_s_median']))
    print('| Cold: first sample, CPU (from interpreter start) | {:.2f} s | {:.2f} s |'.format(
        summary['cold_first_sample_cpu_s_median'], summary['cold_first_sample_cpu_s_max']))
    print('| profile-bpfcc: spawn to BPF program loaded, CPU | {:.2f} s | |'.format(
        summary['bcc_profile_attach_cpu_s_median']))
    cpu_ok = summary['cold_first_sample_cpu_s_max'] <= 1.6
    print('{} first sample <= 1.6 s of CPU (cold, max): {:.2f} s'.format(
        'PASS' if cpu_ok else 'FAIL', summary['cold_first_sample_cpu_s_max']))
    # the exit status follows the CPU goal (and every run returning a sample): the wall clock on a
    # shared host follows the other tenants' load, so the 3 s goal is printed, not asserted
    missing = sum(1 for r in cold if r['first_sample_s'] is None)
    ok = cpu_ok and not missing
    if missing:
        print('FAIL {} of {} cold runs returned no sample within 30 s'.format(missing, len(cold)))
    print('{} first sample <= 3 s (cold, max, not asserted): {:.2f} s'.format(
        'PASS' if summary['cold_first_sample_s_max'] <= 3.0 else 'MISS', summary['cold_first_sample_s_max']))
    if base:
        bmed = lambda k: w.median([r[k] for r in base if r[k] is not None] or [float('nan')])  # noqa: E731
        print('| Cold, interleaved runs | baseline ({}) | this checkout |'.format(args.baseline))
        print('|---|---|---|')
        for key, label in (('first_sample_cpu_s', 'first sample, CPU'), ('compile_cpu_s', 'BCC compile, CPU'),
                           ('import_s', 'imports'), ('first_sample_s', 'first sample')):
            print('| {} (median) | {:.2f} s | {:.2f} s |'.format(label, bmed(key), med(key)))
        summary['baseline'] = args.baseline
        summary['baseline_first_sample_cpu_s_median'] = round(bmed('first_sample_cpu_s'), 3)
        summary['baseline_runs'] = base
    summary['ok'] = ok
    summary['cold_runs'] = cold
    summary['machine'] = w.machine()
    print(json.dumps(summary))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
