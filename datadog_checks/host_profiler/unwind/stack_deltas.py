# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Compact "stack delta" tables for the in-kernel unwinder (receiver/bpf/kernel_unwind.h).

A compiled ``CfiTable`` (unwind/cfi.py) becomes:

* rows of 8 bytes: ``(pc offset from the table's base, rule index)`` as two u32, sorted, with
  consecutive rows of the same rule merged (a lookup finds the same rule);
* indices into one ``RuleSet`` shared by every binary: 16-byte rules
  ``(cfa_kind u8, bp_kind u8, pad u16, cfa_off s32, ra_off s32, bp_off s32)``, the same tuple
  as cfi.py's ``Rule`` (CFA = rsp|rbp + off, the ``.plt`` expression, a signal frame, the
  return address and rbp save slots). Binaries share most rules: a few thousand cover a host.

The BPF program looks a pc up as the user-space unwinder does (``CfiTable.lookup``): the last row
at or below it; a row of ``CFA_NONE`` (a gap between FDEs) means no CFI there.
"""
from __future__ import annotations

import struct
from array import array
from typing import Dict, List, Tuple

from .cfi import CFA_NONE, CFA_UNSUPPORTED, NO_CFI, Rule

ROW_BYTES = 8
RULE = struct.Struct('<BBHiii')
RULE_BYTES = RULE.size  # 16
_S32 = (-(1 << 31), (1 << 31) - 1)


class RuleSetFull(Exception):
    """More distinct rules than the BPF rules map holds."""


def encode_rule(rule: Rule) -> bytes:
    cfa_kind, cfa_off, ra_off, bp_kind, bp_off = rule
    fits = all(_S32[0] <= v <= _S32[1] for v in (cfa_off, ra_off, bp_off))
    if not (0 <= cfa_kind < 256 and 0 <= bp_kind < 256 and fits):
        return RULE.pack(CFA_UNSUPPORTED, 0, 0, 0, 0, 0)
    return RULE.pack(cfa_kind, bp_kind, 0, cfa_off, ra_off, bp_off)


class RuleSet:
    """Rules interned across binaries; index 0 is "no CFI". ``pending`` lists the (index, bytes)
    not written to the map yet."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._index: Dict[bytes, int] = {}
        self.pending: List[Tuple[int, bytes]] = []
        self.intern(NO_CFI)

    def __len__(self) -> int:
        return len(self._index)

    def intern(self, rule: Rule) -> int:
        b = encode_rule(rule)
        i = self._index.get(b)
        if i is None:
            i = len(self._index)
            if i >= self.capacity:
                raise RuleSetFull('{} rules'.format(i))
            self._index[b] = i
            self.pending.append((i, b))
        return i

    def take_pending(self) -> List[Tuple[int, bytes]]:
        out, self.pending = self.pending, []
        return out


class StackDeltas:
    """One binary's rows: ``base`` (ELF vaddr of the first row) and ``rows`` (array('I'),
    pc offset and rule index interleaved)."""

    __slots__ = ('base', 'rows', 'rules_used')

    def __init__(self, base: int, rows: array, rules_used: int) -> None:
        self.base = base
        self.rows = rows
        self.rules_used = rules_used

    def __len__(self) -> int:
        return len(self.rows) // 2

    @property
    def nbytes(self) -> int:
        return len(self.rows) * 4

    def lookup(self, vaddr: int):
        """(pc offset, rule index) of the row for ``vaddr`` (what the BPF program finds), or None."""
        if not len(self) or vaddr < self.base:
            return None
        off = min(vaddr - self.base, 0xFFFFFFFF)
        lo, hi = 0, len(self)
        rows = self.rows
        while lo < hi:
            mid = (lo + hi) // 2
            if rows[2 * mid] <= off:
                lo = mid + 1
            else:
                hi = mid
        return (rows[2 * lo - 2], rows[2 * lo - 1]) if lo else None


def compile_deltas(table, rules: RuleSet) -> StackDeltas:
    """The rows of a compiled ``CfiTable`` (``starts``, ``rule_idx``, ``rules``), rules interned in
    ``rules``. Raises RuleSetFull."""
    starts = table.starts
    n = len(starts)
    if n == 0:
        return StackDeltas(0, array('I'), 0)
    local = [rules.intern(r) for r in table.rules]
    base = starts[0]
    ridx = table.rule_idx
    out = array('I')
    prev = -1
    limit = 0xFFFFFFFF
    for i in range(n):
        g = local[ridx[i]]
        if g == prev:
            continue
        off = starts[i] - base
        if off > limit:
            break  # an absurd table (4 GiB of code): its tail is left out
        out.append(off)
        out.append(g)
        prev = g
    used = len(set(local))
    return StackDeltas(base, out, used)


def rule_is_none(rule: Rule) -> bool:
    return rule[0] == CFA_NONE
