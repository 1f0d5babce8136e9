# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Whole-host cost of Python frames: both cores busy running Python, `host-profiler run` at 20 Hz.

    .venv/bin/python benchmarks/python_host_overhead.py [--rounds 3] [--window 60] [--warmup 20]
                                                       [--frequency 20] [--json FILE]
                                                       [--baseline DIR] [--together | --workload-only]

One hot-loop Python process per core (tests/workloads/pysplit.py, recursion 20 deep: 26 Python
frames per stack), pyenv's 3.12 (shared libpython) and Debian's python3.11 (static), run for the
whole benchmark. Each round runs the standalone command twice, in a shuffled order, with the
default configuration (`unwinding: auto`) and:

  python       `receiver.interpreters: [python]` (the default): Python frames walked and named
  native_only  `receiver.interpreters: []`

After --warmup s (start-up, BCC compile and the first reads of code objects are not counted), over
--window s:
  - own CPU: CPU time of the host-profiler process's threads (schedstat, ns), as % of one core
    (`own_cpu_ticks_pct_core`: utime+stime, 10 ms ticks, dead threads included);
  - BPF: run time of its BPF programs (kernel run_time_ns, BPF stats on for the benchmark), % of
    one core; it runs in the sampled tasks' context, so it is in no process's CPU;
  - in-kernel time per sample: run_time_ns / run_cnt of `on_cpu_sample`.
  - from the program's `stats` map (read with bpftool): samples kept, the walk's own clock per walk
    (`_py_walk_ns` / `_py_walks`, bpf_ktime_get_ns around the walk).
Compare python with native_only within a round (the host is shared).

--baseline DIR adds a configuration per round, `python_base`: the python configuration run from
another checkout (e.g. `git archive <commit> | tar -x -C DIR`), for before/after figures taken
over the same rounds.

--together runs the configurations of a round at once (whole host, no shuffle needed): their perf
events sample the same tasks over the same window and load, so python - native_only and python -
python_base are differences within one window, not across windows minutes apart. The BPF run time per
sample then also counts what the other profilers' programs leave in the caches (nothing of their own
maps is shared).

With --workload-only, `us_per_kept_sample` of a configuration is native_only's run time per kept
sample plus the difference of its run time and native_only's (scaled to as many runs) per kept
sample: the dropped runs cost the same in both and cancel.

--workload-only profiles only the two Python workers (`receiver.pids`): on a host shared with other
sessions, whole-host figures follow what they run (their short processes, their deep pytest
stacks, walked too). The per-sample time of `on_cpu_sample` then counts the runs for other tasks,
which the pid filter drops at once (and idle ones); a third configuration per round, `filtered` (`receiver.pids`:
a pid that never runs: every run is a dropped one), gives that cost, and
`us_per_kept_sample` = (run time - (runs - samples kept) x a dropped run's cost) / samples kept.
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
from overhead import bpf_prog_ids, stop_profiler  # noqa: E402

from datadog_checks.host_profiler.runtime.bpf_stats import enable_stats_fd, prog_info_by_id  # noqa: E402

HOST_PROFILER = os.path.join(os.path.dirname(sys.executable), 'host-profiler')
PYSPLIT = os.path.join(os.path.dirname(HERE), 'tests', 'workloads', 'pysplit.py')
PYTHONS = (os.path.expanduser('~/.pyenv/versions/3.12.1/bin/python3.12'), '/usr/bin/python3.11')


def start(name: str, hz: int, tmp: str, pids=None, repo: str = '') -> subprocess.Popen:
    import signal

    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    cfg = os.path.join(d, 'conf.yaml')
    with open(cfg, 'w') as f:
        f.write('lock_file: {}\ndiagnostics_dir: {}\nreceiver:\n  interpreters: {}\n'.format(
            os.path.join(d, 'hp.lock'), os.path.join(d, 'diag'), '[python]' if name in ('python', 'python_base') else '[]'))
        if pids:
            f.write('  pids: [{}]\n'.format(', '.join(str(p) for p in pids)))
    cmd = [HOST_PROFILER, 'run', '--config', cfg, '--frequency', str(hz), '--interval', '10',
           '--duration', '100000', '--output', os.path.join(d, 'out')]
    # this checkout's code first (the venv's entry point may be an editable install of another one)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [repo or os.path.dirname(HERE),
                                                                    os.environ.get('PYTHONPATH')])))
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, 'err'), 'w'), env=env,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _progs(pid: int) -> dict:
    out = {}
    for i in bpf_prog_ids(pid):
        try:
            out[i] = prog_info_by_id(i)
        except OSError:
            pass
    return out


def _cpu_ns(pid: int) -> int:
    """CPU time of the process's live threads in ns (/proc/PID/task/*/schedstat): the 10 ms ticks
    of /proc/PID/stat are 0.03% of a core over a 30 s window, the size of what is measured."""
    total = 0
    for t in os.listdir('/proc/{}/task'.format(pid)):
        try:
            with open('/proc/{}/task/{}/schedstat'.format(pid, t)) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # the thread ended
    return total


