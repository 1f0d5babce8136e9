# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The profiler's own cost: CPU, memory, threads, fds and Python GC of this process.

``ProcessMetrics(telemetry).collect()`` is called once per check run (or per status
refresh standalone) and writes into the shared ``Telemetry`` registry:

- ``process.cpu.user`` / ``process.cpu.system`` (gauge): CPU seconds per second since the
  previous ``collect()`` (1.0 = one full core). The first call reports the average since
  the process started.
- ``process.rss`` (gauge, bytes), ``process.threads`` (gauge), ``process.open_fds`` (gauge).
- ``python.gc.collections`` (count, tag ``generation:0|1|2``): collections since the
  previous call.
- ``python.gc.pause`` (count, seconds): total time spent inside the collector since the
  previous call, measured with ``gc.callbacks`` start/stop events.
"""
from __future__ import annotations

import gc
import os
import threading
import time
from typing import Callable, Dict, List, Optional

from .telemetry import Telemetry

try:  # psutil is a dependency of datadog_checks.base[deps]; keep a /proc fallback all the same
    import psutil
except ImportError:  # pragma: no cover
    psutil = None  # type: ignore[assignment]

GC_GENERATIONS = (0, 1, 2)


class _GcPauseTimer:
    """Accumulates time spent in the garbage collector, from ``gc.callbacks``.

    The callback runs in whichever thread triggered the collection, with the GIL held, so
    the per-thread start time lives in a thread-local and the total is a plain float.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._local = threading.local()
        self.total_seconds = 0.0
        self.installed = False

    def __call__(self, phase: str, info: Dict[str, int]) -> None:
        try:
            if phase == 'start':
                self._local.start = self._clock()
            elif phase == 'stop':
                start = getattr(self._local, 'start', None)
                if start is not None:
                    self.total_seconds += max(0.0, self._clock() - start)
                    self._local.start = None
        except Exception:  # a gc callback must never raise
            pass

    def install(self) -> None:
        if not self.installed:
            gc.callbacks.append(self)
            self.installed = True

    def uninstall(self) -> None:
        if self.installed:
            try:
                gc.callbacks.remove(self)
            except ValueError:
                pass
            self.installed = False


class ProcessMetrics:
    """Collects the profiler process's own resource usage into a ``Telemetry``.

    ``pid`` defaults to this process; ``measure_gc_pause=False`` skips installing the
    ``gc.callbacks`` hook (then ``python.gc.pause`` is not reported).
    """

    def __init__(
        self,
        telemetry: Telemetry,
        pid: Optional[int] = None,
        measure_gc_pause: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._telemetry = telemetry
        self._pid = pid if pid is not None else os.getpid()
        self._clock = clock
        self._process = psutil.Process(self._pid) if psutil is not None else None
        self._prev_cpu: Optional[tuple] = None  # (monotonic time, user, system)
        self._prev_gc = self._gc_collections()
        self._gc_timer = _GcPauseTimer()
        self._prev_gc_pause = 0.0
        if measure_gc_pause:
            self._gc_timer.install()
        for gen in GC_GENERATIONS:
            telemetry.declare('python.gc.collections', tags=['generation:{}'.format(gen)])
        if measure_gc_pause:
            telemetry.declare('python.gc.pause')

    # -- public -----------------------------------------------------------------------------

    def collect(self) -> None:
        """Reads the current values and puts them into the telemetry registry. Never raises."""
        t = self._telemetry
        try:
            self._collect_cpu()
        except Exception:
            pass
        try:
            rss, threads, fds = self._memory_threads_fds()
            if rss is not None:
                t.gauge('process.rss', rss)
            if threads is not None:
                t.gauge('process.threads', threads)
            if fds is not None:
                t.gauge('process.open_fds', fds)
        except Exception:
            pass
        self._collect_gc()

    def close(self) -> None:
        """Removes the gc callback. Safe to call twice."""
        self._gc_timer.uninstall()

    def __del__(self) -> None:  # an instance dropped without close() must not leave its gc hook behind
        try:
            self._gc_timer.uninstall()
        except Exception:
            pass

    # -- internals --------------------------------------------------------------------------

    def _cpu_times(self) -> tuple:
        if self._process is not None:
            ct = self._process.cpu_times()
            return ct.user, ct.system
        if self._pid == os.getpid():  # pragma: no cover - psutil missing
            ts = os.times()
            return ts.user, ts.system
        raise RuntimeError('psutil is required for another pid')  # pragma: no cover

    def _collect_cpu(self) -> None:
        user, system = self._cpu_times()
        now = self._clock()
        if self._prev_cpu is None:
            # First call: average since the process started.
            try:
                started = self._process.create_time() if self._process is not None else None
                elapsed = time.time() - started if started else None
            except Exception:
                elapsed = None
            prev_user = prev_system = 0.0
        else:
            prev_t, prev_user, prev_system = self._prev_cpu
            elapsed = now - prev_t
        self._prev_cpu = (now, user, system)
        if not elapsed or elapsed <= 0:
            return
        self._telemetry.gauge('process.cpu.user', max(0.0, (user - prev_user) / elapsed))
        self._telemetry.gauge('process.cpu.system', max(0.0, (system - prev_system) / elapsed))

    def _memory_threads_fds(self) -> tuple:
        if self._process is not None:
            with self._process.oneshot():
                rss = self._process.memory_info().rss
                threads = self._process.num_threads()
                try:
                    fds = self._process.num_fds()
                except (AttributeError, Exception):
                    fds = _count_fds(self._pid)
            return rss, threads, fds
        return None, None, _count_fds(self._pid)  # pragma: no cover

    @staticmethod
    def _gc_collections() -> List[int]:
        stats = gc.get_stats()
        return [int(stats[g].get('collections', 0)) if g < len(stats) else 0 for g in GC_GENERATIONS]

    def _collect_gc(self) -> None:
        try:
            current = self._gc_collections()
            for gen, (now_n, prev_n) in enumerate(zip(current, self._prev_gc)):
                delta = now_n - prev_n
                if delta > 0:
                    self._telemetry.count('python.gc.collections', delta, tags=['generation:{}'.format(gen)])
            self._prev_gc = current
            if self._gc_timer.installed:
                total = self._gc_timer.total_seconds
                delta_s = total - self._prev_gc_pause
                self._prev_gc_pause = total
                if delta_s > 0:
                    self._telemetry.count('python.gc.pause', delta_s)
        except Exception:
            pass


def _count_fds(pid: int) -> Optional[int]:
    try:
        return len(os.listdir('/proc/{}/fd'.format(pid)))
    except OSError:
        return None
