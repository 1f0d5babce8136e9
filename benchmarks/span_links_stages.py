# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Where the span links' own CPU goes, per stage: `host-profiler run` with `receiver.span_links` on and
off, side by side against the same dd-trace-py app (the tests' DDTRACE_APP), each with the thread CPU
time (`time.thread_time_ns`) of a few functions summed around every call.

    python benchmarks/span_links_stages.py [--seconds 80] [--frequency 99] [--cpus 0] [--json FILE]

Prints, per stage, the milliseconds and calls of each configuration and the difference. The first export
and the first look at the app (the TLS analysis, the first symbolization) fall inside: run long enough
(or read the per-call lists in --json) to tell them from the steady state. Wrapping costs ~1 µs a call.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# (module, attribute path) of the functions timed
STAGES = (
    ('datadog_checks.host_profiler.receiver.receiver', 'Receiver._drain_once'),
    ('datadog_checks.host_profiler.receiver.receiver', 'Receiver._observe'),
    ('datadog_checks.host_profiler.receiver.receiver', 'Receiver._link_samples'),
    ('datadog_checks.host_profiler.receiver.sampler', 'Sampler._tc_stats_delta'),
    ('datadog_checks.host_profiler.receiver.drains.on_cpu', 'OnCpuDrain.begin'),
    ('datadog_checks.host_profiler.receiver.drains.on_cpu', 'OnCpuDrain.drain'),
    ('datadog_checks.host_profiler.receiver.drains.on_cpu', 'OnCpuDrain._read_thread_records'),
    ('datadog_checks.host_profiler.receiver.drains.on_cpu', 'OnCpuDrain.thread_link'),
    ('datadog_checks.host_profiler.runtimes.otel_thread_context', 'RecordLinks.__call__'),
    ('datadog_checks.host_profiler.runtimes.otel_thread_tls', 'ThreadTlsRuntime.observe'),
    ('datadog_checks.host_profiler.profiler_pipeline', 'build_profile'),
    ('datadog_checks.host_profiler.profiler_pipeline', 'ProfilerPipeline._collect_profile'),
    ('datadog_checks.host_profiler.profiler_pipeline', 'ProfilerPipeline._export'),
    ('datadog_checks.host_profiler.profile.otlp', '_fill_samples'),
)


def _child(out: str, argv) -> None:
    """The profiler itself, with the stages wrapped; writes {stage: [ms per call]} to ``out`` at exit."""
    import importlib

    calls = {}

    def wrap(owner, name, tag):
        f = getattr(owner, name)

        @functools.wraps(f)
        def timed(*a, **k):
            t0 = time.thread_time_ns()
            try:
                return f(*a, **k)
            finally:
                calls.setdefault(tag, []).append((time.thread_time_ns() - t0) / 1e6)

        setattr(owner, name, timed)

    for module, path in STAGES:
        owner = importlib.import_module(module)
        *parents, name = path.split('.')
        for p in parents:
            owner = getattr(owner, p)
        if hasattr(owner, name):
            wrap(owner, name, path)
    # the garbage collector's passes, by generation (thread CPU time of the thread that ran each):
    # what allocations on one path cost every other path
    import gc

    started = {}

    def on_gc(phase, info):
        if phase == 'start':
            started[threading.get_ident()] = time.thread_time_ns()
        else:
            t0 = started.pop(threading.get_ident(), None)
            if t0 is not None:
                calls.setdefault('gc.gen{}'.format(info['generation']), []).append(
                    (time.thread_time_ns() - t0) / 1e6)

    gc.callbacks.append(on_gc)
    from datadog_checks.host_profiler.cli import main

    sys.argv = ['host-profiler'] + list(argv)
    try:
        main()
    finally:
        with open(out, 'w') as f:
            json.dump(calls, f)


def main():
    if len(sys.argv) > 2 and sys.argv[1] == '--child':
        return _child(sys.argv[2], sys.argv[3:])
    sys.path.insert(0, ROOT)
    from tests.runtimes.test_otel_thread_tls import DDTRACE_APP, ddtrace_env

    ap = argparse.ArgumentParser()
    ap.add_argument('--seconds', type=float, default=80.0)
    ap.add_argument('--frequency', type=int, default=99)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--cpus', type=lambda v: {int(c) for c in v.split(',')}, default={0})
    ap.add_argument('--json')
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    app = os.path.join(tmp, 'app.py')
    with open(app, 'w') as f:
        f.write(DDTRACE_APP)
    worker = subprocess.Popen([sys.executable, app, str(args.threads), '40', '20', str(int(args.seconds) + 120)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ddtrace_env())
    procs = {}
    try:
        for name in ('links', 'no_links'):
            d = os.path.join(tmp, name)
            os.makedirs(d)
            cfg = os.path.join(d, 'conf.yaml')
            with open(cfg, 'w') as f:
                f.write('lock_file: {0}/hp.lock\ndiagnostics_dir: {0}/diag\nreceiver:\n  span_links: {1}\n'
                        '  pids: [{2}]\n'.format(d, 'true' if name == 'links' else 'false', worker.pid))
            cpus = args.cpus
            procs[name] = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), '--child', os.path.join(d, 'stages.json'), 'run',
                 '--config', cfg, '--frequency', str(args.frequency), '--interval', '10', '--duration', '100000',
                 '--output', os.path.join(d, 'out')],
                env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.DEVNULL,
                stderr=open(os.path.join(d, 'err'), 'w'), start_new_session=True,
                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        time.sleep(args.seconds)
    finally:
        for proc in procs.values():
            try:
                os.killpg(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        for proc in procs.values():
            proc.wait(120)
        worker.kill()
        worker.wait()
    got = {}
    for name in procs:
        try:
            with open(os.path.join(tmp, name, 'stages.json')) as f:
                got[name] = json.load(f)
        except OSError:
            raise SystemExit('{} wrote no timings: see {}'.format(name, os.path.join(tmp, name, 'err')))
    print('{:<36} {:>10} {:>6} {:>10} {:>6} {:>9}'.format('stage', 'links ms', 'calls', 'no ms', 'calls', 'diff ms'))
    for path in [p for _, p in STAGES] + ['gc.gen0', 'gc.gen1', 'gc.gen2']:
        a, b = got['links'].get(path, []), got['no_links'].get(path, [])
        print('{:<36} {:>10.1f} {:>6} {:>10.1f} {:>6} {:>+9.1f}'.format(path, sum(a), len(a), sum(b), len(b),
                                                                     sum(a) - sum(b)))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'seconds': args.seconds, 'frequency': args.frequency, 'calls': got,
                       'command': ' '.join(sys.argv)}, f)


if __name__ == '__main__':
    main()