def _cpu_s(pid: int) -> float:
    with open('/proc/{}/stat'.format(pid)) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')  # utime + stime


def _stats(prog_ids) -> dict:
    """The program's `stats` counters (summed over CPUs) by name, from bpftool; {} if unreadable."""
    from datadog_checks.host_profiler.receiver.program import STATS

    for pid in prog_ids:
        try:
            info = json.loads(subprocess.check_output(['bpftool', '-j', 'prog', 'show', 'id', str(pid)]))
            for mid in info.get('map_ids', ()):
                m = json.loads(subprocess.check_output(['bpftool', '-j', 'map', 'show', 'id', str(mid)]))
                if m.get('name') != 'stats':
                    continue
                out = [0] * len(STATS)
                for e in json.loads(subprocess.check_output(['bpftool', '-j', 'map', 'dump', 'id', str(mid)])):
                    key = e.get('key')
                    idx = int.from_bytes(bytes(int(b, 16) for b in key), 'little') if isinstance(key, list) else int(key)
                    if idx >= len(STATS):
                        continue
                    for v in e.get('values', ()):
                        val = v.get('value')
                        out[idx] += int.from_bytes(bytes(int(b, 16) for b in val), 'little') if isinstance(val, list) else int(val)
                return dict(zip(STATS, out))
        except (subprocess.CalledProcessError, OSError, ValueError):
            continue
    return {}


def _snapshot(proc) -> tuple:
    progs = _progs(proc.pid)
    return (progs, _cpu_s(proc.pid), _cpu_ns(proc.pid), time.monotonic(),
            _stats([i for i in progs if progs[i]['name'] == 'on_cpu_sample']))


def _row(name: str, load0: float, snap_a: tuple, snap_b: tuple) -> dict:
    (a, c0, n0, t0, sa), (b, c1, n1, t1, sb) = snap_a, snap_b
    wall = t1 - t0
    bpf_ns = sum((b[i]['run_time_ns'] or 0) - (a[i]['run_time_ns'] or 0) for i in b if i in a)
    sample = [(b[i]['run_time_ns'] - a[i]['run_time_ns'], b[i]['run_cnt'] - a[i]['run_cnt'])
              for i in b if i in a and b[i]['name'] == 'on_cpu_sample']
    ns, cnt = (sum(x) for x in zip(*sample)) if sample else (0, 0)
    st = {k: sb.get(k, 0) - sa.get(k, 0) for k in sb}
    walks = st.get('_py_walks', 0)
    return {'config': name, 'load1': round(load0, 2),
            'own_cpu_pct_core': round(100.0 * (n1 - n0) / 1e9 / wall, 3),
            'own_cpu_ticks_pct_core': round(100.0 * (c1 - c0) / wall, 3),
            'bpf_pct_core': round(100.0 * bpf_ns / 1e9 / wall, 4),
            'runs': cnt, 'us_per_sample': round(ns / max(1, cnt) / 1000.0, 2), 'run_ns': ns,
            'kept': st.get('_samples', 0), 'dropped': st.get('_pid_filtered', 0), 'walks': walks,
            'walk_us_per_walk': round(st.get('_py_walk_ns', 0) / walks / 1000.0, 2) if walks else None,
            'frames_per_walk': round(st.get('_py_frames', 0) / walks, 1) if walks else None}


def measure(name: str, args, tmp: str, pids=None) -> dict:
    proc = start(name if name != 'filtered' else 'native_only', args.frequency, tmp, pids,
                 args.baseline if name == 'python_base' else '')
    try:
        time.sleep(args.warmup)
        if proc.poll() is not None:
            raise SystemExit('{} exited: see {}'.format(name, os.path.join(tmp, name, 'err')))
        load0 = os.getloadavg()[0]
        snap_a = _snapshot(proc)
        time.sleep(args.window)
        snap_b = _snapshot(proc)
    finally:
        stop_profiler(proc)
    return _row(name, load0, snap_a, snap_b)


