# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""CFI tables: the compiled ``CfiTable`` (sorted rows → interned rules), the ``LazyCfiTable``
over ``.eh_frame_hdr`` and the entry points ``build_cfi_table``/``compile_cfi`` (see
``unwind/cfi.py``). The ELF headers come from ``host.elf`` (the package's one ELF reader);
``ElfSections`` is the compact view of them that the table builders use.
"""
from __future__ import annotations

import io
import mmap
import os
import struct
import sys
from array import array
from bisect import bisect_right
from typing import Any, BinaryIO, Dict, List, Optional, Sequence, Tuple

from ..host.elf import ELF_MAGIC, EM_X86_64, PT_GNU_EH_FRAME, ElfInfo, TooManySectionsError, parse_elf
from .cfi_decoder import (
    CFA_NONE, MAX_SECTION, NO_CFI, CfiError, Rule, _U64, _U32, _cie_at, _read_encoded, _run, _uleb,
    parse_frame_section, record_extent,
)


class TooManySections(CfiError):
    """More section headers than ``host.files.MAX_SECTIONS`` (refused, not decoded)."""

class CfiTable:
    """Sorted rows ``starts[i]`` → ``rules[rule_idx[i]]``, valid until ``starts[i+1]``."""

    __slots__ = ('starts', 'rule_idx', 'rules', 'nbytes', 'source', 'fdes', 'bad_fdes', '__weakref__')

    def __init__(self, starts: array, rule_idx: array, rules: List[Rule], source: str = '', fdes: int = 0,
                 bad_fdes: int = 0) -> None:
        self.starts = starts
        self.rule_idx = rule_idx
        self.rules = rules
        self.source = source
        self.fdes = fdes
        self.bad_fdes = bad_fdes
        self.nbytes = 200 + starts.itemsize * len(starts) + rule_idx.itemsize * len(rule_idx) + 120 * len(rules)

    def __len__(self) -> int:
        return len(self.starts)

    def lookup(self, vaddr: int) -> Optional[Rule]:
        """The rule for ELF virtual address ``vaddr``; ``None`` where no FDE covers it."""
        i = bisect_right(self.starts, vaddr) - 1
        if i < 0:
            return None
        rule = self.rules[self.rule_idx[i]]
        return None if rule[0] == CFA_NONE else rule

    def rows(self) -> List[Tuple[int, Rule]]:
        return [(self.starts[i], self.rules[self.rule_idx[i]]) for i in range(len(self.starts))]


EMPTY_TABLE = CfiTable(array('Q'), array('H'), [NO_CFI], 'none')

def merge_fdes(groups: Sequence[List[Tuple[int, int, List[Tuple[int, Rule]]]]], source: str = '',
               bad: int = 0) -> CfiTable:
    """One sorted table from FDE lists in priority order (an earlier group wins overlaps)."""
    allf = []
    for prio, group in enumerate(groups):
        for pc_begin, pc_end, rows in group:
            allf.append((pc_begin, prio, pc_end, rows))
    allf.sort(key=lambda x: (x[0], x[1]))
    starts = array('Q')
    idx: List[int] = []
    rules: List[Rule] = [NO_CFI]
    rule_ids: Dict[Rule, int] = {NO_CFI: 0}
    covered_end = 0
    last_rule = -1
    n = len(allf)
    for k in range(n):
        pc_begin, prio, pc_end, rows = allf[k]
        if pc_begin < covered_end:
            continue  # overlaps an FDE already placed (same or higher priority)
        if not 0 <= pc_begin < pc_end <= 0xFFFFFFFFFFFFFFFF:
            continue  # a corrupted FDE: its range is outside the 64-bit address space
        limit = pc_end
        # the next FDE that starts inside this one cuts it (only if it has higher priority)
        j = k + 1
        while j < n and allf[j][0] < pc_end:
            if allf[j][1] < prio:
                limit = allf[j][0]
                break
            j += 1
        for loc, rule in rows:
            if loc >= limit:
                break
            if loc < pc_begin:
                continue
            rid = rule_ids.get(rule)
            if rid is None:
                rid = rule_ids[rule] = len(rules)
                rules.append(rule)
            if starts and starts[-1] == loc:
                idx[-1] = rid
                continue
            if rid == last_rule:
                continue
            starts.append(loc)
            idx.append(rid)
            last_rule = rid
        covered_end = limit
        nxt = allf[j][0] if j < n else None
        if nxt is None or nxt > limit:
            # a gap after this FDE
            if starts and starts[-1] == limit:
                idx[-1] = 0
            else:
                starts.append(limit)
                idx.append(0)
            last_rule = 0
    rule_idx = array('H' if len(rules) < 65536 else 'I', idx)
    return CfiTable(starts, rule_idx, rules, source, len(allf), bad)

class LazyCfiTable:
    """A table over ``.eh_frame_hdr``'s binary-search table that decodes an FDE the first time
    one of its addresses is looked up (used for big ``.eh_frame`` sections, see ``LAZY_MIN_BYTES``).

    A compiled table costs ~1 µs of Python per CFA instruction (python3.11: 150 ms, a
    libLLVM-sized library: seconds) and the unwinder runs on the sampler thread, whose ring
    buffer must keep being read; this one costs one C-speed array copy of the search table
    (8 bytes per FDE) and ~30 µs per FDE actually used. It keeps the file mapped (``mmap``,
    page cache: only the FDEs read become resident)."""

    __slots__ = ('_buf', '_sv0', '_lo', '_hi', '_hdr', '_locs', '_ptrs', '_cies', '_decoded', 'nbytes', 'source',
                 'fdes', 'bad_fdes', '__weakref__')

    MAX_DECODED = 8192

    def __init__(self, buf: Any, section_vaddr0: int, eh_lo: int, eh_hi: int, hdr_vaddr: int, locs: array,
                 ptrs: array) -> None:
        self._buf = buf  # whole file (mmap) or image; position p has vaddr section_vaddr0 + p
        self._sv0 = section_vaddr0
        self._lo, self._hi = eh_lo, eh_hi  # positions of .eh_frame in buf
        self._hdr = hdr_vaddr
        self._locs = locs
        self._ptrs = ptrs
        self._cies: Dict[int, Any] = {}
        self._decoded: Dict[int, Any] = {}
        self.source = 'eh_frame_hdr(lazy)'
        self.fdes = len(locs)
        self.bad_fdes = 0
        self.nbytes = 4096 + 8 * len(locs)

    def __len__(self) -> int:
        return len(self._locs)

    def lookup(self, vaddr: int) -> Optional[Rule]:
        rel = vaddr - self._hdr
        if not -0x80000000 <= rel < 0x80000000:
            return None
        i = bisect_right(self._locs, rel) - 1
        if i < 0:
            return None
        ent = self._decoded.get(i)
        if ent is None:
            ent = self._decode(i)
            if len(self._decoded) >= self.MAX_DECODED:
                self._decoded.clear()
                self.nbytes = 4096 + 8 * len(self._locs)
            self._decoded[i] = ent
            self.nbytes += 64 + (24 * len(ent[2]) if ent else 0)
        if not ent:
            return None
        pc_begin, pc_end, starts, rules = ent
        if not pc_begin <= vaddr < pc_end:
            return None
        j = bisect_right(starts, vaddr) - 1
        if j < 0:
            return None
        rule = rules[j]
        return None if rule[0] == CFA_NONE else rule

    def _decode(self, i: int) -> Any:
        d = self._buf
        pos = self._hdr + self._ptrs[i] - self._sv0
        try:
            if not self._lo <= pos < self._hi:
                raise CfiError('FDE outside .eh_frame')
            p, end, id_size = record_extent(d, pos)
            if end > self._hi or end - p < id_size:
                raise CfiError('bad FDE length')
            id_pos = p
            cie_id = _U64(d, p)[0] if id_size == 8 else _U32(d, p)[0]
            p += id_size
            if cie_id == 0:
                raise CfiError('a CIE where an FDE was expected')
            cie = _cie_at(d, id_pos - cie_id, True, self._cies)
            if not cie:
                raise CfiError('no CIE')
            enc = cie.fde_enc
            pc_begin, p = _read_encoded(d, p, enc, self._sv0 + p, self._hdr)
            pc_range, p = _read_encoded(d, p, enc & 0x0F, 0)
            if cie.has_z:
                alen, p = _uleb(d, p)
                p += alen
            if p > end or not 0 < pc_range <= (1 << 32):
                raise CfiError('bad FDE')
            if cie.ok is True:
                cie.ok = _run(cie.init, cie, 0, 0, [], None, enc, 0)
            rows: List[Tuple[int, Rule]] = []
            _run(d[p:end], cie, pc_begin, pc_begin + pc_range, rows, cie.ok, enc, self._sv0 + p)
            pc_end = pc_begin + pc_range
            rows = [r for r in rows if r[0] < pc_end] or [(pc_begin, NO_CFI)]
            return (pc_begin, pc_end, [r[0] for r in rows], [r[1] for r in rows])
        except (CfiError, IndexError, ValueError, struct.error, OverflowError):
            self.bad_fdes += 1
            return False


LAZY_MIN_BYTES = 256 << 10  # .eh_frame sections at least this big get a LazyCfiTable


def lazy_table(buf: Any, info: 'ElfSections') -> Optional[LazyCfiTable]:
    """A LazyCfiTable from the ELF's .eh_frame_hdr search table, or None when it has none
    usable (then the table is compiled)."""
    hdr = info.sections.get('.eh_frame_hdr')
    if hdr is not None:
        _, hvaddr, hoff, hsize = hdr
    elif info.eh_frame_hdr_seg is not None:
        hvaddr, hoff, hsize = info.eh_frame_hdr_seg
    else:
        return None
    try:
        if hoff + 12 > len(buf) or buf[hoff] != 1:
            return None
        ptr_enc, count_enc, table_enc = buf[hoff + 1], buf[hoff + 2], buf[hoff + 3]
        if table_enc != 0x3B or ptr_enc == 0xFF or count_enc == 0xFF:  # datarel|sdata4 only
            return None
        eh_vaddr, p = _read_encoded(buf, hoff + 4, ptr_enc, hvaddr + 4, hvaddr)
        count, p = _read_encoded(buf, p, count_enc, hvaddr + (p - hoff), hvaddr)
        if count <= 0 or p + 8 * count > len(buf) or p + 8 * count > hoff + max(hsize, 12):
            return None
        flat = array('i')
        flat.frombytes(bytes(buf[p:p + 8 * count]))
        if sys.byteorder != 'little':
            flat.byteswap()
        locs, ptrs = flat[0::2], flat[1::2]
        # .eh_frame's position in the file: its section, else the PT_LOAD that holds it
        eh = info.sections.get('.eh_frame')
        if eh is not None and eh[1] == eh_vaddr and eh[0] != 8:
            lo, hi = eh[2], eh[2] + eh[3]
        else:
            for lv, loff, lsz, _ in info.loads:
                if lv <= eh_vaddr < lv + lsz:
                    lo, hi = eh_vaddr - lv + loff, loff + lsz
                    break
            else:
                return None
        hi = min(hi, len(buf))
        return LazyCfiTable(buf, eh_vaddr - lo, lo, hi, hvaddr, locs, ptrs)
    except (CfiError, IndexError, ValueError, struct.error, OverflowError):
        return None

# ------------------------------------------------------------------------- ELF input
_ELF_TYPES = {'ET_NONE': 0, 'ET_REL': 1, 'ET_EXEC': 2, 'ET_DYN': 3, 'ET_CORE': 4}


class ElfSections:
    """The few ELF facts CFI compilation needs, from ``host.elf.parse_elf`` (x86-64 ELF64
    little endian only), in the compact tuples the table builders index."""

    __slots__ = ('sections', 'loads', 'eh_frame_hdr_seg', 'build_id', 'elf_type', 'elf')

    def __init__(self) -> None:
        self.sections: Dict[str, Tuple[int, int, int, int]] = {}  # name -> (type, addr, offset, size)
        self.loads: List[Tuple[int, int, int, int]] = []  # (vaddr, offset, filesz, flags)
        self.eh_frame_hdr_seg: Optional[Tuple[int, int, int]] = None  # (vaddr, offset, filesz)
        self.build_id = ''
        self.elf_type = 0
        self.elf: Optional[ElfInfo] = None  # everything host.elf read

    @classmethod
    def from_info(cls, elf: ElfInfo) -> 'ElfSections':
        info = cls()
        info.elf = elf
        info.sections = {name: (s.type, s.addr, s.offset, s.size) for name, s in elf.sections.items()}
        info.loads = [(s.vaddr, s.offset, s.filesz, s.flags) for s in elf.loads]
        hdr = elf.segment(PT_GNU_EH_FRAME)
        if hdr is not None:
            info.eh_frame_hdr_seg = (hdr.vaddr, hdr.offset, hdr.filesz)
        info.build_id = elf.gnu_build_id
        info.elf_type = _ELF_TYPES.get(elf.elf_type, 0)
        return info


def read_elf_sections(buf: Any) -> ElfSections:
    """Parse the ELF header, program headers and section headers of ``buf`` (bytes/mmap) with
    ``host.elf.parse_elf`` (lenient: header tables that do not fit in the file are ignored).
    Raises CfiError on a file that is not x86-64 ELF64 little endian, TooManySections."""
    size = len(buf)
    if size < 64 or bytes(buf[:4]) != ELF_MAGIC:
        raise CfiError('not an ELF file')
    if buf[4] != 2 or buf[5] != 1:
        raise CfiError('not ELF64 little endian')
    if struct.unpack_from('<H', buf, 18)[0] != EM_X86_64:
        raise CfiError('not x86-64')
    stream = buf if isinstance(buf, mmap.mmap) else io.BytesIO(buf)
    try:
        elf = parse_elf(stream, size=size, strict=False, go_build_id=False)
    except TooManySectionsError as e:
        raise TooManySections(str(e))
    return ElfSections.from_info(elf)


def _section_bytes(buf: Any, sec: Tuple[int, int, int, int]) -> Optional[bytes]:
    stype, addr, off, size = sec
    if stype == 8 or size == 0 or size > MAX_SECTION or off + size > len(buf):  # SHT_NOBITS
        return None
    return bytes(buf[off:off + size])


def _eh_frame_from_hdr(buf: Any, info: ElfSections) -> Optional[Tuple[bytes, int]]:
    """Locate .eh_frame through PT_GNU_EH_FRAME (files without section headers)."""
    if info.eh_frame_hdr_seg is None:
        return None
    vaddr, off, filesz = info.eh_frame_hdr_seg
    if off + 4 > len(buf):
        return None
    version, ptr_enc = buf[off], buf[off + 1]
    if version != 1:
        return None
    eh_vaddr, _ = _read_encoded(buf, off + 4, ptr_enc, vaddr + 4, vaddr)
    # the file offset of that vaddr, through the PT_LOAD that holds it
    for lv, lo, lsz, _ in info.loads:
        if lv <= eh_vaddr < lv + lsz:
            start = eh_vaddr - lv + lo
            end = min(lo + lsz, start + MAX_SECTION, len(buf))
            return bytes(buf[start:end]), eh_vaddr
    return None


def compile_cfi(buf: Any, info: Optional[ElfSections] = None) -> CfiTable:
    """The CFI table of the ELF image ``buf`` (bytes or mmap). Raises CfiError (only) on a file
    that is not x86-64 ELF64 or whose headers are corrupted; malformed CFI only skips FDEs."""
    try:
        return _compile_cfi(buf, info)
    except CfiError:
        raise
    except (IndexError, ValueError, struct.error, OverflowError, MemoryError) as e:
        raise CfiError('malformed ELF: {}'.format(e))


def _compile_cfi(buf: Any, info: Optional[ElfSections]) -> CfiTable:
    if info is None:
        info = read_elf_sections(buf)
    groups = []
    bad = 0
    sources = []
    eh = info.sections.get('.eh_frame')
    data = _section_bytes(buf, eh) if eh else None
    vaddr = eh[1] if eh else 0
    if data is None:
        found = _eh_frame_from_hdr(buf, info)
        if found is not None:
            data, vaddr = found
    if data is not None:
        hdr = info.sections.get('.eh_frame_hdr')
        fdes, b = parse_frame_section(data, vaddr, True, hdr[1] if hdr else 0)
        groups.append(fdes)
        bad += b
        sources.append('eh_frame')
    dbg = info.sections.get('.debug_frame')
    ddata = _section_bytes(buf, dbg) if dbg else None
    if ddata is not None:
        fdes, b = parse_frame_section(ddata, 0, False)
        groups.append(fdes)
        bad += b
        sources.append('debug_frame')
    if not groups:
        return CfiTable(array('Q'), array('H'), [NO_CFI], 'none')
    return merge_fdes(groups, '+'.join(sources), bad)


def build_cfi_table(path: str = '', stream: Optional[BinaryIO] = None, data: Optional[bytes] = None,
                    lazy: bool = True) -> Tuple[Any, ElfSections]:
    """The CFI table of a file (``path`` or an open binary ``stream``) or an in-memory image:
    compiled (``CfiTable``), or a ``LazyCfiTable`` for a big ``.eh_frame`` with a usable
    ``.eh_frame_hdr`` when ``lazy`` (not for in-memory images)."""
    if data is not None:
        try:
            info = read_elf_sections(data)
        except (IndexError, ValueError, struct.error, OverflowError) as e:
            if isinstance(e, CfiError):
                raise
            raise CfiError('malformed ELF: {}'.format(e))
        return compile_cfi(data, info), info
    own = stream is None
    f = open(path, 'rb') if own else stream
    try:
        size = os.fstat(f.fileno()).st_size
        if size < 64:
            raise CfiError('file too small')
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        keep = False
        try:
            try:
                info = read_elf_sections(m)
            except (IndexError, ValueError, struct.error, OverflowError) as e:
                if isinstance(e, CfiError):
                    raise
                raise CfiError('malformed ELF: {}'.format(e))
            eh = info.sections.get('.eh_frame')
            big = eh[3] if eh else (info.eh_frame_hdr_seg[2] * 8 if info.eh_frame_hdr_seg else 0)
            if lazy and big >= LAZY_MIN_BYTES and '.debug_frame' not in info.sections:
                table = lazy_table(m, info)
                if table is not None:
                    keep = True  # the table reads FDEs from the mapping
                    return table, info
            return compile_cfi(m, info), info
        finally:
            if not keep:
                m.close()
    finally:
        if own:
            f.close()
