# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""How soon a new process is read and registered after its first sample, while drains are long.

    sudo .venv/bin/python benchmarks/events_latency.py [--seconds 30] [--unwinding auto] [--repo DIR]

A ``Receiver`` (99 Hz, drain every 0.25 s, the given unwinding) runs while:
- drains are made long the way a real host makes them: a new CPython interpreter (each pyenv
  version in turn, then Debian's) starts every 1.5 s and burns CPU, so each drain meets
  a new libpython whose CFI is compiled in user space (in ``auto``, table builds beyond the
  kernel-unwind budget keep the stack copy);
- a C program that spins for 50 ms then exits is started every 0.2 s (the short-lived process).

For each first-sample event the receiver handles, the delays from the kernel's timestamp of
that sample (``ProcessEvent.ts_ns``, CLOCK_MONOTONIC) to its metadata read (the event's
``registry.ensure``) and to the runtimes' first look (``runtimes.observe``) are recorded by
wrapping those calls (the same on any version).
Reported: delay percentiles of the short processes' first-sample events, how many short processes
got metadata (exe and libc mappings in the registry), and the drain durations.
``--repo`` runs another checkout (the version before the events thread) for the before/after.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

BUSY_C = r'''
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
__attribute__((noinline)) static unsigned long spin(unsigned long x) { return x * 2654435761u + 1; }
int main(int argc, char **argv) {
    double end = now() + atof(argv[1]);
    unsigned long x = 1;
    while (now() < end) x = spin(x);
    return (int)(x & 0);
}
'''
PY_BURN = 'import time\nend = time.time() + {s}\nx = 0\nwhile time.time() < end:\n    x += 1\n'


def pythons():
    found = sorted(glob.glob('/root/.pyenv/versions/3.*/bin/python3.[0-9]*'))
    found = [p for p in found if re.search(r'/python3\.\d+$', p) and os.access(p, os.X_OK)]
    if os.path.exists('/usr/bin/python3'):
        found.append('/usr/bin/python3')
    return found


def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--seconds', type=float, default=30.0)
    ap.add_argument('--unwinding', default='auto')
    ap.add_argument('--repo', default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args = ap.parse_args()
    sys.path.insert(0, args.repo)
    from datadog_checks.host_profiler.receiver.receiver import Receiver, ReceiverConfig
    from datadog_checks.host_profiler.runtime.telemetry import Telemetry

    tmp = tempfile.mkdtemp(prefix='hp-evlat-')
    src = os.path.join(tmp, 'busy.c')
    with open(src, 'w') as f:
        f.write(BUSY_C)
    busy = os.path.join(tmp, 'hp_busy')
    subprocess.run(['gcc', '-O1', '-o', busy, src], check=True)

    tel = Telemetry()
    rx = Receiver(ReceiverConfig(samples_per_second=99, drain_interval=0.25, check_interval=0,
                                 lock_path=os.path.join(tmp, 'hp.lock'), process_exit_ttl=600.0,
                                 unwinding=args.unwinding), telemetry=tel)
    # pid -> seconds from its first sample to: its metadata read (the event's registry.ensure),
    # the runtimes' first look at it (runtimes.observe)
    delays, observed, first_ts = {}, {}, {}
    orig_on_event, orig_ensure, orig_observe = rx._on_event, rx.registry.ensure, rx.runtimes.observe

    def on_event(ev):
        if ev.kind == 'sampled' and ev.pid not in first_ts:
            first_ts[ev.pid] = ev.ts_ns / 1e9
        orig_on_event(ev)

    def ensure(pid, check_start=False):
        out = orig_ensure(pid, check_start)
        if check_start and pid in first_ts and pid not in delays:
            delays[pid] = time.monotonic() - first_ts[pid]
        return out

    def observe(info):
        out = orig_observe(info)
        if info.pid in first_ts and info.pid not in observed:
            observed[info.pid] = time.monotonic() - first_ts[info.pid]
        return out

    rx._on_event, rx.registry.ensure, rx.runtimes.observe = on_event, ensure, observe
    drains = []
    orig_drain = rx._drain_once

    def drain_once(sampler):
        t0 = time.monotonic()
        orig_drain(sampler)
        drains.append(time.monotonic() - t0)

    rx._drain_once = drain_once
    rx.start()
    shorts, longs = [], []
    stop = threading.Event()

    def python_starter():
        exes = pythons()
        i = 0
        while not stop.is_set():
            longs.append(subprocess.Popen([exes[i % len(exes)], '-c', PY_BURN.format(s=3.0)]))
            i += 1
            stop.wait(1.5)

    th = threading.Thread(target=python_starter, daemon=True)
    try:
        time.sleep(1.0)
        th.start()
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            shorts.append(subprocess.Popen([busy, '0.05']))
            time.sleep(0.2)
        stop.set()
        for p in shorts + longs:
            p.wait(30)
        time.sleep(1.5)
    finally:
        rx.stop(block=True, timeout=30)
    got = 0
    short_delays, short_observed = [], []
    for p in shorts:
        if p.pid in observed:
            short_observed.append(observed[p.pid])
        info = rx.registry.get(p.pid)
        if info is not None and info.exe == busy and any('libc' in m.path for m in info.mappings):
            got += 1
        if p.pid in delays:
            short_delays.append(delays[p.pid])
    out = {
        'repo': args.repo,
        'unwinding': args.unwinding,
        'short_processes': len(shorts),
        'short_with_metadata': got,
        'short_first_sample_events': len(short_delays),
        'delay_ms_p50': round(1000 * (pct(short_delays, 0.5) or 0), 1),
        'delay_ms_p95': round(1000 * (pct(short_delays, 0.95) or 0), 1),
        'delay_ms_max': round(1000 * max(short_delays or [0]), 1),
        'observe_ms_p50': round(1000 * (pct(short_observed, 0.5) or 0), 1),
        'observe_ms_p95': round(1000 * (pct(short_observed, 0.95) or 0), 1),
        'all_first_samples': len(delays),
        'all_delay_ms_p95': round(1000 * (pct(list(delays.values()), 0.95) or 0), 1),
        'drains': len(drains),
        'drain_ms_p50': round(1000 * (pct(drains, 0.5) or 0), 1),
        'drain_ms_max': round(1000 * max(drains or [0]), 1),
        'gone_before_metadata': tel.totals().get('processes.gone_before_metadata', 0),
        'load_average': os.getloadavg()[0],
    }
    print(json.dumps(out))


if __name__ == '__main__':
    main()
