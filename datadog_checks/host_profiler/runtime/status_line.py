# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""A compact one-line live status for ``host-profiler run``.

Reads lifetime totals and last gauges from the telemetry registry (never takes a snapshot,
so it does not steal counts from the metrics submission):

    host-profiler 00:01:05 | 412.3 samples/s | 153 procs | lost 0 | queue 1.2 MiB | errors 0 | cpu 1.4% | rss 84 MiB

``render(now)`` computes the sample rate from the totals' difference since the previous
``render``; ``write(stream)`` rewrites the line in place on a TTY (carriage return) and
prints a plain line otherwise. ``LogHandler`` prints log records on the same stream without
mixing them into the line: it erases the line, prints the record, and draws the line again.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Callable, Optional, Sequence, TextIO

from .telemetry import Telemetry

SAMPLES = 'sampler.samples'
LOST = 'sampler.lost'
PARTIAL = 'sampler.stacks.partial'
PROCESSES = ('processes.tracked', 'processes.active', 'processes.count', 'sampler.processes')
QUEUE_BYTES = ('export.queue.bytes', 'export.queue_bytes')
CPU = ('process.cpu.user', 'process.cpu.system')
RSS = 'process.rss'


def human_bytes(n: float) -> str:
    n = float(n)
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if abs(n) < 1024 or unit == 'GiB':
            return ('{:.0f} {}' if unit == 'B' else '{:.1f} {}').format(n, unit)
        n /= 1024
    return '{:.1f} GiB'.format(n)  # pragma: no cover


def _hms(seconds: float) -> str:
    s = int(max(0, seconds))
    return '{:02d}:{:02d}:{:02d}'.format(s // 3600, s // 60 % 60, s % 60)


class StatusLine:
    """``StatusLine(telemetry).render()`` -> one line. Names can be overridden for other layouts."""

    def __init__(
        self,
        telemetry: Telemetry,
        clock: Callable[[], float] = time.monotonic,
        processes_gauges: Sequence[str] = PROCESSES,
        queue_gauges: Sequence[str] = QUEUE_BYTES,
    ) -> None:
        self._t = telemetry
        self._clock = clock
        self._start = clock()
        self._prev_time: Optional[float] = None
        self._prev_samples = 0.0
        self._processes = tuple(processes_gauges)
        self._queue = tuple(queue_gauges)
        self._last_len = 0
        self._shown: Optional[TextIO] = None  # the TTY the line is on, while it is on screen
        self._line = ''
        # one lock for the line and the log records written beside it (other threads log)
        self.lock = threading.RLock()

    def _first_gauge(self, names: Sequence[str]) -> Optional[float]:
        gauges = self._t.gauges()
        for name in names:
            if any(k == name or k.startswith(name + '{') for k in gauges):
                return self._t.gauge_sum(name)
        return None

    def errors(self) -> float:
        return sum(v for k, v in self._t.totals().items() if k.split('{', 1)[0].endswith('errors'))

    def render(self, now: Optional[float] = None) -> str:
        now = self._clock() if now is None else now
        samples = self._t.total(SAMPLES)
        if self._prev_time is None:
            elapsed, delta = now - self._start, samples
        else:
            elapsed, delta = now - self._prev_time, samples - self._prev_samples
        self._prev_time, self._prev_samples = now, samples
        rate = delta / elapsed if elapsed > 0 else 0.0

        parts = ['host-profiler {}'.format(_hms(now - self._start)), '{:.1f} samples/s'.format(rate)]
        procs = self._first_gauge(self._processes)
        parts.append('{} procs'.format(int(procs)) if procs is not None else '- procs')
        parts.append('lost {}'.format(int(self._t.total(LOST))))
        parts.append('partial {}'.format(int(self._t.total(PARTIAL))))
        queue = self._first_gauge(self._queue)
        parts.append('queue {}'.format(human_bytes(queue) if queue is not None else '-'))
        parts.append('errors {}'.format(int(self.errors())))
        cpu = [self._first_gauge((n,)) for n in CPU]
        if any(c is not None for c in cpu):
            parts.append('cpu {:.1f}%'.format(100.0 * sum(c or 0.0 for c in cpu)))
        rss = self._first_gauge((RSS,))
        if rss is not None:
            parts.append('rss {}'.format(human_bytes(rss)))
        return ' | '.join(parts)

    def write(self, stream: Optional[TextIO] = None, now: Optional[float] = None) -> str:
        stream = stream or sys.stderr
        line = self.render(now)
        with self.lock:
            try:
                if stream.isatty():
                    pad = max(0, self._last_len - len(line))
                    stream.write('\r' + line + ' ' * pad)
                    self._shown, self._line = stream, line
                else:
                    stream.write(line + '\n')
                stream.flush()
            except (OSError, ValueError):
                pass
            self._last_len = len(line)
        return line

    def erase(self) -> Optional[TextIO]:
        """Clear the line from the terminal (before something else is printed); returns the
        stream it was on, None when it was not shown."""
        with self.lock:
            stream, self._shown = self._shown, None
            if stream is not None:
                try:
                    stream.write('\r' + ' ' * self._last_len + '\r')
                except (OSError, ValueError):
                    pass
            return stream

    def redraw(self, stream: TextIO) -> None:
        with self.lock:
            try:
                stream.write(self._line)
                stream.flush()
            except (OSError, ValueError):
                return
            self._shown = stream

    def finish(self) -> None:
        """End the line (a newline), so that what is printed next starts on its own line."""
        with self.lock:
            stream, self._shown = self._shown, None
            if stream is not None:
                try:
                    stream.write('\n')
                    stream.flush()
                except (OSError, ValueError):
                    pass


class LogHandler(logging.StreamHandler):
    """The command's only log handler: records go to ``stream`` one per line, never into the
    middle of the live status line (``status_line``, set while one is shown)."""

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        super().__init__(stream or sys.stderr)
        self.status_line: Optional[StatusLine] = None

    def emit(self, record: logging.LogRecord) -> None:
        status = self.status_line
        if status is None:
            super().emit(record)
            return
        with status.lock:
            shown = status.erase()
            super().emit(record)
            if shown is not None:
                status.redraw(shown)
