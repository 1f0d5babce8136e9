# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The profiler's own CPU with three busy JVMs vs without them, in one run.

    python benchmarks/jvm_overhead.py [--rounds 3] [--window 60] [--warmup 15] [--hz 99] [--paired] [--json FILE]

Three configurations, run one after the other in a shuffled order every round (interleaved, so that
the machine's background noise hits all of them alike); each starts `host-profiler run` (default
config, local files), waits --warmup s (start-up and the BPF compile are not measured), then starts
its three workloads and measures the profiler over --window s:

  native     three fixed-work native loops (benchmarks/workloads/spin.c): the same CPU demand, no JVM
  jvm-off    three JVMs (benchmarks/workloads/JvmMix.java, no JVM flag) with receiver.jvm.perf_map: off
  jvm-auto   the same three JVMs with perf_map: auto (the default): each JVM is attached 5 s into the
             window and again while new compiled code shows up, and the symbolizer reads its map

The workloads start with the window, so every attach and map read falls inside it. Figures per
configuration (medians over rounds):
  - cpu_s_per_min: CPU seconds of the profiler (its whole process tree) per minute of window;
  - cpu_ms_per_1k_samples: the same per thousand samples it drained (summary.json of the run);
  - java_leaf_named: share of the JVMs' samples whose innermost user frame has a name (stacks.folded);
  - attaches / perf map bytes: from the profiler's diagnostics file.
Ratios jvm-auto/native and jvm-auto/jvm-off are computed per round and their median reported.

--paired: what the JVM support itself costs, with the noise of a shared machine cancelled: two
profilers sample the same three JVMs at the same time (each with its own lock file), one with the
default config (jvm.perf_map: auto) and one reading no perf map at all (symbolizer.perf_map: false,
which also turns the attaches off); the ratio of their CPU is taken per round.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import workloads as w  # noqa: E402

REPO = os.path.dirname(HERE)
HOST_PROFILER = os.path.join(REPO, '.venv', 'bin', 'host-profiler')
CONFIGS = ('native', 'jvm-off', 'jvm-auto')


def build_java() -> str:
    out = os.path.join(w.BUILD_DIR, 'java')
    os.makedirs(out, exist_ok=True)
    src = os.path.join(HERE, 'workloads', 'JvmMix.java')
    cls = os.path.join(out, 'JvmMix.class')
    if not os.path.exists(cls) or os.path.getmtime(cls) < os.path.getmtime(src):
        subprocess.run(['javac', '-d', out, src], check=True, capture_output=True)
    return out


