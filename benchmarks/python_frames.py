# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Python frames: what walking CPython frames costs in the kernel per sample, and how our Python
names agree with py-spy's on the same process (py-spy is a benchmark-only tool: `pip install py-spy`).

    .venv/bin/python benchmarks/python_frames.py [--python PATH] [--seconds 10] [--rounds 3]

1. In-kernel cost: one sampler (unwinding auto) on a pysplit.py process; windows alternate between
   the process registered in `py_procs` (its frames walked) and not (native only). The average run
   time of `on_cpu_sample` (BPF run-time stats) per window, and the difference; and the walk's own
   time per walk (the `_py_walk_ns` counter, bpf_ktime_get_ns around the walk).
2. Agreement with py-spy: our receiver and `py-spy record --format raw --nonblocking` sample the
   same process at the same rate; per-function inclusive shares side by side, and each one's CPU
   (ours: the whole receiver process + its BPF programs; py-spy: its process).
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from datadog_checks.host_profiler.runtime.bpf_stats import enable_stats_fd, prog_info_by_fd  # noqa: E402

PYSPLIT = os.path.join(os.path.dirname(HERE), 'tests', 'workloads', 'pysplit.py')
FUNCS = ('main', 'run', 'descend', 'heavy', 'light', 'spin')


def kernel_cost(python: str, seconds: float, rounds: int, hz: int = 99) -> dict:
    from datadog_checks.host_profiler.receiver.processes import read_process
    from datadog_checks.host_profiler.receiver.sampler import Sampler, SamplerConfig
    from datadog_checks.host_profiler.runtimes.python import PythonRuntime

    proc = subprocess.Popen([python, PYSPLIT, str(seconds * 2 * rounds + 60), '20'])
    stats_fd = enable_stats_fd()
    sampler = Sampler(SamplerConfig(interpreters=['python'], unwinding='auto', samples_per_second=hz, pids=[proc.pid]))
    try:
        sampler.start()
        rt = PythonRuntime()
        rt.attach(sampler)
        time.sleep(0.5)
        info = read_process(proc.pid)
        fd = sampler._bpf.funcs[b'on_cpu_sample'].fd
        out = {'walked': [], 'native_only': []}
        for r in range(2 * rounds):
            walked = r % 2 == 0
            if walked:
                rt.observe(info)
            else:
                rt.forget(proc.pid)
                rt.end_drain()  # drops it
            sampler.drain()
            a = prog_info_by_fd(fd)
            t0 = time.monotonic()
            while time.monotonic() - t0 < seconds:
                sampler.poll(200)
            b = prog_info_by_fd(fd)
            res = sampler.drain()
            n = b['run_cnt'] - a['run_cnt']
            ns = (b['run_time_ns'] - a['run_time_ns']) / max(1, n)
            frames = sum(len(s.runtime_stack[1]) * s.count for s in res.samples if s.runtime_stack)
            walked_n = sum(s.count for s in res.samples if s.runtime_stack)
            rs = res.runtime_stats
            out['walked' if walked else 'native_only'].append(
                {'runs': n, 'ns_per_sample': round(ns), 'python_frames_per_walked_sample':
                 round(frames / walked_n, 1) if walked_n else 0,
                 # the program's own clock around the walk (_py_walk_ns), per walk
                 'walk_ns_per_walk': round(rs.get('_py_walk_ns', 0) / rs['_py_walks']) if rs.get('_py_walks') else 0})
        return out
    finally:
        sampler.close()
        os.close(stats_fd)
        proc.kill()
        proc.wait()


