# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The cost of span links (OTel thread contexts, OTEP 4947): `host-profiler run` at 99 Hz with a real
dd-trace-py app whose threads run spans back to back, with `receiver.span_links` on and off.

    python benchmarks/span_links_overhead.py [--rounds 3] [--window 40] [--warmup 20] [--frequency 99]
                                             [--threads 2] [--sequential] [--json FILE] [--cpus 0]
                                             [--ready N] [--aa | --with-aa] [--baseline DIR] [--fixed-window]

--with-aa adds a second links profiler to every round (links / links_b: the noise floor, same run);
--baseline DIR adds base_links and base_no_links run from another checkout (e.g. `git archive <commit>`
unpacked in DIR): before and after over the same windows. Every row also gives each profiler thread's
share (threads_pct_core, names from `py-spy dump`), to see where a difference goes.

The app (the tests' DDTRACE_APP: each thread opens a span, burns CPU in it for 40 ms, then 20 ms
outside) runs for the whole benchmark, one thread per core. Each round runs the standalone command
(this checkout, default configuration but `span_links`) twice, started in a shuffled order, both at
the same time over the same window (paired: on a shared host the load changes from one window to
the next far more than by 10%; --sequential runs them one after the other, as sessions before 8 did):

  links      `receiver.span_links: true` (the default): the BPF program copies the sampled thread's
             record; samples are linked to their span (every span a distinct OTLP sample)
  no_links   `receiver.span_links: false`

