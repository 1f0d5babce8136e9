# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Function names of (stripped) Go binaries from the Go runtime's pc-line table.

No Python library reads Go's pclntab, so it is decoded here from Go's documented layout
(``runtime/symtab.go``, ``debug/gosym``). The header is::

    magic u32 | 0 | 0 | pc quantum u8 | pointer size u8 | words (pointer-sized)...

  ===========  ==========  ================================================================
  magic        Go          words after the 8-byte prefix; functab at
  ===========  ==========  ================================================================
  0xfffffffb   1.2-1.15    nfunc; functab follows: (pc uintptr, funcoff uintptr) * nfunc,
                           end pc; names and _func are relative to the table start
  0xfffffffa   1.16-1.17   nfunc, nfiles, funcnametab, cutab, filetab, pctab, pclntab;
                           functab at pclntab with uintptr fields
  0xfffffff0   1.18-1.19   nfunc, nfiles, textStart, funcnametab, cutab, filetab, pctab,
  0xfffffff1   1.20+       pclntab; functab at pclntab with u32 fields relative to textStart
  ===========  ==========  ================================================================

``_func`` starts with the entry (uintptr, or u32 text offset from 1.18) followed by
``nameoff`` (int32), an offset into the function-name table.

When section headers are gone, the table is found by scanning the file for one of the
magic numbers followed by a plausible header that parses (``find_pclntab``).
"""
from __future__ import annotations

import mmap
import struct
from typing import Any, BinaryIO, List, Optional, Tuple

from ..host.elf import ElfInfo
from .symtab import SymbolTable

MAX_PCLNTAB = 128 << 20  # as the Go host profiler
GO12, GO116, GO118, GO120 = '1.2', '1.16', '1.18', '1.20'
MAGICS = {0xFFFFFFFB: GO12, 0xFFFFFFFA: GO116, 0xFFFFFFF0: GO118, 0xFFFFFFF1: GO120}
MAX_FUNCS = 10_000_000


class PclntabError(ValueError):
    pass


def header_version(buf: Any, pos: int = 0) -> Optional[Tuple[str, str, int, int]]:
    """(version, byte-order prefix, quantum, ptrsize) if ``buf[pos:]`` starts with a pclntab header."""
    if len(buf) - pos < 16 or buf[pos + 4] != 0 or buf[pos + 5] != 0:
        return None
    quantum, ptrsize = buf[pos + 6], buf[pos + 7]
    if quantum not in (1, 2, 4) or ptrsize not in (4, 8):
        return None
    for order in ('<', '>'):
        magic = struct.unpack_from(order + 'I', buf, pos)[0]
        if magic in MAGICS:
            return MAGICS[magic], order, quantum, ptrsize
    return None


def parse_pclntab(buf: Any, pos: int = 0, end: Optional[int] = None, text_start: Optional[int] = None,
                  source: str = 'gopclntab') -> SymbolTable:
    """Decode the function table of the pclntab at ``buf[pos:end]``. Raises ``PclntabError``
    (or ``struct.error``) on malformed input. ``text_start`` overrides the 1.18+ header value
    (which may be unrelocated in position-independent binaries)."""
    if end is None:
        end = len(buf)
    hdr = header_version(buf, pos)
    if hdr is None:
        raise PclntabError('no pclntab header')
    version, order, _quantum, ptrsize = hdr
    size = end - pos
    word_fmt = order + ('Q' if ptrsize == 8 else 'I')

    def word(i: int) -> int:
        off = 8 + i * ptrsize
        if off + ptrsize > size:
            raise PclntabError('header truncated')
        return struct.unpack_from(word_fmt, buf, pos + off)[0]

    nfunc = word(0)
    if version == GO12:
        functab, field, funcdata, names_start, names_end, base_pc = 8 + ptrsize, ptrsize, 0, 0, size, 0
    elif version == GO116:
        names_start, names_end, functab = word(2), word(3), word(6)
        field, funcdata, base_pc = ptrsize, functab, 0
    else:
        base_pc = word(2) if text_start is None else text_start
        names_start, names_end, functab = word(3), word(4), word(7)
        field, funcdata = 4, functab
    if not 0 < nfunc <= MAX_FUNCS:
        raise PclntabError('bad function count')
    if not (0 <= names_start < size and functab < size):
        raise PclntabError('offsets out of range')
    if not names_start < names_end <= size:
        names_end = size
    table_bytes = (2 * nfunc + 1) * field
    if functab + table_bytes > size:
        raise PclntabError('functab truncated')

    ffmt = order + ('Q' if field == 8 else 'I')
    pair = order + ('QQ' if field == 8 else 'II')
    ab = functab + pos
    entries = list(struct.iter_unpack(pair, memoryview(buf)[ab:ab + 2 * nfunc * field]))
    end_pc = struct.unpack_from(ffmt, buf, ab + 2 * nfunc * field)[0]
    nameoff_at = 4 if field == 4 else ptrsize
    i32 = order + 'i'
    rows: List[Tuple[int, int, int]] = []
    prev = -1
    for idx, (pc, funcoff) in enumerate(entries):
        nxt = entries[idx + 1][0] if idx + 1 < nfunc else end_pc
        if pc < prev or nxt < pc:
            raise PclntabError('functab not sorted')
        prev = pc
        fo = funcdata + funcoff
        if fo + nameoff_at + 4 > size:
            raise PclntabError('_func out of range')
        nameoff = struct.unpack_from(i32, buf, pos + fo + nameoff_at)[0]
        name_pos = names_start + nameoff
        if nameoff < 0 or name_pos >= names_end:
            raise PclntabError('name out of range')
        if nxt > pc:
            rows.append((base_pc + pc, nxt - pc, name_pos - names_start))
    names = bytes(buf[pos + names_start:pos + names_end])
    return SymbolTable._build(rows, names, source, False)


def scan_pclntab(buf: Any, text_start: Optional[int] = None) -> Optional[SymbolTable]:
    """Find a pclntab anywhere in ``buf`` by its magic numbers; the first that parses wins."""
    hits: List[int] = []
    for magic in MAGICS:
        for order in ('<', '>'):
            pattern = struct.pack(order + 'I', magic) + b'\0\0'
            start = 0
            while len(hits) < 4096:
                i = buf.find(pattern, start)
                if i < 0:
                    break
                hits.append(i)
                start = i + 1
    for i in sorted(hits):
        if header_version(buf, i) is None:
            continue
        try:
            table = parse_pclntab(buf, i, None, text_start, 'gopclntab')
        except (PclntabError, struct.error, IndexError, OverflowError, ValueError):
            continue
        if len(table) >= 1:
            return table
    return None


def _text_start(info: ElfInfo) -> Optional[int]:
    text = info.sections.get('.text')
    if text is not None and text.addr:
        return text.addr
    for seg in info.loads:
        if seg.executable:
            return None  # trust the header value; PT_LOAD starts before runtime.text
    return None


def load_pclntab(stream: BinaryIO, info: ElfInfo, telemetry: Any = None, allow_scan: bool = True) -> Optional[SymbolTable]:
    """The Go function table of the ELF in ``stream`` (section, else signature scan), or None.
    Never raises; a malformed table counts ``symbols.bad_input{kind:pclntab}``."""
    text_start = _text_start(info)
    sec = info.sections.get('.gopclntab') or info.sections.get('.data.rel.ro.gopclntab')
    try:
        if sec is not None and not sec.nobits and 16 <= sec.size <= MAX_PCLNTAB:
            stream.seek(sec.offset)
            data = stream.read(sec.size)
            try:
                return parse_pclntab(data, 0, len(data), text_start)
            except (PclntabError, struct.error, IndexError, OverflowError, ValueError):
                if telemetry is not None:
                    telemetry.count('symbols.bad_input', 1, ('kind:pclntab',))
                return None
        if not allow_scan:
            return None
        try:
            fileno = stream.fileno()
        except (OSError, AttributeError, ValueError):
            fileno = -1
        if fileno >= 0:
            length = min(info.size, MAX_PCLNTAB * 2)
            if length <= 0:
                return None
            with mmap.mmap(fileno, length, prot=mmap.PROT_READ) as mm:
                table = scan_pclntab(mm, text_start)
        else:
            stream.seek(0)
            table = scan_pclntab(stream.read(MAX_PCLNTAB * 2), text_start)
        if table is None and info.is_go and telemetry is not None:
            telemetry.count('symbols.bad_input', 1, ('kind:pclntab',))
        return table
    except (OSError, ValueError, OverflowError):
        return None
