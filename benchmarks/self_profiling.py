# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""What self-profiling (``ddprofiling``) costs: `host-profiler run` with and without it, in one run.

    python benchmarks/self_profiling.py [--rounds 3] [--window 60] [--warmup 20] [--period 10]
                                        [--freq 99] [--json FILE]

A busy loop per core (benchmarks/workloads/spin.c) gives the profiler samples to symbolize and
export. Each round runs both configurations one after the other, in a shuffled order, so that
the machine's background load hits both alike:

  off   `host-profiler run --frequency F --interval 10` (local files), no ddprofiling
  on    the same with `ddprofiling: {enabled: true, period: P, endpoint: <local trace agent>}`;
        a small HTTP server in this script stands in for the trace agent and counts uploads

Each run waits --warmup s (BPF compile, first drain, ddtrace's import and start) and then measures
over --window s:
  - cpu_s_per_min: the profiler's CPU seconds (utime+stime) per minute of the window;
  - rss_mb: median RSS over the window, and hwm_mb: VmHWM at the end of the window;
  - start_cpu_s: CPU from launch to the end of the warm-up (start-up, including ddtrace's import);
  - uploads: profiles the stand-in trace agent received during the window (on only).
Ratios on/off are computed per round (the two runs of one round are minutes apart at most) and
their median reported.
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import workloads as w  # noqa: E402

HOST_PROFILER = os.path.join(os.path.dirname(sys.executable), 'host-profiler')


class _TraceAgent(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(('127.0.0.1', 0), _Handler)
        self.uploads = []  # (time, bytes)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
        self.server.uploads.append((time.monotonic(), len(body)))
        self.send_response(200)
        self.send_header('Content-Length', '0')
        self.end_headers()

    def log_message(self, *_):
        pass


def run_one(name, args, tmp, agent):
    cfg = os.path.join(tmp, name + '.yaml')
    with open(cfg, 'w') as f:
        f.write('lock_file: {}\ndiagnostics_dir: {}\n'.format(os.path.join(tmp, 'hp.lock'), tmp))
        if name == 'on':
            f.write('ddprofiling: {{enabled: true, period: {}, endpoint: "http://127.0.0.1:{}"}}\n'.format(
                args.period, agent.server_address[1]))
    out = os.path.join(tmp, 'out-' + name)
    shutil.rmtree(out, ignore_errors=True)
    started = time.monotonic()
    proc = subprocess.Popen([HOST_PROFILER, 'run', '--config', cfg, '--frequency', str(args.freq), '--interval', '10',
                             '--duration', '100000', '--output', out], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(tmp, name + '.err'), 'w'), start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        time.sleep(args.warmup)
        cpu0 = w.proc_cpu_seconds(proc.pid)
        t0 = time.monotonic()
        uploads0 = len(agent.uploads)
        rss = []
        while time.monotonic() - t0 < args.window:
            time.sleep(1.0)
            rss.append(w.rss_mb(proc.pid))
        cpu1 = w.proc_cpu_seconds(proc.pid)
        hwm = w.hwm_mb(proc.pid)
        elapsed = time.monotonic() - t0
        uploads = [u for u in agent.uploads[uploads0:] if u[0] >= t0]
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return {
        'config': name,
        'cpu_s_per_min': (cpu1 - cpu0) * 60.0 / elapsed,
        'start_cpu_s': cpu0,
        'rss_mb': w.median(rss),
        'hwm_mb': hwm,
        'uploads': len(uploads),
        'upload_kb': sum(n for _, n in uploads) / 1e3 / max(1, len(uploads)),
        'exit_code': proc.returncode,
        'wall_s': time.monotonic() - started,
    }


def summarize(rows):
    by_round = {}
    for r in rows:
        by_round.setdefault(r['round'], {})[r['config']] = r
    out = {}
    for cfg in ('off', 'on'):
        rs = [r for r in rows if r['config'] == cfg]
        out[cfg] = {k: w.median([r[k] for r in rs]) for k in ('cpu_s_per_min', 'start_cpu_s', 'rss_mb', 'hwm_mb',
                                                               'uploads', 'upload_kb')}
    pairs = [v for v in by_round.values() if 'on' in v and 'off' in v]
    out['ratio_on_off'] = {k: w.median([p['on'][k] / p['off'][k] for p in pairs if p['off'][k]])
                           for k in ('cpu_s_per_min', 'start_cpu_s', 'rss_mb', 'hwm_mb')}
    out['delta_on_off'] = {k: w.median([p['on'][k] - p['off'][k] for p in pairs])
                           for k in ('cpu_s_per_min', 'start_cpu_s', 'rss_mb', 'hwm_mb')}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--window', type=float, default=60.0)
    parser.add_argument('--warmup', type=float, default=20.0)
    parser.add_argument('--period', type=float, default=10.0, help='ddprofiling.period (s)')
    parser.add_argument('--freq', type=int, default=99)
    parser.add_argument('--json')
    args = parser.parse_args()

    agent = _TraceAgent()
    threading.Thread(target=agent.serve_forever, daemon=True).start()
    tmp = tempfile.mkdtemp(prefix='hp-selfprof-')
    spin = w.build('spin')
    counter = os.path.join(tmp, 'counter')
    workers = [subprocess.Popen([spin, counter + str(i)], stdout=subprocess.DEVNULL)
               for i in range(os.cpu_count() or 1)]
    rows = []
    try:
        for rnd in range(args.rounds):
            order = ['off', 'on']
            random.shuffle(order)
            for name in order:
                row = run_one(name, args, tmp, agent)
                row['round'] = rnd
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        for p in workers:
            p.kill()
            p.wait()
        agent.shutdown()
    result = {'machine': w.machine(), 'args': vars(args), 'rows': rows, 'summary': summarize(rows)}
    print(json.dumps(result['summary'], indent=2))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