After --warmup s and once each has written its --ready-th profile (start-up, the BCC compile and the
first symbolization of the app's stacks not counted: under load the compile alone can take 20 s, and
a first export inside the window was worth 30% of it), over --window s (export-aligned: each
profiler from just after one of its exports to just after the one --window/10 later, rounded to a
multiple of 6 exports (one diagnostics write a minute), so that both windows hold the same number of
exports and of diagnostics writes; --fixed-window: one window for both):
  - own CPU: utime+stime of the host-profiler process, as % of one core (10 ms ticks);
  - own CPU (ns): the summed run time of its threads (/proc/PID/task/*/schedstat, nanoseconds), the
    figure the ratios are computed from (the ticks alone move a 40 s window at 0.8% by ±3%);
  - BPF: run time of its BPF programs (kernel run_time_ns, BPF stats on for the benchmark), % of one core;
  - in-kernel time per sample: run_time_ns / run_cnt of `on_cpu_sample`.
The ratio links / no_links of own CPU is computed within each round (the host is shared). By
default only the traced app is profiled (`receiver.pids`), so that what the rest of a shared host
runs does not swamp the difference; --whole-host profiles everything.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
from overhead import bpf_prog_ids, stop_profiler  # noqa: E402

from datadog_checks.host_profiler.runtime.bpf_stats import enable_stats_fd, prog_info_by_id  # noqa: E402
from tests.runtimes.test_otel_thread_tls import DDTRACE_APP, ddtrace_env  # noqa: E402


def start(name: str, hz: int, tmp: str, pids=(), cpus=None) -> subprocess.Popen:
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    cfg = os.path.join(d, 'conf.yaml')
    with open(cfg, 'w') as f:
        f.write('lock_file: {}\ndiagnostics_dir: {}\nreceiver:\n  span_links: {}\n  pids: [{}]\n'.format(
            os.path.join(d, 'hp.lock'), os.path.join(d, 'diag'),
            'true' if name.startswith(LINKS) or name.startswith(BASE + LINKS) else 'false',
            ', '.join(str(p) for p in pids)))
    # base_*: the --baseline checkout's code (before/after in the same run)
    env = dict(os.environ, PYTHONPATH=BASELINE_ROOT if name.startswith(BASE) else ROOT)
    cmd = [sys.executable, '-m', 'datadog_checks.host_profiler', 'run', '--config', cfg, '--frequency', str(hz),
           '--interval', str(INTERVAL_S), '--duration', '100000', '--output', os.path.join(d, 'out')]

    def child():
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if cpus:
            os.sched_setaffinity(0, cpus)

    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, 'err'), 'w'), env=env,
                            start_new_session=True, preexec_fn=child)


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
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


LINKS = 'links'
OTHER = 'no_links'  # 'links_b' with --aa
AA = 'links_b'
BASE = 'base_'  # prefix of the configurations run from --baseline
BASELINE_ROOT = ''
READY_PROFILES = 2  # profiles written before the window starts (--ready)
INTERVAL_S = 10  # the profilers' --interval (one export each)
DIAG_EVERY = 6  # check runs between two diagnostics writes (runtime/diagnostics.py: >= 60 s apart)
EXPORT_SETTLE_S = 0.5  # after a profile file appears: the rest of that run (its CPU counted in the window it ends)


def _profiles(tmp: str, name: str) -> int:
    try:
        return len(os.listdir(os.path.join(tmp, name, 'out', 'profiles')))
    except OSError:
        return 0


def _run_ns(pid: int) -> dict:
    """tid -> run time in ns of every thread of the process."""
    out = {}
    for tid in os.listdir('/proc/{}/task'.format(pid)):
        try:
            with open('/proc/{}/task/{}/schedstat'.format(pid, tid)) as f:
                out[tid] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def _thread_names(pid: int) -> dict:
    """tid -> Python thread name (py-spy dump: Python 3.11 does not name the OS threads), {} without py-spy."""
    spy = os.path.join(os.path.dirname(sys.executable), 'py-spy')
    try:
        out = subprocess.run([spy, 'dump', '--pid', str(pid)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    names = {}
    for line in out.splitlines():
        # Thread 9656 (idle): "host_profiler-events"
        if line.startswith('Thread ') and '"' in line:
            names[line.split()[1]] = line.split('"')[1].replace('host_profiler-', '')
    return names


def _snapshot(proc, names=None) -> tuple:
    return _progs(proc.pid), _cpu_s(proc.pid), _run_ns(proc.pid), time.monotonic(), names or {}


def measure(name: str, args, tmp: str, pids=()) -> dict:
    return measure_many([name], args, tmp, pids)[0]


def measure_many(names, args, tmp: str, pids=()) -> list:
    """The configurations ``names`` at the same time (started in that order), over one window.

    Export-aligned (the default): each profiler's window runs from just after its --ready-th profile
    to just after the one --window/INTERVAL_S exports later, so that every window holds exactly as
    many exports (a fixed-length window holds one more or one less export depending on where the
    exports fall in it: +-11% of the main thread's CPU at 9 exports a window). The windows of the
    two overlap but for less than an interval. --fixed-window: one window of --window s for both."""
    procs = {}
    # a whole number of diagnostics writes too (at most once a minute, at a check run: every 6th run at
    # a 10 s interval; tens of ms each): a window of 9 exports held 1 or 2 of them
    exports = DIAG_EVERY * max(1, int(round(args.window / (INTERVAL_S * DIAG_EVERY))))
    try:
        for name in names:
            procs[name] = start(name, args.frequency, tmp, pids, args.cpus)
        time.sleep(args.warmup)
        deadline = time.monotonic() + 300

        def check_alive():
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise SystemExit('{} exited: see {}'.format(name, os.path.join(tmp, name, 'err')))

        while True:
            check_alive()
            if all(_profiles(tmp, name) >= args.ready for name in procs) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        names_of = {name: _thread_names(proc.pid) for name, proc in procs.items()}
        first, last, loads = {}, {}, []
        if args.fixed_window:
            time.sleep(1.0)  # off the export itself
            loads.append(os.getloadavg()[0])
            first = {name: _snapshot(proc, names_of[name]) for name, proc in procs.items()}
            time.sleep(args.window)
            last = {name: _snapshot(proc) for name, proc in procs.items()}
        else:
            # from just after the export of profile n to just after the export of profile n + exports
            seen = {name: _profiles(tmp, name) for name in procs}
            target = {}
            pending = {}  # name -> (snapshot due at, which end)
            end = time.monotonic() + (exports + 3) * INTERVAL_S + 60
            while len(last) < len(procs) and time.monotonic() < end:
                check_alive()
                now = time.monotonic()
                for name, proc in procs.items():
                    if name in last:
                        continue
                    n = _profiles(tmp, name)
                    if name not in first and name not in pending and n > seen[name]:
                        pending[name] = now + EXPORT_SETTLE_S
                        target[name] = n + exports
                    elif name in first and name not in pending and n >= target[name]:
                        pending[name] = now + EXPORT_SETTLE_S
                    due = pending.get(name)
                    if due is not None and now >= due:
                        del pending[name]
                        if name not in first:
                            first[name] = _snapshot(proc, names_of[name])
                            loads.append(os.getloadavg()[0])
                        else:
                            last[name] = _snapshot(proc)
                            loads.append(os.getloadavg()[0])
                time.sleep(0.05)
            if len(last) < len(procs):
                raise SystemExit('export-aligned window: a profiler stopped writing profiles')
        loads.append(os.getloadavg()[0])
    finally:
        for proc in procs.values():
            stop_profiler(proc)
    load = sum(loads) / len(loads)
    return [_row(name, first[name], last[name], load) for name in names]


def _row(name: str, first: tuple, last: tuple, load: float) -> dict:
    (a, c0, r0, t0, names), (b, c1, r1, t1, _) = first, last
    wall = t1 - t0
    # threads alive at both ends (the profiler's threads live as long as it does); a thread born
    # in the window counts from zero
    run_ns = sum(v - r0.get(tid, 0) for tid, v in r1.items())
    threads = {}  # thread name -> % of one core over the window (where the difference goes)
    for tid, v in r1.items():
        key = names.get(tid, 'other')
        threads[key] = threads.get(key, 0.0) + 100.0 * (v - r0.get(tid, 0)) / 1e9 / wall
    bpf_ns = sum((b[i]['run_time_ns'] or 0) - (a[i]['run_time_ns'] or 0) for i in b if i in a)
    sample = [(b[i]['run_time_ns'] - a[i]['run_time_ns'], b[i]['run_cnt'] - a[i]['run_cnt'])
              for i in b if i in a and b[i]['name'] == 'on_cpu_sample']
    ns, cnt = (sum(x) for x in zip(*sample)) if sample else (0, 0)
    return {'config': name, 'load1': round(load, 2), 'window_s': round(wall, 2),
            'own_cpu_pct_core': round(100.0 * (c1 - c0) / wall, 3),
            'own_cpu_ns_pct_core': round(100.0 * run_ns / 1e9 / wall, 4),
            'bpf_pct_core': round(100.0 * bpf_ns / 1e9 / wall, 4),
            'samples': cnt, 'us_per_sample': round(ns / max(1, cnt) / 1000.0, 2),
            'threads_pct_core': {k: round(v, 4) for k, v in sorted(threads.items(), key=lambda kv: -kv[1])}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--window', type=float, default=40.0)
    ap.add_argument('--warmup', type=float, default=20.0)
    ap.add_argument('--frequency', type=int, default=99)
    ap.add_argument('--threads', type=int, default=os.cpu_count() or 2)
    ap.add_argument('--whole-host', action='store_true',
                    help='profile every process (default: only the traced app, `receiver.pids`: the other '
                         'processes of a shared host make the comparison noise)')
    ap.add_argument('--sequential', action='store_true',
                    help='one configuration at a time (default: both at once over the same window)')
    ap.add_argument('--cpus', type=lambda v: {int(c) for c in v.split(',')},
                    help='pin the profilers to these CPUs (e.g. 0: both share one core and its caches)')
    ap.add_argument('--ready', type=int, default=READY_PROFILES,
                    help='profiles each must have written before the window starts (the symbolizer warms up '
                         'on the rarer stacks of the app, a few tens of ms at a time)')
    ap.add_argument('--fixed-window', action='store_true',
                    help='one window of --window s for both (sessions before 9); default: each profiler over '
                         'exactly --window/10 of its exports, from just after one to just after another')
    ap.add_argument('--aa', action='store_true',
                    help='calibration: links against links (the ratio is then noise alone)')
    ap.add_argument('--with-aa', action='store_true',
                    help='also run a second links profiler in every round: links / links_b is the noise floor '
                         'of the same run')
    ap.add_argument('--baseline', metavar='DIR',
                    help='also run base_links and base_no_links from the checkout DIR (another commit of this '
                         'repository) in every round: before and after in the same run')
    ap.add_argument('--json')
    args = ap.parse_args()
    global OTHER, BASELINE_ROOT
    OTHER = AA if args.aa else 'no_links'
    pairs = [(LINKS, OTHER)]
    if args.with_aa and not args.aa:
        pairs.append((LINKS, AA))
    if args.baseline:
        BASELINE_ROOT = os.path.abspath(args.baseline)
        pairs.append((BASE + LINKS, BASE + OTHER))
    configs = list(dict.fromkeys(n for pair in pairs for n in pair))
    total = int(args.rounds * (2 if args.sequential else 1) * (args.window + args.warmup + 60) + 120)
    tmp = tempfile.mkdtemp()
    app = os.path.join(tmp, 'app.py')
    with open(app, 'w') as f:
        f.write(DDTRACE_APP)
    worker = subprocess.Popen([sys.executable, app, str(args.threads), '40', '20', str(total)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ddtrace_env())
    stats_fd = enable_stats_fd()
    rows = []
    try:
        for r in range(args.rounds):
            order = list(configs)
            random.shuffle(order)
            pids = () if args.whole_host else (worker.pid,)
            got = ([measure(name, args, tmp, pids) for name in order] if args.sequential
                   else measure_many(order, args, tmp, pids))
            for row in got:
                row['round'] = r
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        os.close(stats_fd)
        worker.kill()
        worker.wait()
    summary = {}
    for name in configs:
        mine = [x for x in rows if x['config'] == name]
        summary[name] = {k: statistics.median(x[k] for x in mine)
                         for k in ('own_cpu_pct_core', 'own_cpu_ns_pct_core', 'bpf_pct_core', 'us_per_sample',
                                   'load1')}
    by_round = {}
    for x in rows:
        by_round.setdefault(x['round'], {})[x['config']] = x
    for a, b in pairs:
        tag = '' if (a, b) == (LINKS, OTHER) else '{}/{}:'.format(a, b)
        both = [v for v in by_round.values() if a in v and b in v]
        ratios = [round(v[a]['own_cpu_pct_core'] / max(1e-9, v[b]['own_cpu_pct_core']), 3) for v in both]
        summary[tag + 'own_cpu_ratio_per_round'] = ratios
        summary[tag + 'own_cpu_ratio_median'] = statistics.median(ratios) if ratios else None
        ns_ratios = [round(v[a]['own_cpu_ns_pct_core'] / max(1e-9, v[b]['own_cpu_ns_pct_core']), 3) for v in both]
        summary[tag + 'own_cpu_ns_ratio_per_round'] = ns_ratios
        summary[tag + 'own_cpu_ns_ratio_median'] = statistics.median(ns_ratios) if ns_ratios else None
        summary[tag + 'us_per_sample_more'] = [round(v[a]['us_per_sample'] - v[b]['us_per_sample'], 2) for v in both]
    summary['mode'] = 'sequential' if args.sequential else 'paired'
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'frequency': args.frequency, 'window_s': args.window, 'rows': rows, 'summary': summary,
                       'command': ' '.join(sys.argv)}, f, indent=1)


if __name__ == '__main__':
    main()
