# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The memory budget of the profiler's file caches: ``receiver.symbolizer.memory_budget_mb``.

* ``ByteLRU``: an LRU whose capacity is a byte budget (each value has an ``nbytes``
  attribute). Thread-safe: one instance is shared by the symbolizer (the pipeline's thread)
  and the CFI tables (the receiver's thread), each through its own ``view(owner)``, so that
  their keys never collide and each counts its own bytes and evictions for its metrics
  (``symbols.cache.*``, ``unwind.cfi.cache.*``) while one budget bounds them together.
* ``memory_cache(budget_mb)``: the shared instance for the configured budget (unset: the
  spec's default).
* ``split_memory_budget``: the split used when the symbolizer and the CFI tables each keep
  their own cache (a component built without a shared one): the CFI tables get a quarter.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Dict, Optional, Tuple

DEFAULT_MEMORY_BUDGET_MB = 256  # receiver.symbolizer.memory_budget_mb's default (spec.yaml)
CFI_BUDGET_SHARE = 4  # the CFI tables get 1/4 of receiver.symbolizer.memory_budget_mb in dwarf/auto
MIN_CFI_BUDGET_MB = 8


def budget_bytes(budget_mb: Optional[int]) -> int:
    """``memory_budget_mb`` in bytes (unset: the default)."""
    return max(1, int(budget_mb or DEFAULT_MEMORY_BUDGET_MB)) << 20


def split_memory_budget(budget_mb: Optional[int], unwinding: str) -> Tuple[int, int]:
    """(symbolizer bytes, CFI tables bytes) out of ``memory_budget_mb`` (unset: the default): the
    CFI tables exist only in ``dwarf``/``auto`` unwinding, and take their share from the symbolizer's."""
    total = budget_bytes(budget_mb)
    if unwinding not in ('dwarf', 'auto'):
        return total, 0
    cfi = max(MIN_CFI_BUDGET_MB << 20, total // CFI_BUDGET_SHARE)
    return max(1 << 20, total - cfi), cfi


class ByteLRU:
    """An LRU whose capacity is a byte budget (each value has an ``nbytes`` attribute).

    ``get``/``put`` on the instance use keys as given; ``view(owner)`` gives the same
    operations on keys scoped to ``owner``, with that owner's bytes and evictions."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = int(budget_bytes)
        self._d: 'OrderedDict[Any, Tuple[Any, int, str]]' = OrderedDict()  # key -> (value, size, owner)
        self.bytes = 0
        self.evictions = 0
        self._owner_bytes: Dict[str, int] = {}
        self._owner_entries: Dict[str, int] = {}
        self._owner_evictions: Dict[str, int] = {}
        self._views: Dict[str, 'BudgetView'] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, key: Any) -> bool:
        return key in self._d

    def get(self, key: Any) -> Any:
        with self._lock:
            ent = self._d.get(key)
            if ent is None:
                return None
            self._d.move_to_end(key)
            return ent[0]

    def put(self, key: Any, value: Any, owner: str = '') -> bool:
        """Insert; returns False when the value alone exceeds the budget (not kept)."""
        size = int(getattr(value, 'nbytes', 64))
        with self._lock:
            self._drop(key)
            if size > self.budget:
                return False
            self._d[key] = (value, size, owner)
            self._add(owner, size, 1)
            while self.bytes > self.budget and self._d:
                _, (_, old_size, old_owner) = self._d.popitem(last=False)
                self._add(old_owner, -old_size, -1)
                self.evictions += 1
                self._owner_evictions[old_owner] = self._owner_evictions.get(old_owner, 0) + 1
            return True

    def resize(self, key: Any, value: Any) -> None:
        """Re-account an entry whose size changed (a perf map that grew)."""
        with self._lock:
            ent = self._d.get(key)
            if ent is not None:
                size = int(getattr(value, 'nbytes', 64))
                self._d[key] = (ent[0], size, ent[2])
                self._add(ent[2], size - ent[1], 0)

    def pop(self, key: Any) -> None:
        with self._lock:
            self._drop(key)

    def view(self, owner: str) -> 'BudgetView':
        """The operations of this cache on keys scoped to ``owner`` (one view per owner)."""
        with self._lock:
            v = self._views.get(owner)
            if v is None:
                v = self._views[owner] = BudgetView(self, owner)
            return v

    def owner_bytes(self, owner: str) -> int:
        return self._owner_bytes.get(owner, 0)

    def owner_entries(self, owner: str) -> int:
        return self._owner_entries.get(owner, 0)

    def owner_evictions(self, owner: str) -> int:
        return self._owner_evictions.get(owner, 0)

    # -- internals (lock held) ---------------------------------------------------------
    def _drop(self, key: Any) -> None:
        ent = self._d.pop(key, None)
        if ent is not None:
            self._add(ent[2], -ent[1], -1)

    def _add(self, owner: str, size: int, entries: int) -> None:
        self.bytes += size
        self._owner_bytes[owner] = self._owner_bytes.get(owner, 0) + size
        self._owner_entries[owner] = self._owner_entries.get(owner, 0) + entries


class BudgetView:
    """One owner's part of a shared ``ByteLRU``: the ``ByteLRU`` interface on keys scoped to the
    owner; ``bytes``/``evictions``/``len`` are the owner's, ``budget`` the shared one."""

    __slots__ = ('lru', 'owner')

    def __init__(self, lru: ByteLRU, owner: str) -> None:
        self.lru = lru
        self.owner = owner

    @property
    def budget(self) -> int:
        return self.lru.budget

    @property
    def bytes(self) -> int:
        return self.lru.owner_bytes(self.owner)

    @property
    def evictions(self) -> int:
        return self.lru.owner_evictions(self.owner)

    def __len__(self) -> int:
        return self.lru.owner_entries(self.owner)

    def usage(self) -> Tuple[int, int]:
        """``(bytes, evictions)`` of this owner in one call (for metrics flushed per call)."""
        lru = self.lru
        return lru._owner_bytes.get(self.owner, 0), lru._owner_evictions.get(self.owner, 0)

    def __contains__(self, key: Any) -> bool:
        return (self.owner, key) in self.lru

    def get(self, key: Any) -> Any:
        return self.lru.get((self.owner, key))

    def put(self, key: Any, value: Any) -> bool:
        return self.lru.put((self.owner, key), value, self.owner)

    def resize(self, key: Any, value: Any) -> None:
        self.lru.resize((self.owner, key), value)

    def pop(self, key: Any) -> None:
        self.lru.pop((self.owner, key))


def memory_cache(budget_mb: Optional[int] = None) -> ByteLRU:
    """The cache shared by the symbolizer and the CFI tables, bounded by ``memory_budget_mb``."""
    return ByteLRU(budget_bytes(budget_mb))
