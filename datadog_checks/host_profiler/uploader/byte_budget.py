# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The uploads' memory budget: a byte semaphore worth 80% of the cgroup memory limit.

The cost of an upload is the size of the ELF it copies (objcopy maps and rewrites it). A cost
larger than the whole budget is clamped to it, so a huge file still goes through, alone.
``None`` capacity (no limit, ``max``) never blocks.
"""
from __future__ import annotations

import threading
from typing import Optional


class ByteSemaphore:
    def __init__(self, capacity: Optional[int]) -> None:
        self.capacity = capacity if capacity and capacity > 0 else None
        self._used = 0
        self._cond = threading.Condition()
        self.peak = 0

    @property
    def used(self) -> int:
        with self._cond:
            return self._used

    def acquire(self, cost: int, stop: Optional[threading.Event] = None, poll: float = 0.1) -> Optional[int]:
        """Block until ``cost`` bytes fit; returns the amount taken (pass it to ``release``),
        or None when ``stop`` was set while waiting."""
        cost = max(0, int(cost))
        if self.capacity is not None:
            cost = min(cost, self.capacity)
        with self._cond:
            while self.capacity is not None and self._used + cost > self.capacity:
                if stop is not None and stop.is_set():
                    return None
                self._cond.wait(poll)
            self._used += cost
            self.peak = max(self.peak, self._used)
            return cost

    def release(self, taken: int) -> None:
        with self._cond:
            self._used = max(0, self._used - taken)
            self._cond.notify_all()


def upload_budget_bytes(fraction: float = 0.8) -> Optional[int]:
    """80% of the cgroup memory limit (v1 ``memory.limit_in_bytes`` / v2 ``memory.max``), None
    when unlimited. As in the Go host profiler, the machine's RAM is not a limit here."""
    from ..runtime import cgroup

    try:
        return cgroup.budget_of(cgroup.memory_limit_bytes(), fraction)
    except Exception:
        return None