def measure_together(names, args, tmp: str, pids=None) -> list:
    """All configurations at once over the same window: each one's perf events sample the same
    tasks under the same load, so python - native_only is a difference within one window."""
    procs = {}
    try:
        for name in names:
            procs[name] = start(name if name != 'filtered' else 'native_only', args.frequency, tmp, pids,
                                args.baseline if name == 'python_base' else '')
        time.sleep(args.warmup)
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise SystemExit('{} exited: see {}'.format(name, os.path.join(tmp, name, 'err')))
        load0 = os.getloadavg()[0]
        snaps_a = {name: _snapshot(proc) for name, proc in procs.items()}
        time.sleep(args.window)
        snaps_b = {name: _snapshot(proc) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            stop_profiler(proc)
    return [_row(name, load0, snaps_a[name], snaps_b[name]) for name in names]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--window', type=float, default=60.0)
    ap.add_argument('--warmup', type=float, default=20.0)
    ap.add_argument('--frequency', type=int, default=20)
    ap.add_argument('--json')
    ap.add_argument('--baseline', help='another checkout: its python configuration too (python_base)')
    ap.add_argument('--workload-only', action='store_true', help='profile only the Python workers (receiver.pids)')
    ap.add_argument('--together', action='store_true',
                    help='run the configurations of a round at once, over the same window')
    args = ap.parse_args()
    pythons = [p for p in PYTHONS if os.path.exists(p)]
    total = args.rounds * 2 * (args.window + args.warmup + 10) + 60
    if args.workload_only:
        total += args.rounds * (args.window + args.warmup + 10)
    if args.baseline:
        total += args.rounds * (args.window + args.warmup + 10)
    workers = [subprocess.Popen([p, PYSPLIT, str(total), '20'], stdout=subprocess.DEVNULL) for p in pythons]
    idle = subprocess.Popen(['sleep', str(int(total))])
    stats_fd = enable_stats_fd()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            pids = [p.pid for p in workers] if args.workload_only else None
            for r in range(args.rounds):
                order = ['python', 'native_only'] + (['python_base'] if args.baseline else [])
                random.shuffle(order)
                if pids and not args.together:
                    order.append('filtered')
                if args.together:
                    for row in measure_together(order, args, tmp, pids):
                        row['round'] = r
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                for name in order if not args.together else ():
                    # filtered: a pid that never runs (a sleeping child of ours), every run dropped
                    row = measure(name, args, tmp, [idle.pid] if name == 'filtered' else pids)
                    row['round'] = r
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                if pids and args.together:
                    # the same runs for all (the same perf period, the same tasks): the dropped runs'
                    # cost cancels in a difference; native_only's run time scaled to as many runs
                    mine = rows[-len(order):]
                    nat = [x for x in mine if x['config'] == 'native_only'][0]
                    for row in mine:
                        row['us_per_kept_sample'] = round(
                            (row['run_ns'] - nat['run_ns'] * row['runs'] / max(1, nat['runs'])) / max(1, row['kept']) / 1000.0
                            + nat['run_ns'] / max(1, nat['kept']) / 1000.0, 2)
                elif pids:  # in-kernel time per kept sample: the dropped runs' cost taken out
                    drop_ns = rows[-1]['run_ns'] / max(1, rows[-1]['runs'])
                    for row in rows[-len(order):-1]:
                        row['dropped_run_us'] = round(drop_ns / 1000.0, 3)
                        row['us_per_kept_sample'] = round(
                            (row['run_ns'] - (row['runs'] - row['kept']) * drop_ns) / max(1, row['kept']) / 1000.0, 2)
    finally:
        os.close(stats_fd)
        for p in workers + [idle]:
            p.kill()
            p.wait()
    summary = {}
    for name in ('python', 'native_only') + (('python_base',) if args.baseline else ()):
        mine = [x for x in rows if x['config'] == name]
        keys = ['own_cpu_pct_core', 'bpf_pct_core', 'us_per_sample', 'load1']
        keys += ['us_per_kept_sample'] if args.workload_only else []
        summary[name] = {k: statistics.median(x[k] for x in mine) for k in keys}
        summary[name]['total_pct_core'] = round(summary[name]['own_cpu_pct_core'] + summary[name]['bpf_pct_core'], 3)
    py = [x for x in rows if x['config'] == 'python']
    nat = [x for x in rows if x['config'] == 'native_only']
    per = 'us_per_kept_sample' if args.workload_only else 'us_per_sample'
    summary['us_per_sample_more'] = [round(p[per] - n[per], 2) for p, n in zip(py, nat)]
    summary['walk_us_per_walk'] = [p['walk_us_per_walk'] for p in py]
    if args.baseline:
        base = [x for x in rows if x['config'] == 'python_base']
        summary['base_us_per_sample_more'] = [round(b[per] - n[per], 2) for b, n in zip(base, nat)]
        summary['base_walk_us_per_walk'] = [b['walk_us_per_walk'] for b in base]
    if args.baseline:
        base = [x for x in rows if x['config'] == 'python_base']
        summary['own_cpu_python_over_base'] = [round(p['own_cpu_pct_core'] / max(1e-9, b['own_cpu_pct_core']), 3)
                                               for p, b in zip(py, base)]
    out = {'pythons': pythons, 'workload_only': args.workload_only, 'frequency': args.frequency, 'window_s': args.window, 'ncpu': os.cpu_count(), 'rows': rows, 'summary': summary}
    print(json.dumps(out['summary'], indent=1))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=1)


if __name__ == '__main__':
    main()