def start_profiler(config, hz, tmp):
    cfg = os.path.join(tmp, 'conf.yaml')
    with open(cfg, 'w') as f:
        f.write('lock_file: {}\ndiagnostics_dir: {}\n'.format(os.path.join(tmp, 'hp.lock'), os.path.join(tmp, 'diag')))
        if config == 'no-perf-maps':
            f.write('receiver:\n  symbolizer:\n    perf_map: false\n')
        else:
            f.write('receiver:\n  jvm:\n    perf_map: {}\n'.format("'off'" if config == 'jvm-off' else 'auto'))
    cmd = [HOST_PROFILER, 'run', '--config', cfg, '--frequency', str(hz), '--interval', '10', '--duration', '100000',
           '--output', os.path.join(tmp, 'out')]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, 'hp.err'), 'w'),
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def start_workloads(config, java_classes, tmp):
    if config == 'native':
        spin = w.build('spin')
        return [subprocess.Popen([spin, os.path.join(tmp, 'spin{}'.format(i))]) for i in range(3)]
    return [subprocess.Popen(['java', '-cp', java_classes, 'JvmMix', '100000'], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for _ in range(3)]


def stop(proc, sig=signal.SIGINT, timeout=90):
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


def java_leaf_named(folded_path, pids_comm='java'):
    named = total = 0
    with open(folded_path) as f:
        for line in f:
            stack, _, count = line.rstrip('\n').rpartition(' ')
            frames = stack.split(';')
            if frames[0] != pids_comm:
                continue
            user = [fr for fr in frames[1:] if not fr.endswith('_[k]')]
            if not user:
                continue
            total += int(count)
            leaf = user[-1]
            if not (leaf.startswith('+0x') or leaf.startswith('[unknown]') or '+0x' in leaf):
                named += int(count)
    return named / total if total else None


def measure(config, hz, java_classes, args):
    tmp = tempfile.mkdtemp(prefix='hp-jvm-')
    os.makedirs(os.path.join(tmp, 'diag'))
    prof = start_profiler(config, hz, tmp)
    workloads = []
    row = {'config': config}
    try:
        time.sleep(args.warmup)
        if prof.poll() is not None:
            with open(os.path.join(tmp, 'hp.err')) as f:
                raise RuntimeError('host-profiler exited early: ' + f.read()[-500:])
        cpu0 = w.tree_cpu_seconds(prof.pid)
        t0 = time.monotonic()
        workloads = start_workloads(config, java_classes, tmp)
        time.sleep(args.window)
        dt = time.monotonic() - t0
        row['cpu_s_per_min'] = (w.tree_cpu_seconds(prof.pid) - cpu0) / dt * 60.0
        row['rss_mb'] = w.rss_mb(prof.pid)
    finally:
        for p in workloads:
            p.kill()
            p.wait()
        stop(prof)
        for p in workloads:
            for leftover in ('/tmp/perf-{}.map'.format(p.pid), '/tmp/.java_pid{}'.format(p.pid)):
                try:
                    os.unlink(leftover)
                except OSError:
                    pass
    try:
        with open(os.path.join(tmp, 'out', 'summary.json')) as f:
            summary = json.load(f)
        # samples of the whole run (the warm-up's too: few, as the host is nearly idle then)
        row['samples'] = summary.get('samples')
        row['cpu_ms_per_1k_samples'] = row['cpu_s_per_min'] * dt / 60.0 / max(1, row['samples']) * 1e6
        row['java_leaf_named'] = java_leaf_named(os.path.join(tmp, 'out', 'stacks.folded'))
    except (OSError, ValueError) as e:
        row['error'] = str(e)
    try:
        with open(os.path.join(tmp, 'diag', 'host_profiler_diagnostics.log')) as f:
            totals = json.load(f)['telemetry']['totals']
        row['attaches'] = totals.get('jvm.attach.count', 0)
        row['attach_errors'] = sum(v for k, v in totals.items() if k.startswith('jvm.attach.errors'))
        row['perf_map_bytes'] = totals.get('jvm.perf_map.bytes', 0)
    except (OSError, ValueError, KeyError):
        pass
    shutil.rmtree(tmp, ignore_errors=True)
    return row


def measure_paired(hz, java_classes, args):
    """Both profilers at once on the same JVMs: CPU of each over the same window."""
    tmps = {c: tempfile.mkdtemp(prefix='hp-jvm-') for c in ('jvm-auto', 'no-perf-maps')}
    profs = {}
    workloads = []
    row = {'config': 'paired'}
    try:
        for c, tmp in tmps.items():
            os.makedirs(os.path.join(tmp, 'diag'))
            profs[c] = start_profiler(c, hz, tmp)
        time.sleep(args.warmup)
        cpu0 = {c: w.tree_cpu_seconds(p.pid) for c, p in profs.items()}
        t0 = time.monotonic()
        workloads = start_workloads('jvm-auto', java_classes, tmps['jvm-auto'])
        time.sleep(args.window)
        dt = time.monotonic() - t0
        for c, p in profs.items():
            row[c + '_cpu_s_per_min'] = (w.tree_cpu_seconds(p.pid) - cpu0[c]) / dt * 60.0
        row['ratio'] = row['jvm-auto_cpu_s_per_min'] / row['no-perf-maps_cpu_s_per_min']
    finally:
        for p in workloads:
            p.kill()
            p.wait()
        for p in profs.values():
            stop(p)
        for p in workloads:
            for leftover in ('/tmp/perf-{}.map'.format(p.pid), '/tmp/.java_pid{}'.format(p.pid)):
                try:
                    os.unlink(leftover)
                except OSError:
                    pass
    for c, tmp in tmps.items():
        try:
            row[c + '_java_leaf_named'] = java_leaf_named(os.path.join(tmp, 'out', 'stacks.folded'))
            with open(os.path.join(tmp, 'diag', 'host_profiler_diagnostics.log')) as f:
                totals = json.load(f)['telemetry']['totals']
            row[c + '_attaches'] = totals.get('jvm.attach.count', 0)
            row[c + '_perf_map_bytes'] = totals.get('jvm.perf_map.bytes', 0)
        except (OSError, ValueError, KeyError) as e:
            row['error'] = str(e)
        shutil.rmtree(tmp, ignore_errors=True)
    return row


def summarize(rows, rounds):
    out = {}
    for config in CONFIGS:
        rs = [r for r in rows if r['config'] == config and 'cpu_s_per_min' in r]
        entry = {'n': len(rs)}
        for key in ('cpu_s_per_min', 'cpu_ms_per_1k_samples', 'java_leaf_named', 'rss_mb', 'attaches',
                    'attach_errors', 'perf_map_bytes', 'samples'):
            vals = [r[key] for r in rs if r.get(key) is not None]
            if vals:
                entry[key] = round(w.median(vals), 4)
        out[config] = entry
    for num, den in (('jvm-auto', 'native'), ('jvm-auto', 'jvm-off')):
        ratios = []
        for i in range(rounds):
            a = [r for r in rows if r['config'] == num and r.get('round') == i]
            b = [r for r in rows if r['config'] == den and r.get('round') == i]
            if a and b and b[0].get('cpu_s_per_min'):
                ratios.append(a[0]['cpu_s_per_min'] / b[0]['cpu_s_per_min'])
        out['{}/{}'.format(num, den)] = {'median': round(w.median(ratios), 3) if ratios else None,
                                         'per_round': [round(x, 3) for x in ratios]}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--window', type=float, default=60.0)
    ap.add_argument('--warmup', type=float, default=15.0)
    ap.add_argument('--hz', type=int, default=99)
    ap.add_argument('--paired', action='store_true', help='the two-profilers-at-once run (see above)')
    ap.add_argument('--json')
    args = ap.parse_args(argv)
    java_classes = build_java()
    rows = []
    if args.paired:
        for i in range(args.rounds):
            row = measure_paired(args.hz, java_classes, args)
            row['round'] = i
            rows.append(row)
            print(json.dumps(row), flush=True)
        ratios = [r['ratio'] for r in rows if 'ratio' in r]
        summary = {'jvm-auto/no-perf-maps': {'median': round(w.median(ratios), 3),
                                             'per_round': [round(x, 3) for x in ratios]}}
        for key in ('jvm-auto_cpu_s_per_min', 'no-perf-maps_cpu_s_per_min', 'jvm-auto_java_leaf_named',
                    'no-perf-maps_java_leaf_named', 'jvm-auto_attaches', 'jvm-auto_perf_map_bytes'):
            summary[key] = round(w.median([r.get(key) for r in rows]), 4)
        result = {'machine': w.machine(), 'args': vars(args), 'rows': rows, 'summary': summary}
        print(json.dumps(summary, indent=1))
        if args.json:
            with open(args.json, 'w') as f:
                json.dump(result, f, indent=1)
        return
    rng = random.Random(7)
    for i in range(args.rounds):
        order = list(CONFIGS)
        rng.shuffle(order)
        for config in order:
            row = measure(config, args.hz, java_classes, args)
            row['round'] = i
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {'machine': w.machine(), 'args': vars(args), 'rows': rows, 'summary': summarize(rows, args.rounds)}
    print(json.dumps(result['summary'], indent=1))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
