# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Accuracy against perf: per-function shares on a workload with a known split.

    python benchmarks/accuracy.py [--seconds 40] [--frequency 99] [--split 50,30,20] [--repeat 1]

benchmarks/workloads/split3.c does fixed work in func_a/func_b/func_c in the given
proportions (truth). The workload runs once while both profilers sample it at the same time:
host_profiler (the pipeline in-process, whole host, at --frequency, one check run every
10 s) and `perf record -F FREQ -g -a`; `perf script` is folded by a small parser. For each
profiler: the share of each function among the workload's samples whose leaf is one of
the three (self time), and the gap to the truth and to perf. Goal: within 2 points of perf.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import workloads as w  # noqa: E402

FUNCS = ('func_a', 'func_b', 'func_c')


def parse_perf_script(text: str) -> Counter:
    """Folded stacks (comm;root;...;leaf -> count) from `perf script` default output."""
    out: Counter = Counter()
    comm, frames = None, []

    def flush():
        if comm is not None:
            out[';'.join([comm] + frames[::-1])] += 1

    for line in text.splitlines():
        if not line.strip():
            flush()
            comm, frames = None, []
            continue
        if line[0] not in ' \t':
            # header: "comm  pid/tid [cpu] ts: period event:" (comm may contain spaces)
            head = line.split(':', 1)[0]
            parts = head.split()
            idx = next((i for i, p in enumerate(parts) if p.replace('/', '').isdigit()), len(parts))
            comm = ' '.join(parts[:idx]) or '?'
            frames = []
            continue
        parts = line.strip().split(None, 1)
        if len(parts) < 2:
            continue
        sym = parts[1].rsplit(' (', 1)[0]
        sym = sym.split('+0x', 1)[0]
        frames.append(sym)
    flush()
    return out


def shares(folded: Counter, comm: str) -> dict:
    leaf = Counter()
    for stack, n in folded.items():
        parts = stack.split(';')
        if parts[0] != comm:
            continue
        if parts[-1] in FUNCS:
            leaf[parts[-1]] += n
    total = sum(leaf.values())
    return {'samples': total, **{f: (100.0 * leaf[f] / total if total else float('nan')) for f in FUNCS}}


def ours_folded(profiles) -> Counter:
    from datadog_checks.host_profiler.profile.folded import folded_counts

    return Counter(folded_counts(profiles))


def one_run(args, split):
    tmp = tempfile.mkdtemp(prefix='hp-acc-')
    binary = w.build('split3', defines=['SHARE_A={}'.format(split[0]), 'SHARE_B={}'.format(split[1]),
                                        'SHARE_C={}'.format(split[2])])
    comm = os.path.basename(binary)[:15]
    pipeline, telemetry = w.make_pipeline(w.pipeline_instance(tmp, args.frequency), 10.0)
    perf_data = os.path.join(tmp, 'perf.data')
    try:
        pipeline.run_once()  # starts the sampler
        perf = subprocess.Popen(['perf', 'record', '-F', str(args.frequency), '-g', '-a', '-q', '-o', perf_data],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        pipeline.run_once()  # drop what came before the workload
        workload = subprocess.Popen([binary, str(args.seconds)])
        profiles = []
        deadline = time.monotonic() + args.seconds
        while workload.poll() is None:
            time.sleep(max(0.1, min(10.0, deadline - time.monotonic())))
            r = pipeline.run_once()
            if r.profile is not None:
                profiles.append(r.profile)
        time.sleep(1.5)  # the last drain
        r = pipeline.run_once()
        if r.profile is not None:
            profiles.append(r.profile)
        perf.send_signal(2)
        perf.wait(60)
        script = subprocess.run(['perf', 'script', '-i', perf_data, '--comms', comm, '-F', 'comm,pid,tid,ip,sym'],
                                capture_output=True, text=True).stdout
        perf_counts = parse_perf_script(script)
        ours_counts = ours_folded(profiles)
    finally:
        w.close_pipeline(pipeline)
        shutil.rmtree(tmp, ignore_errors=True)
    ours = shares(ours_counts, comm)
    theirs = shares(perf_counts, comm)
    truth = {f: float(s) for f, s in zip(FUNCS, split)}
    # total samples of the workload (any leaf), to compare coverage
    ours['all_samples'] = sum(n for s, n in ours_counts.items() if s.split(';')[0] == comm)
    theirs['all_samples'] = sum(n for s, n in perf_counts.items() if s.split(';')[0] == comm)
    return {'split': split, 'truth': truth, 'ours': ours, 'perf': theirs,
            'max_gap_ours_perf': max(abs(ours[f] - theirs[f]) for f in FUNCS),
            'max_gap_ours_truth': max(abs(ours[f] - truth[f]) for f in FUNCS),
            'max_gap_perf_truth': max(abs(theirs[f] - truth[f]) for f in FUNCS)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--seconds', type=float, default=40)
    ap.add_argument('--frequency', type=int, default=99)
    ap.add_argument('--split', default='50,30,20')
    ap.add_argument('--repeat', type=int, default=1)
    ap.add_argument('--quick', action='store_true', help='15 s')
    args = ap.parse_args()
    if args.quick:
        args.seconds = 15
    split = [int(x) for x in args.split.split(',')]
    assert len(split) == 3 and sum(split) == 100
    runs = [one_run(args, split) for _ in range(args.repeat)]
    print('| Function | Truth | host_profiler | perf record | ours - perf | ours - truth | perf - truth |')
    print('|---|---|---|---|---|---|---|')
    for r in runs:
        for f in FUNCS:
            print('| {} | {:.1f}% | {:.1f}% | {:.1f}% | {:+.1f} | {:+.1f} | {:+.1f} |'.format(
                f, r['truth'][f], r['ours'][f], r['perf'][f], r['ours'][f] - r['perf'][f],
                r['ours'][f] - r['truth'][f], r['perf'][f] - r['truth'][f]))
        print('| samples (leaf in a/b/c; all) | | {} ; {} | {} ; {} | | | |'.format(
            r['ours']['samples'], r['ours']['all_samples'], r['perf']['samples'], r['perf']['all_samples']))
    gap = w.median([r['max_gap_ours_perf'] for r in runs])
    ok = gap <= 2.0
    print('{} ours within 2 points of perf: max gap {:.2f} points'.format('PASS' if ok else 'FAIL', gap))
    print(json.dumps({'runs': runs, 'ok': ok, 'machine': w.machine(), 'args': vars(args)}))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
