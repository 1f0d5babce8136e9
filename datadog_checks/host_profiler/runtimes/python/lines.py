# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Line number of an instruction from a code object's line table, per format. Pure.

Formats: ``co_lnotab`` (<= 3.9, CPython's Objects/lnotab_notes.txt), the 3.10 ``co_linetable``
(same file on the 3.10 branch) and the 3.11+ location table (Objects/locations.md). CPython does
this in C only (no library exposes it for another process's memory), hence these few lines.
Every function returns 0 when the position has no line.
"""
from __future__ import annotations

from typing import Tuple


def line_lnotab(table: bytes, firstlineno: int, lasti: int) -> int:
    """<= 3.9: (byte delta, signed line delta) pairs; ``lasti`` in bytes."""
    line, addr = firstlineno, 0
    for i in range(0, len(table) - 1, 2):
        addr += table[i]
        if addr > lasti:
            break
        delta = table[i + 1]
        line += delta - 256 if delta >= 128 else delta
    return line


def line_310(table: bytes, firstlineno: int, offset: int) -> int:
    """3.10: (byte length, signed line delta) pairs, -128 meaning no line; ``offset`` in bytes."""
    line, start = firstlineno, 0
    for i in range(0, len(table) - 1, 2):
        end = start + table[i]
        delta = table[i + 1]
        delta = delta - 256 if delta >= 128 else delta
        if delta != -128:
            line += delta
        if start <= offset < end:
            return line if delta != -128 else 0
        start = end
    return 0


def _varint(table: bytes, i: int) -> Tuple[int, int]:
    value = shift = 0
    while i < len(table):
        b = table[i]
        i += 1
        value |= (b & 63) << shift
        shift += 6
        if not b & 64:
            break
    return value, i


def _svarint(table: bytes, i: int) -> Tuple[int, int]:
    v, i = _varint(table, i)
    return (-(v >> 1) if v & 1 else v >> 1), i


def line_311(table: bytes, firstlineno: int, index: int) -> int:
    """3.11+: location entries; ``index`` in code units from the start of the bytecode."""
    line, addr, i = firstlineno, 0, 0
    n = len(table)
    while i < n:
        b = table[i]
        i += 1
        code, length = (b >> 3) & 15, (b & 7) + 1
        delta = 0
        if code == 15:
            delta = None
        elif code == 14:
            delta, i = _svarint(table, i)
            for _ in range(3):
                _, i = _varint(table, i)
        elif code == 13:
            delta, i = _svarint(table, i)
        elif code >= 10:
            delta = code - 10
            i += 2
        else:
            i += 1
        if delta is not None:
            line += delta
        if addr <= index < addr + length:
            return line if delta is not None else 0
        addr += length
    return 0
