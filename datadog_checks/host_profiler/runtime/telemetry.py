# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The one place every stage reports its own counters and gauges.

Stages (sampler, symbolizer, exporters, uploader...) call ``telemetry.count`` /
``telemetry.gauge`` from any thread. Each check run takes a ``snapshot()`` and submits
it, through the Agent (``AgentCheck.count``/``gauge``) or, standalone, as OTLP metrics.
Names are relative to the ``host_profiler.`` namespace and declared in metadata.csv.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Dict, Iterable, List, Tuple

COUNT = 'count'
GAUGE = 'gauge'

TagKey = Tuple[str, ...]


@dataclass(frozen=True)
class Metric:
    name: str
    type: str  # COUNT (delta since the previous snapshot) or GAUGE (last value)
    value: float
    tags: Tuple[str, ...] = ()


class Telemetry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Dict[Tuple[str, TagKey], float] = {}
        self._gauges: Dict[Tuple[str, TagKey], float] = {}
        self._totals: Dict[Tuple[str, TagKey], float] = {}  # lifetime totals, for diagnostics

    def count(self, name: str, value: float = 1, tags: Iterable[str] = ()) -> None:
        key = (name, tuple(sorted(tags)))
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + value
            self._totals[key] = self._totals.get(key, 0) + value

    def gauge(self, name: str, value: float, tags: Iterable[str] = ()) -> None:
        with self._lock:
            self._gauges[(name, tuple(sorted(tags)))] = value

    def declare(self, name: str, tags: Iterable[str] = ()) -> None:
        """Make a counter report 0 even before anything happened (so losses show as 0, not absent)."""
        self.count(name, 0, tags)

    def snapshot(self) -> List[Metric]:
        """Counts since the previous snapshot (then reset to 0, kept declared) and the last gauges."""
        with self._lock:
            out = [Metric(n, COUNT, v, t) for (n, t), v in self._counts.items()]
            out += [Metric(n, GAUGE, v, t) for (n, t), v in self._gauges.items()]
            self._counts = {k: 0 for k in self._counts}
        return out

    def totals(self) -> Dict[str, float]:
        """Lifetime totals of counters, keyed 'name{tag,tag}', for diagnostics and summaries."""
        with self._lock:
            return {n + ('{' + ','.join(t) + '}' if t else ''): v for (n, t), v in self._totals.items()}

    def total(self, name: str) -> float:
        with self._lock:
            return sum(v for (n, _), v in self._totals.items() if n == name)

    def gauges(self) -> Dict[str, float]:
        """Last value of every gauge, keyed 'name{tag,tag}' like totals(); does not reset anything."""
        with self._lock:
            return {n + ('{' + ','.join(t) + '}' if t else ''): v for (n, t), v in self._gauges.items()}

    def gauge_sum(self, name: str) -> float:
        """Sum of the last values of a gauge over all its tag sets (0 when never set)."""
        with self._lock:
            return sum(v for (n, _), v in self._gauges.items() if n == name)
