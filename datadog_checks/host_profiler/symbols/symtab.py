# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""A compact, sorted address -> name table, and its loader from ELF `.symtab`/`.dynsym`.

Memory: three ``array`` columns (start, end, name offset) and one ``bytes`` blob of
NUL-terminated names; a name becomes a ``str`` only when it is looked up (with a small
per-table cache). Lookup is ``bisect`` over the start column.

Why the symbol tables are read by hand rather than with pyelftools' ``iter_symbols``:
pyelftools builds a construct container per symbol (tens of microseconds each), which
puts a 100 MB library with hundreds of thousands of symbols far above the 2 s cold-load
budget. An ELF symbol is a fixed 16/24-byte record, so ``struct.iter_unpack`` over the
section bytes (located with pyelftools) does the same job in C.
"""
from __future__ import annotations

import struct
from array import array
from bisect import bisect_right
from typing import Any, BinaryIO, Dict, Iterable, List, Optional, Sequence, Tuple

from ..host.elf import ElfInfo, Section
from .names import clean_name, normalize_mode

STT_FUNC = 2
STT_GNU_IFUNC = 10
SHN_UNDEF = 0
MAX_SYMBOL_SECTION = 1 << 30  # refuse absurd sizes from corrupted headers
NAME_CACHE_MAX = 8192
ZERO_SIZE_MAX_SPAN = 1 << 20
_PRIO = {1: 2, 2: 1}  # STB_GLOBAL, STB_WEAK over STB_LOCAL (0) and the rest  # a sizeless symbol covers up to the next one, at most this far

# ---------------------------------------------------------------------------------------
class SymbolTable:
    """Sorted, non-overlapping lookup table. ``lookup(addr)`` returns a name or ``None``."""

    __slots__ = ('starts', 'ends', 'name_offs', 'names', 'source', 'demangle', '_cache', '_lock')

    def __init__(self, starts: array, ends: array, name_offs: array, names: bytes, source: str = '',
                 demangle_names: Any = True) -> None:
        self.starts = starts
        self.ends = ends
        self.name_offs = name_offs
        self.names = names
        self.source = source
        # a demangle mode (names.DEMANGLE_MODES), or '' to keep names exactly as stored (kallsyms)
        self.demangle = normalize_mode(demangle_names) if demangle_names is not False else ''
        self._cache: Dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def nbytes(self) -> int:
        """Estimated memory held by this table."""
        return (
            200
            + len(self.starts) * self.starts.itemsize
            + len(self.ends) * self.ends.itemsize
            + len(self.name_offs) * self.name_offs.itemsize
            + len(self.names)
            + min(len(self.starts), NAME_CACHE_MAX) * 120  # the decoded-name cache, at its worst
        )

    def index(self, addr: int) -> int:
        i = bisect_right(self.starts, addr) - 1
        if i < 0 or addr >= self.ends[i]:
            return -1
        return i

    def name_at(self, i: int) -> str:
        cache = self._cache
        name = cache.get(i)
        if name is None:
            off = self.name_offs[i]
            end = self.names.find(b'\0', off)
            if end < 0:
                end = len(self.names)
            name = self.names[off:end].decode('utf-8', 'replace')
            if self.demangle:
                name = clean_name(name, self.demangle)
            if len(cache) >= NAME_CACHE_MAX:
                cache.clear()
            cache[i] = name
        return name

    def lookup(self, addr: int) -> Optional[str]:
        i = bisect_right(self.starts, addr) - 1
        if i < 0 or addr >= self.ends[i]:
            return None
        name = self._cache.get(i)
        if name is None:
            name = self.name_at(i)
        return name

    def symbol(self, addr: int) -> Optional[Tuple[str, int, int]]:
        """(name, start, end) of the symbol covering ``addr``."""
        i = self.index(addr)
        if i < 0:
            return None
        return self.name_at(i), self.starts[i], self.ends[i]

    @classmethod
    def from_entries(cls, entries: Iterable[Tuple[int, int, bytes]], source: str = '',
                     demangle_names: Any = False, span_zero_sized: bool = True) -> 'SymbolTable':
        """Build from (start, size, name) rows; later duplicates of a start are ignored.
        Size 0 means "up to the next symbol"."""
        blob = bytearray()
        rows: List[Tuple[int, int, int]] = []
        for start, size, name in entries:
            rows.append((start, size, len(blob)))
            blob += name
            blob += b'\0'
        return cls._build(rows, bytes(blob), source, demangle_names, span_zero_sized)

    @classmethod
    def _build(cls, rows: List[Tuple[int, ...]], blob: bytes, source: str, demangle_names: Any,
               span_zero_sized: bool = True) -> 'SymbolTable':
        """``rows`` are (start, size, name offset[, priority]). On equal starts the row with the
        highest priority wins (global over weak over local symbols), then a sized one, then
        the first given."""
        rows.sort(key=lambda r: r[0])
        starts = array('Q')
        ends = array('Q')
        offs = array('Q' if len(blob) >= 1 << 32 else 'I')
        prios: List[int] = []
        prev_start = -1
        for row in rows:
            start, size, off = row[0], row[1], row[2]
            prio = row[3] if len(row) > 3 else 0
            if start == prev_start:
                if prio > prios[-1] or (prio == prios[-1] and size and ends[-1] == 0):
                    ends[-1] = start + size if size else ends[-1]
                    offs[-1] = off
                    prios[-1] = prio
                elif size and ends[-1] == 0:
                    ends[-1] = start + size
                continue
            prev_start = start
            starts.append(start)
            ends.append(start + size if size else 0)
            offs.append(off)
            prios.append(prio)
        del prios
        # Sizeless symbols extend to the next start; sized ones are clipped to it (no overlap).
        m = len(starts)
        for i in range(m):
            nxt = starts[i + 1] if i + 1 < m else None
            end = ends[i]
            if end == 0:
                if not span_zero_sized:
                    end = starts[i] + 1
                elif nxt is not None:
                    end = min(nxt, starts[i] + ZERO_SIZE_MAX_SPAN)
                else:
                    end = starts[i] + 4096
            elif nxt is not None and end > nxt:
                end = nxt
            if end > 0xFFFFFFFFFFFFFFFF:
                end = 0xFFFFFFFFFFFFFFFF
            ends[i] = end
        return cls(starts, ends, offs, blob, source, demangle_names)


EMPTY = SymbolTable(array('Q'), array('Q'), array('I'), b'', 'none')


class ChainTable:
    """Several tables looked up in order (e.g. ELF symbols, then Go pclntab)."""

    __slots__ = ('tables', 'source')

    def __init__(self, tables: Sequence[Any]) -> None:
        self.tables = [t for t in tables if t is not None and len(t)]
        self.source = '+'.join(t.source for t in self.tables) or 'none'

    def __len__(self) -> int:
        return sum(len(t) for t in self.tables)

    @property
    def nbytes(self) -> int:
        return 100 + sum(t.nbytes for t in self.tables)

    def lookup(self, addr: int) -> Optional[str]:
        for t in self.tables:
            name = t.lookup(addr)
            if name is not None:
                return name
        return None


# ---------------------------------------------------------------------------------------
def _read(stream: BinaryIO, offset: int, size: int) -> bytes:
    stream.seek(offset)
    data = stream.read(size)
    if len(data) != size:
        raise ValueError('truncated section')
    return data


def _symbol_rows(info: ElfInfo, sec: Section, data: bytes, name_base: int, rows: List[Tuple[int, ...]],
                 strtab_size: int) -> None:
    le = '<' if info.little_endian else '>'
    if info.elfclass == 64:
        fmt, entsize = le + 'IBBHQQ', 24
    else:
        fmt, entsize = le + 'IIIBBH', 16
    usable = len(data) - len(data) % entsize
    if usable <= 0:
        return
    funcs = (STT_FUNC, STT_GNU_IFUNC)
    thumb = info.machine == 'EM_ARM'
    bad = 0  # names outside the string table: never in a valid file
    if info.elfclass == 64:
        for name, st_info, _other, shndx, value, size in struct.iter_unpack(fmt, memoryview(data)[:usable]):
            if name >= strtab_size:
                bad += 1
            elif (st_info & 0xF) in funcs and shndx != SHN_UNDEF and value:
                rows.append((value, size, name + name_base, _PRIO.get(st_info >> 4, 0)))
    else:
        for name, value, size, st_info, _other, shndx in struct.iter_unpack(fmt, memoryview(data)[:usable]):
            if name >= strtab_size:
                bad += 1
            elif (st_info & 0xF) in funcs and shndx != SHN_UNDEF and value:
                if thumb:
                    value &= ~1
                rows.append((value, size, name + name_base, _PRIO.get(st_info >> 4, 0)))
    if bad:
        raise ValueError('{} symbols of {} name strings outside their string table'.format(bad, sec.name))


def load_symbols(stream: BinaryIO, info: ElfInfo, sections: Sequence[str] = ('.symtab', '.dynsym'),
                 demangle_names: Any = True, source: str = '') -> SymbolTable:
    """FUNC/IFUNC symbols of the named symbol sections of the ELF in ``stream``, merged
    (earlier sections win on equal addresses). Raises on malformed input."""
    rows: List[Tuple[int, ...]] = []
    blob = bytearray()
    used = []
    for sec_name in sections:
        sec = info.sections.get(sec_name)
        if sec is None or sec.nobits or sec.size == 0:
            continue
        strsec = info.linked(sec)
        if strsec is None or strsec.nobits:
            continue
        if sec.size > MAX_SYMBOL_SECTION or strsec.size > MAX_SYMBOL_SECTION:
            raise ValueError('symbol section too large')
        data = _read(stream, sec.offset, sec.size)
        strtab = _read(stream, strsec.offset, strsec.size)
        if strtab and strtab[-1] != 0:
            raise ValueError('string table of {} is not NUL-terminated'.format(sec_name))
        base = len(blob)
        blob += strtab
        blob += b'\0'
        _symbol_rows(info, sec, data, base, rows, len(strtab))
        used.append(sec_name)
    if not source:
        source = 'symtab' if '.symtab' in used else ('dynsym' if used else 'none')
    return SymbolTable._build(rows, bytes(blob), source, demangle_names)
