# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Whole walks of one process, remembered by ``(ip, sp, bp, copy length)``.

A hot loop's samples repeat the same registers and the same saved words above them, and
walking them again is most of the unwinder's per-sample cost. A remembered walk is reused only
when the stack words it read hold the same values: every decision of ``unwind_ex`` depends only
on the registers, those words, the CFI rules of the pcs met (fixed while the process's mappings
are, which is this memo's lifetime) and the copy's length, so a hit returns exactly what a walk
would. Checking the words is one C-level gather (``itemgetter`` over the copy viewed as u64s).

Walks that met a table not compiled yet are not remembered (they may end differently once it
is). A process whose walks rarely repeat stops being remembered after ``TRIAL`` lookups with
fewer than one hit in ``MIN_HIT_RATIO``: recording costs a little on every miss. Entries are
bounded per process and in total.
"""
from __future__ import annotations

import struct
from operator import itemgetter
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

_U64 = struct.Struct('<Q').unpack_from

MAX_ENTRIES = 512  # per process
MAX_TOTAL = 65536  # every process together (about 20 MB at most)
TRIAL = 512
MIN_HIT_RATIO = 0.25


class WalkMemo:
    total = 0  # entries of every memo (bounded by MAX_TOTAL)

    __slots__ = ('_walks', 'hits', 'misses', 'enabled')

    def __init__(self) -> None:
        self._walks: Dict[Tuple[int, int, int, int], Tuple[Any, Any, Tuple[int, ...], str]] = {}
        self.hits = 0
        self.misses = 0
        self.enabled = True

    def __len__(self) -> int:
        return len(self._walks)

    def get(self, regs: Sequence[int], stack: Any) -> Optional[Tuple[Tuple[int, ...], str]]:
        """``(addresses, result)`` of a remembered walk valid for this copy, else None."""
        if not self.enabled:
            return None
        hit = self._walks.get((regs[0], regs[1], regs[2], len(stack)))
        if hit is not None:
            getter, values, addresses, result = hit
            if getter is None or getter(memoryview(stack).cast('Q')) == values:
                self.hits += 1
                return addresses, result
        self.misses += 1
        if self.misses >= TRIAL and self.hits < MIN_HIT_RATIO * (self.hits + self.misses):
            self.enabled = False  # walks of this process rarely repeat
            self.clear()
        return None

    def recorder(self) -> Tuple[List[int], Callable[[Any, int], Tuple[int]]]:
        """``(offsets, read)``: a ``read`` for ``unwind_ex`` that notes every offset it reads."""
        offsets: List[int] = []
        append = offsets.append

        def read(stack: Any, offset: int) -> Tuple[int]:
            append(offset)
            return _U64(stack, offset)

        return offsets, read

    def put(self, regs: Sequence[int], stack: Any, offsets: List[int], addresses: Sequence[int], result: str) -> None:
        if not self.enabled or len(stack) & 7 or any(o & 7 for o in offsets):
            return  # words not aligned in the copy: nothing to gather (never seen on x86-64)
        if len(self._walks) >= MAX_ENTRIES:
            self.clear()
        if WalkMemo.total >= MAX_TOTAL:
            return
        getter = itemgetter(*[o >> 3 for o in offsets]) if offsets else None
        values = getter(memoryview(stack).cast('Q')) if getter is not None else None
        key = (regs[0], regs[1], regs[2], len(stack))
        if key not in self._walks:
            WalkMemo.total += 1
        self._walks[key] = (getter, values, tuple(addresses), result)

    def clear(self) -> None:
        WalkMemo.total -= len(self._walks)
        self._walks = {}

    def __del__(self) -> None:
        WalkMemo.total -= len(self._walks)
