# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""In-kernel cost of the Python walk, per stage, with variants of the BPF program side by side.

    .venv/bin/python benchmarks/python_walk_stages.py [--frequency 20] [--rounds 6] [--window 20]
        [--variant NAME=CFLAGS ...] [--no-stages] [--json FILE]

One pysplit.py worker (20 deep: 26 Python frames per stack) per interpreter of pyenv's 3.12 (shared
libpython) and Debian's python3.11 (static), both cores busy. Several samplers (`unwinding: auto`,
only the workers' pids) run AT ONCE on the same workers, each its own compiled program:

  native      `interpreters: []`
  python      this tree's program
  <NAME>      this tree's program compiled with extra -D flags (--variant NAME=-DX=1,-DY=2)

so every configuration is measured over the same windows, under the same load (a paired design; the
programs share nothing but the workers' memory). Unless --no-stages, the Python samplers are
compiled with -DPY_DEBUG_CLOCK=1: bpf_ktime_get_ns stamps per stage in the `py_dbg` map (thread
state, frame loop, store), page reads and bytes read, and how many stores were new stacks. Per window
and configuration: BPF run time per run of `on_cpu_sample` (kernel BPF stats), the walk's own clock
per walk (`_py_walk_ns` / `_py_walks`), and the stages.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from datadog_checks.host_profiler.runtime.bpf_stats import enable_stats_fd, prog_info_by_fd  # noqa: E402

PYSPLIT = os.path.join(os.path.dirname(HERE), 'tests', 'workloads', 'pysplit.py')
PYTHONS = (os.path.expanduser('~/.pyenv/versions/3.12.1/bin/python3.12'), '/usr/bin/python3.11')
DBG = ('top_ns', 'loop_ns', 'store_ns', 'page_reads', 'bytes_read', 'new_stacks', 'old_stacks', 'timed', 'store_new_ns',
       'read_ns', 'recent_hits', 'procs_hit_ns', 'procs_miss_ns', 'procs_hits', 'procs_misses')


def _patch_cflags():
    """Program.cflags + the config's `_extra_cflags` (set per sampler below)."""
    from datadog_checks.host_profiler.receiver import program

    orig = program.Program.cflags

    def cflags(self):
        return orig(self) + list(getattr(self.config, '_extra_cflags', ()))

    program.Program.cflags = cflags


def _sum_table(t) -> list:
    out = []
    for k in sorted(t.keys(), key=lambda k: k.value):
        v = t[k]
        out.append(sum(int(x) for x in v) if hasattr(v, '__len__') else int(v.value))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--frequency', type=int, default=20)
    ap.add_argument('--rounds', type=int, default=6)
    ap.add_argument('--window', type=float, default=20.0)
    ap.add_argument('--variant', action='append', default=[], help='NAME=-DX=1,-DY=2')
    ap.add_argument('--no-stages', action='store_true')
    ap.add_argument('--no-python', action='store_true', help='only the variants (and native)')
    ap.add_argument('--restart', action='store_true', help='new samplers, in a shuffled order, each round')
    ap.add_argument('--json')
    args = ap.parse_args()
    _patch_cflags()
    from datadog_checks.host_profiler.receiver.processes import read_process
    from datadog_checks.host_profiler.receiver.program import STATS
    from datadog_checks.host_profiler.receiver.sampler import Sampler, SamplerConfig
    from datadog_checks.host_profiler.runtimes.python import PythonRuntime

    pythons = [p for p in PYTHONS if os.path.exists(p)]
    total = args.rounds * (args.window + (30 if args.restart else 0)) + 120
    workers = [subprocess.Popen([p, PYSPLIT, str(total), '20'], stdout=subprocess.DEVNULL) for p in pythons]
    pids = [w.pid for w in workers]
    stage = [] if args.no_stages else ['-DPY_DEBUG_CLOCK=1']
    configs = [('native', [], [])] + ([] if args.no_python else [('python', ['python'], stage)])
    for v in args.variant:
        name, _, flags = v.partition('=')
        configs.append((name, ['python'], stage + [f for f in flags.split(',') if f]))
    stats_fd = enable_stats_fd()
    samplers = []
    rows = []

    def start_all(order):
        for name, interps, flags in order:
            cfg = SamplerConfig(interpreters=interps, unwinding='auto', samples_per_second=args.frequency, pids=pids)
            object.__setattr__(cfg, '_extra_cflags', flags)
            s = Sampler(cfg)
            s.start()
            rt = None
            if interps:
                rt = PythonRuntime()
                rt.attach(s)
                for p in pids:
                    rt.observe(read_process(p))
            samplers.append((name, s, rt))
        time.sleep(8.0)  # kernel-unwind tables loaded, first code objects read

    try:
        time.sleep(1.0)
        if not args.restart:
            start_all(configs)
        for r in range(args.rounds):
            if args.restart:  # new programs in a new order: where each one's maps land changes too
                for _, s, _ in samplers:
                    s.close()
                del samplers[:]
                start_all(random.sample(configs, len(configs)))
            before = []
            for name, s, _ in samplers:
                s.drain()
                fd = s._bpf.funcs[b'on_cpu_sample'].fd
                dbg = _sum_table(s.table('py_dbg')) if name != 'native' and not args.no_stages else []
                before.append((prog_info_by_fd(fd), _sum_table(s.table('stats')), dbg))
            load = os.getloadavg()[0]
            t0 = time.monotonic()
            while time.monotonic() - t0 < args.window:
                for _, s, _ in samplers:
                    s.poll(0)
                time.sleep(0.2)
            for (name, s, _), (a, sa, da) in zip(samplers, before):
                fd = s._bpf.funcs[b'on_cpu_sample'].fd
                b = prog_info_by_fd(fd)
                sb = _sum_table(s.table('stats'))
                st = {k: sb[i] - sa[i] for i, k in enumerate(STATS) if i < len(sb)}
                n = b['run_cnt'] - a['run_cnt']
                row = {'round': r, 'config': name, 'load1': round(load, 2), 'runs': n,
                       'run_ns': b['run_time_ns'] - a['run_time_ns'],
                       'us_per_sample': round((b['run_time_ns'] - a['run_time_ns']) / max(1, n) / 1000, 2),
                       'kept': st.get('_samples', 0)}
                walks = st.get('_py_walks', 0)
                if walks:
                    row['walks'] = walks
                    row['walk_us'] = round(st.get('_py_walk_ns', 0) / walks / 1000, 2)
                    row['frames_per_walk'] = round(st.get('_py_frames', 0) / walks, 1)
                if da:
                    db = _sum_table(s.table('py_dbg'))
                    d = {k: db[i] - da[i] for i, k in enumerate(DBG)}
                    t = max(1, d['timed'])
                    row.update({'top_us': round(d['top_ns'] / t / 1000, 2), 'loop_us': round(d['loop_ns'] / t / 1000, 2),
                                'store_us': round(d['store_ns'] / t / 1000, 2),
                                'reads_per_walk': round(d['page_reads'] / t, 2),
                                'bytes_per_walk': round(d['bytes_read'] / t),
                                'new_share': round(d['new_stacks'] / t, 3),
                                'store_new_us': round(d['store_new_ns'] / max(1, d['new_stacks']) / 1000, 2),
                                'store_old_us': round((d['store_ns'] - d['store_new_ns']) / max(1, d['old_stacks']) / 1000, 2),
                                'read_us': round(d['read_ns'] / t / 1000, 2),
                                'recent_share': round(d['recent_hits'] / t, 3),
                                'procs_hit_us': round(d['procs_hit_ns'] / max(1, d['procs_hits']) / 1000, 2),
                                'procs_miss_us': round(d['procs_miss_ns'] / max(1, d['procs_misses']) / 1000, 2)})
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        for _, s, _ in samplers:
            s.close()
        os.close(stats_fd)
        for w in workers:
            w.kill()
            w.wait()
    summary = {}
    nat = {r['round']: r for r in rows if r['config'] == 'native'}
    for name, _, _ in configs:
        mine = [r for r in rows if r['config'] == name]
        summary[name] = {k: statistics.median(r[k] for r in mine) for k in mine[0] if k not in ('round', 'config')
                         and all(k in r for r in mine)}
        if name != 'native':
            # per kept sample: native's run time scaled to as many runs (the dropped runs cost the same)
            summary[name]['more_than_native'] = [
                round((r['run_ns'] - nat[r['round']]['run_ns'] * r['runs'] / max(1, nat[r['round']]['runs']))
                      / max(1, r['kept']) / 1000, 2) for r in mine]
            summary[name]['more_than_native_median'] = statistics.median(summary[name]['more_than_native'])
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'frequency': args.frequency, 'window_s': args.window, 'configs': configs, 'rows': rows,
                       'summary': summary}, f, indent=1)


if __name__ == '__main__':
    main()