def _ours(python: str, seconds: float, tmp: str):
    import psutil

    from datadog_checks.host_profiler.profile.builder import build_profile
    from datadog_checks.host_profiler.profile.model import FRAME_CPYTHON
    from datadog_checks.host_profiler.receiver.receiver import Receiver, ReceiverConfig
    from datadog_checks.host_profiler.runtime.telemetry import Telemetry
    from datadog_checks.host_profiler.symbols.symbolizer import Symbolizer

    go = os.path.join(tmp, 'go')
    proc = subprocess.Popen([python, PYSPLIT, str(seconds + 2), '5', go])
    tel = Telemetry()
    rx = Receiver(ReceiverConfig(samples_per_second=99, drain_interval=1.0, check_interval=0,
                                 lock_path=os.path.join(tmp, 'lock'), pids=[proc.pid]), telemetry=tel)
    stats_fd = enable_stats_fd()
    rx.start()
    spy_out = os.path.join(tmp, 'spy.txt')
    try:
        me = psutil.Process()
        open(go, 'w').close()
        time.sleep(1.0)  # detection: the comparison starts once both sample the running program
        spy = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), 'py-spy'), 'record', '--format', 'raw',
                                '--nonblocking', '--rate', '99', '--duration', str(int(seconds)), '--pid',
                                str(proc.pid), '--output', spy_out], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        fds = [f.fd for f in rx._sampler._bpf.funcs.values()]
        k0 = sum(prog_info_by_fd(fd)['run_time_ns'] for fd in fds)
        c0 = sum(me.cpu_times()[:2])
        rx.collect()
        spy_proc = psutil.Process(spy.pid)
        spy_cpu = 0.0
        while spy.poll() is None:
            try:
                spy_cpu = sum(spy_proc.cpu_times()[:2])
            except psutil.Error:
                pass
            time.sleep(0.1)
        time.sleep(1.2)
        col = rx.collect()
        c1 = sum(me.cpu_times()[:2])
        k1 = sum(prog_info_by_fd(fd)['run_time_ns'] for fd in fds)
    finally:
        rx.stop(block=True, timeout=30)
        os.close(stats_fd)
        proc.wait()
    sym = Symbolizer(tel)
    profile = build_profile(col.samples, col.processes.get, sym.symbolize_user, sym.symbolize_kernel,
                            time_unix_nano=0, duration_nano=1, period_nano=1)
    ours = collections.Counter()
    total = 0
    for r in profile.resources:
        for s in r.samples:
            total += s.value
            names = {f.function.rsplit('.', 1)[-1] for f in s.frames if f.kind == FRAME_CPYTHON}
            for fn in names:
                ours[fn] += s.value
    spy = collections.Counter()
    spy_total = 0
    with open(spy_out) as f:
        for line in f:
            stack, _, count = line.rstrip('\n').rpartition(' ')
            if not stack:
                continue
            n = int(count)
            spy_total += n
            for fn in {fr.split(' (', 1)[0].rsplit('.', 1)[-1] for fr in stack.split(';')}:
                spy[fn] += n
    return {
        'ours_samples': total, 'py_spy_samples': spy_total,
        'shares_ours': {fn: round(100.0 * ours[fn] / max(1, total), 1) for fn in FUNCS},
        'shares_py_spy': {fn: round(100.0 * spy[fn] / max(1, spy_total), 1) for fn in FUNCS},
        'heavy_of_heavy_light_ours': round(100.0 * ours['heavy'] / max(1, ours['heavy'] + ours['light']), 1),
        'heavy_of_heavy_light_py_spy': round(100.0 * spy['heavy'] / max(1, spy['heavy'] + spy['light']), 1),
        'cpu_s_ours_user_space': round(c1 - c0, 3), 'cpu_s_ours_bpf': round((k1 - k0) / 1e9, 4),
        'cpu_s_py_spy': round(spy_cpu, 3), 'seconds': seconds,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--python', default=os.path.expanduser('~/.pyenv/versions/3.12.1/bin/python3.12'))
    ap.add_argument('--seconds', type=float, default=10.0)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--frequency', type=int, default=99, help='of the in-kernel cost part')
    ap.add_argument('--kernel-only', action='store_true', help='only the in-kernel cost (no py-spy)')
    args = ap.parse_args()
    out = {'python': args.python, 'kernel_cost': kernel_cost(args.python, args.seconds / 2, args.rounds, args.frequency)}
    if args.kernel_only:
        print(json.dumps(out, indent=1))
        return
    with tempfile.TemporaryDirectory() as tmp:
        out['vs_py_spy'] = _ours(args.python, args.seconds, tmp)
    print(json.dumps(out, indent=1))


if __name__ == '__main__':
    main()
