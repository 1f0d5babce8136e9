# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Workloads and measuring helpers shared by the benchmarks and the reliability tests.

C workloads (built with frame pointers, cached by source mtime under a build directory):
  spin.c          fixed-work loop; cumulative chunk count in a shared 8-byte file mapping
  split3.c        known 50/30/20 split between func_a/func_b/func_c
  stacks.c        PATHS distinct call paths of a given DEPTH
  spawner.c       N mostly-sleeping processes that burn briefly
  churn.c         TOTAL short-lived processes over SECONDS (optionally exec'ing)
  comm_flipper.c  changes its comm every millisecond
  mapbad.c        maps a corrupted ELF-looking file PROT_EXEC and spins in valid code
"""
from __future__ import annotations

import json
import os
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

CFLAGS = ('-O1', '-fno-omit-frame-pointer', '-mno-omit-leaf-frame-pointer', '-fno-inline')
CLK_TCK = os.sysconf('SC_CLK_TCK')
PAGE = os.sysconf('SC_PAGE_SIZE')
BUILD_DIR = os.environ.get('HP_BENCH_BUILD', os.path.join(tempfile.gettempdir(), 'hp-bench-build'))


def build(name: str, defines=(), out_name: Optional[str] = None) -> str:
    """Compile benchmarks/workloads/<name>.c (cached); returns the binary path."""
    src = os.path.join(HERE, name + '.c')
    os.makedirs(BUILD_DIR, exist_ok=True)
    tag = ''.join('_' + d.replace('=', '') for d in defines)
    out = os.path.join(BUILD_DIR, out_name or (name + tag))
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        cmd = ['gcc', *CFLAGS, *('-D' + d for d in defines), '-o', out + '.tmp', src]
        subprocess.run(cmd, check=True, capture_output=True)
        os.replace(out + '.tmp', out)
    return out


# ---------------------------------------------------------------- /proc measurements

def proc_cpu_seconds(pid: int, children: bool = True) -> float:
    """utime+stime (+ cutime+cstime of waited-for children) of pid, in seconds."""
    with open('/proc/{}/stat'.format(pid)) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    # fields[0] is state (field 3); utime=14, stime=15, cutime=16, cstime=17
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / float(CLK_TCK)


def tree_pids(pid: int) -> List[int]:
    """pid and its live descendants (from /proc/*/stat ppid)."""
    parent: Dict[int, List[int]] = {}
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/{}/stat'.format(d)) as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parent.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parent.get(p, ()))
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process tree: every live member's own time plus reaped children's."""
    total = 0.0
    for p in tree_pids(pid):
        try:
            total += proc_cpu_seconds(p, children=True)
        except (OSError, ValueError, IndexError):
            pass
    return total


def rss_mb(pid: int) -> float:
    with open('/proc/{}/statm'.format(pid)) as f:
        return int(f.read().split()[1]) * PAGE / 1e6


def hwm_mb(pid: int) -> float:
    with open('/proc/{}/status'.format(pid)) as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1e3
    return 0.0


def fd_count(pid: int = 0) -> int:
    return len(os.listdir('/proc/{}/fd'.format(pid or os.getpid())))


def bpf_prog_ids() -> List[int]:
    """Ids of every BPF program loaded on the host (bpftool prog show --json)."""
    out = subprocess.run(['bpftool', 'prog', 'show', '--json'], capture_output=True, text=True, check=True).stdout
    return sorted(p['id'] for p in json.loads(out or '[]'))


class SpinCounter:
    """Reads a spin.c counter file (cumulative chunks)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def value(self) -> int:
        try:
            with open(self.path, 'rb') as f:
                data = f.read(8)
            return struct.unpack('<Q', data)[0] if len(data) == 8 else 0
        except OSError:
            return 0


class RssSampler(threading.Thread):
    """Samples a pid's RSS every `period` s (peak and the whole series)."""

    def __init__(self, pid: int, period: float = 0.5) -> None:
        super().__init__(daemon=True, name='rss-sampler')
        self.pid, self.period = pid, period
        self.series: List[tuple] = []
        self._stop = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set():
            try:
                self.series.append((time.monotonic() - t0, rss_mb(self.pid)))
            except OSError:
                break
            self._stop.wait(self.period)

    def stop(self) -> None:
        self._stop.set()
        self.join(5)

    @property
    def peak(self) -> float:
        return max((v for _, v in self.series), default=0.0)


def slope_per_hour(series: List[tuple]) -> float:
    """Least-squares slope of (t seconds, value) pairs, per hour."""
    if len(series) < 2:
        return 0.0
    ts = [t for t, _ in series]
    vs = [v for _, v in series]
    mt, mv = statistics.fmean(ts), statistics.fmean(vs)
    den = sum((t - mt) ** 2 for t in ts)
    return 0.0 if den == 0 else sum((t - mt) * (v - mv) for t, v in zip(ts, vs)) / den * 3600


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float('nan')


def machine() -> Dict[str, str]:
    """The machine description written next to every result."""
    def read(path, default=''):
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            return default

    model = ''
    for line in read('/proc/cpuinfo').splitlines():
        if line.startswith('model name'):
            model = line.split(':', 1)[1].strip()
            break
    mem = re.search(r'MemTotal:\s+(\d+)', read('/proc/meminfo'))
    return {
        'nproc': str(os.cpu_count()),
        'cpu': model,
        'ram_gb': '{:.1f}'.format(int(mem.group(1)) / 1e6) if mem else '?',
        'kernel': os.uname().release,
        'debian': read('/etc/debian_version'),
        'python': sys.version.split()[0],
    }


def pipeline_instance(tmp: str, freq: int = 99, exporters: Optional[dict] = None, **receiver) -> dict:
    """A standalone instance for driving ProfilerPipeline / the check in-process."""
    rx = {'samples_per_second': freq, 'symbol_uploader': {'enabled': False}}
    rx.update(receiver)
    return {
        'mode': 'standalone',
        'min_collection_interval': 10,
        'lock_file': os.path.join(tmp, 'host_profiler.lock'),
        'diagnostics_dir': os.path.join(tmp, 'diag'),
        'receiver': rx,
        'exporters': exporters if exporters is not None else {},
    }


def make_pipeline(instance: dict, interval_s: float = 10.0):
    """ProfilerPipeline for an instance, normalised the way the check does (standalone)."""
    from datadog_checks.host_profiler.config.loader import build_config
    from datadog_checks.host_profiler.profiler_pipeline import ProfilerPipeline
    from datadog_checks.host_profiler.runtime.telemetry import Telemetry

    config = build_config(dict(instance), 'standalone')
    telemetry = Telemetry()
    return ProfilerPipeline(config, telemetry=telemetry, interval_s=interval_s,
                            hostname=lambda: 'bench-host'), telemetry


def close_pipeline(pipeline, timeout: float = 15.0) -> bool:
    """pipeline.close() is non-blocking; wait for the sampler thread to detach and exit
    (exiting the interpreter while it cleans up races with BCC's own atexit cleanup)."""
    receiver = pipeline.receiver
    pipeline.close()
    return receiver.join(timeout) if receiver is not None else True
