# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Native source lines: ELF virtual address -> (source file, line) from DWARF line tables.

Read lazily, with pyelftools for the CU headers, DIEs and line-program headers:

* when a file is first seen, only its address -> compilation unit index is built, from
  ``.debug_aranges`` (or, when a producer wrote none, from each CU's top DIE ranges);
* a CU's line program is decoded the first time an address inside it is looked up, into
  three compact columns (address, line, file index) plus the CU's file names; the decoded
  CUs of a table are kept in an LRU capped at ``max_cu_bytes``. The aranges and the line
  program's opcodes are read by hand (``parse_aranges``, ``decode_line_program``: see why
  there); the tests check both against pyelftools.

The file is reopened for each CU decode (through ``open_dwarf``) rather than held open:
a cached table must not pin a file descriptor. pyelftools' ``ELFFile.get_dwarf_info``
reads every DWARF section into memory (hundreds of MB for large debug files), so the
``DWARFInfo`` here is built over windows of the open file (``_SectionView``) instead, and
only the bytes a CU needs are read. ``LineTable.nbytes`` follows what it holds; the
symbolizer re-accounts it in its byte-budgeted cache after each decode.
"""
from __future__ import annotations

import io
import os
import struct
import zlib
from array import array
from bisect import bisect_right
from collections import OrderedDict
from typing import Any, BinaryIO, Callable, List, Optional, Tuple

from elftools.dwarf.dwarfinfo import DebugSectionDescriptor, DwarfConfig, DWARFInfo

from ..host.elf import ELFCOMPRESS_ZLIB, SHF_COMPRESSED, ElfInfo, read_sleb, read_uleb

# Default of receiver.symbolizer.lines (see docs/benchmarks.md "Session 5: names and lines"
# for what a cold load costs; spec.yaml says why it is on).
LINES_DEFAULT = True
MAX_DECOMPRESSED = 256 << 20
MAX_KEPT_INFLATED = 32 << 20
# sections a line lookup may touch (DW_FORM_strp / line_strp names, DWARF 5 string offsets)
_SECTIONS = ('.debug_info', '.debug_abbrev', '.debug_str', '.debug_line', '.debug_line_str', '.debug_aranges',
             '.debug_ranges', '.debug_rnglists', '.debug_addr', '.debug_str_offsets')

DEFERRED = object()  # LineTable.lookup: the CU's decode was put off (decode-time budget spent)
OpenDwarf = Callable[[], Optional[BinaryIO]]


class _SectionView(io.RawIOBase):
    """A read-only window [offset, offset + size) of ``f``, seen as a stream from 0."""

    def __init__(self, f: BinaryIO, offset: int, size: int) -> None:
        super().__init__()
        self._f = f
        self._base = offset
        self._size = size
        self._pos = 0
        self._window = b''
        self._wstart = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self._pos
        elif whence == 2:
            pos += self._size
        self._pos = max(0, pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    WINDOW = 1 << 16

    def read(self, n: int = -1) -> bytes:
        # pyelftools' parsers read a few bytes at a time: serve them from a read-ahead window
        left = self._size - self._pos
        if left <= 0:
            return b''
        if n is None or n < 0 or n > left:
            n = left
        pos = self._pos
        w = pos - self._wstart
        if 0 <= w and w + n <= len(self._window):
            self._pos = pos + n
            return self._window[w:w + n]
        if n >= self.WINDOW:
            self._f.seek(self._base + pos)
            data = self._f.read(n)
        else:
            self._f.seek(self._base + pos)
            self._window = self._f.read(min(self.WINDOW, left))
            self._wstart = pos
            data = self._window[:n]
        self._pos = pos + len(data)
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)


class _InflatingView(_SectionView):
    """A zlib-compressed section seen decompressed; inflates its prefix as far as read."""

    CHUNK = 1 << 16

    def __init__(self, f: BinaryIO, offset: int, size: int, decompressed_size: int) -> None:
        super().__init__(f, offset, size)
        self._zsize = size  # compressed bytes
        self._out = bytearray()
        self._zpos = 0
        self._z = zlib.decompressobj()
        self._size = decompressed_size

    def read(self, n: int = -1) -> bytes:
        left = self._size - self._pos
        if left <= 0:
            return b''
        if n is None or n < 0 or n > left:
            n = left
        want = self._pos + n
        while len(self._out) < want and not self._z.eof:
            self._f.seek(self._base + self._zpos)
            chunk = self._f.read(min(self.CHUNK, self._zsize - self._zpos))
            if not chunk:
                break
            self._zpos += len(chunk)
            self._out += self._z.decompress(chunk, MAX_DECOMPRESSED - len(self._out))
        data = bytes(memoryview(self._out)[self._pos:want])
        self._pos += len(data)
        return data


def _section_stream(f: BinaryIO, info: ElfInfo, name: str,
                    inflated: Optional[dict] = None) -> Optional[DebugSectionDescriptor]:
    sec = info.sections.get(name)
    if sec is None or sec.nobits or sec.size == 0:
        return None
    if sec.flags & SHF_COMPRESSED:
        # (gcc -gz, Debian's debug files, Go) an Elf_Chdr, then a zlib stream, inflated only
        # as far as it is read (a CU's header and top DIE sit at its offset)
        ctype, csize, chdr_size = info.compression_header(f, sec)
        if ctype != ELFCOMPRESS_ZLIB or csize > MAX_DECOMPRESSED:
            raise ValueError('{}: unsupported compression {} or {} bytes'.format(name, ctype, csize))
        if inflated is not None:
            # kept with the table: each CU decode would otherwise inflate again up to its offset
            data = inflated.get(name)
            if data is None:
                data = inflated[name] = _InflatingView(f, sec.offset + chdr_size, sec.size - chdr_size, csize).read()
            return DebugSectionDescriptor(io.BytesIO(data), name, None, len(data), 0)
        stream = _InflatingView(f, sec.offset + chdr_size, sec.size - chdr_size, csize)
        return DebugSectionDescriptor(stream, name, None, csize, 0)
    return DebugSectionDescriptor(_SectionView(f, sec.offset, sec.size), name, None, sec.size, 0)


def _inflated_size(info: ElfInfo, name: str) -> int:
    """An estimate (4x the compressed size: reading the exact one from the Elf_Chdr needs the
    file) of a compressed section's inflated size; 0 when it is not compressed."""
    sec = info.sections.get(name)
    if sec is None or sec.nobits or not sec.flags & SHF_COMPRESSED:
        return 0
    return sec.size * 4


def dwarf_info(f: BinaryIO, info: ElfInfo, inflated: Optional[dict] = None) -> DWARFInfo:
    """A pyelftools DWARFInfo reading ``f`` on demand (no section is read whole)."""
    secs = {n: _section_stream(f, info, n, inflated) for n in _SECTIONS}
    return DWARFInfo(
        config=DwarfConfig(little_endian=info.little_endian, default_address_size=info.elfclass // 8,
                           machine_arch=info.machine),
        debug_info_sec=secs['.debug_info'], debug_aranges_sec=secs['.debug_aranges'],
        debug_abbrev_sec=secs['.debug_abbrev'], debug_frame_sec=None, eh_frame_sec=None,
        debug_str_sec=secs['.debug_str'], debug_loc_sec=None, debug_ranges_sec=secs['.debug_ranges'],
        debug_line_sec=secs['.debug_line'], debug_pubtypes_sec=None, debug_pubnames_sec=None,
        debug_addr_sec=secs['.debug_addr'], debug_str_offsets_sec=secs['.debug_str_offsets'],
        debug_line_str_sec=secs['.debug_line_str'], debug_loclists_sec=None,
        debug_rnglists_sec=secs['.debug_rnglists'], debug_sup_sec=None, gnu_debugaltlink_sec=None,
        debug_types_sec=None)


def has_line_tables(info: Optional[ElfInfo]) -> bool:
    if info is None or not info.has_debug_info:
        return False
    sec = info.sections.get('.debug_line')
    return sec is not None and not sec.nobits and sec.size > 0


def _text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode('utf-8', 'replace')
    return str(v) if v is not None else ''


class _CULines:
    """One CU's decoded line rows, sorted by address; a row with line 0 ends a sequence."""

    __slots__ = ('addrs', 'lines', 'files', 'names', 'nbytes')

    def __init__(self, addrs: array, lines: array, files: array, names: List[str]) -> None:
        self.addrs = addrs
        self.lines = lines
        self.files = files
        self.names = names
        self.nbytes = 120 + len(addrs) * 16 + sum(60 + len(n) for n in names)

    def lookup(self, vaddr: int) -> Optional[Tuple[str, int]]:
        i = bisect_right(self.addrs, vaddr) - 1
        if i < 0 or self.lines[i] == 0:
            return None
        f = self.files[i]
        return (self.names[f] if f < len(self.names) else ''), self.lines[i]


def _file_names(lp: Any, comp_dir: str) -> List[str]:
    """Full paths of the line program's file table, indexed as its rows index them (as
    addr2line prints them: directory joined, relative directories under DW_AT_comp_dir)."""
    hdr = lp.header
    version = hdr['version']
    dirs = [_text(d) for d in hdr['include_directory']]
    names = []
    for fe in hdr['file_entry']:
        name = _text(fe.name)
        d = fe.dir_index
        if version >= 5:
            dname = dirs[d] if d < len(dirs) else ''
        else:
            dname = comp_dir if d == 0 else (dirs[d - 1] if d - 1 < len(dirs) else '')
        if dname and not dname.startswith('/') and comp_dir:
            dname = os.path.join(comp_dir, dname)
        names.append(name if name.startswith('/') or not dname else os.path.join(dname, name))
    if version < 5:
        names.insert(0, '')  # DWARF 2-4 number files from 1
    return names


def decode_line_program(data: bytes, hdr: Any, little_endian: bool = True) -> List[Tuple[int, int, int, int]]:
    """Rows (address, 0 for an end of sequence else 1, line, file) of one line program.

    Hand-written (the header comes from pyelftools): pyelftools' ``get_entries`` builds a
    construct container per opcode and copies the whole state per row, ~100 us a row, which
    keeps the symbolizer's thread for seconds on one large CU (Rust's std, LLVM); this loop
    is the DWARF 2-5 state machine (section 6.2.5) over the program bytes. VLIW op_index is
    not tracked (no such target here)."""
    min_inst = hdr['minimum_instruction_length']
    default_is_stmt = hdr['default_is_stmt']
    line_base = hdr['line_base']
    line_range = hdr['line_range'] or 1
    opcode_base = hdr['opcode_base']
    std_lengths = list(hdr['standard_opcode_lengths'])
    const_add = ((255 - opcode_base) // line_range) * min_inst
    order = 'little' if little_endian else 'big'
    rows: List[Tuple[int, int, int, int]] = []
    append = rows.append
    n = len(data)
    i = 0
    address, fileno, line = 0, 1, 1
    del default_is_stmt  # is_stmt does not change which line an address belongs to

    while i < n:
        op = data[i]
        i += 1
        if op >= opcode_base:
            adj = op - opcode_base
            address += (adj // line_range) * min_inst
            line += line_base + adj % line_range
            append((address, 1, line, fileno))
        elif op == 0:  # extended: ULEB length, sub-opcode, operands
            length, i = read_uleb(data, i)
            end = i + length
            if length == 0 or end > n:
                break
            sub = data[i]
            if sub == 1:  # end_sequence
                append((address, 0, 0, fileno))
                address, fileno, line = 0, 1, 1
            elif sub == 2:  # set_address
                address = int.from_bytes(data[i + 1:end], order)
            i = end  # define_file, set_discriminator and vendor opcodes: skipped
        elif op == 1:  # copy
            append((address, 1, line, fileno))
        elif op == 2 or op == 3 or op == 4 or op == 5 or op == 12:  # one LEB128 operand
            # inlined (not host.elf.read_uleb/read_sleb): these opcodes are frequent, and a call
            # per operand costs ~9% of the whole decode (benchmarks/elflib_compare.py, docs/benchmarks.md)
            v = 0
            shift = 0
            while True:
                b = data[i]
                i += 1
                v |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    break
            if op == 2:  # advance_pc
                address += v * min_inst
            elif op == 3:  # advance_line (signed)
                if b & 0x40:
                    v -= 1 << shift
                line += v
            elif op == 4:  # set_file
                fileno = v
        elif op == 8:  # const_add_pc
            address += const_add
        elif op == 9:  # fixed_advance_pc: a uhalf
            address += int.from_bytes(data[i:i + 2], order)
            i += 2
        elif op in (6, 7, 10, 11):  # negate_stmt, basic_block, prologue_end, epilogue_begin
            pass
        else:  # an opcode this reader does not know: skip its LEB128 operands
            for _ in range(std_lengths[op - 1] if op - 1 < len(std_lengths) else 0):
                while data[i] & 0x80:
                    i += 1
                i += 1
    return rows


def _by_address(rows: List[Tuple[int, int, int, int]]) -> List[Tuple[int, int, int, int]]:
    """The rows with their sequences ordered by start address. Each sequence is already in
    address order (DWARF requires it), so sequences are moved whole rather than rows sorted;
    an end-of-sequence row then precedes a following sequence's row at the same address."""
    seqs = []
    start = 0
    for k, row in enumerate(rows):
        if row[1] == 0:
            seqs.append((rows[start][0], start, k + 1))
            start = k + 1
    if start < len(rows):
        seqs.append((rows[start][0], start, len(rows)))
    if all(seqs[k][0] <= seqs[k + 1][0] for k in range(len(seqs) - 1)):
        return rows
    seqs.sort()
    out: List[Tuple[int, int, int, int]] = []
    for _addr, a, b in seqs:
        out.extend(rows[a:b])
    return out


# DWARF forms of fixed size (bytes), of size the offset size (4 or 8), and read as LEB128
_FIXED_FORMS = {0x0b: 1, 0x05: 2, 0x06: 4, 0x07: 8, 0x1e: 16, 0x0c: 1, 0x11: 1, 0x12: 2, 0x13: 4, 0x14: 8,
                0x20: 8, 0x19: 0, 0x21: 0, 0x25: 1, 0x26: 2, 0x27: 3, 0x28: 4, 0x29: 1, 0x2a: 2, 0x2b: 3,
                0x2c: 4, 0x1c: 4, 0x24: 8}
_OFFSET_FORMS = frozenset({0x0e, 0x17, 0x1f, 0x1d, 0x1f20, 0x1f21})  # strp, sec_offset, line_strp, ...
_LEB_FORMS = frozenset({0x0d, 0x0f, 0x15, 0x1a, 0x1b, 0x22, 0x23, 0x1f01, 0x1f02})
_BLOCK_FORMS = {0x0a: 1, 0x03: 2, 0x04: 4}  # block1/2/4: a length of this size, then the bytes
_AT_STMT_LIST, _AT_COMP_DIR = 0x10, 0x1b
_FORM_ADDR, _FORM_STRING, _FORM_STRP, _FORM_LINE_STRP, _FORM_REF_ADDR = 0x01, 0x08, 0x0e, 0x1f, 0x10
_FORM_DATA4, _FORM_DATA8, _FORM_SEC_OFFSET = 0x06, 0x07, 0x17
_FORM_BLOCK, _FORM_EXPRLOC, _FORM_INDIRECT, _FORM_IMPLICIT_CONST = 0x09, 0x18, 0x16, 0x21
_TOP_DIE_READ = 4096


def _read_at(sec: Any, offset: int, n: int) -> bytes:
    sec.stream.seek(offset)
    return sec.stream.read(n)


def _abbrev_attrs(sec: Any, offset: int, code: int) -> Optional[List[Tuple[int, int]]]:
    """The (attribute, form) list of abbreviation ``code`` in the table at ``offset``, parsed
    only as far as that entry (None: not found or malformed)."""
    size = 1 << 14
    while True:
        data = _read_at(sec, offset, size)
        try:
            i = 0
            while True:
                c, i = read_uleb(data, i)
                if c == 0:
                    return None
                _tag, i = read_uleb(data, i)
                i += 1  # children
                attrs = []
                while True:
                    name, i = read_uleb(data, i)
                    form, i = read_uleb(data, i)
                    if name == 0 and form == 0:
                        break
                    if form == _FORM_IMPLICIT_CONST:
                        _, i = read_sleb(data, i)
                    attrs.append((name, form))
                if c == code:
                    return attrs
        except IndexError:
            if len(data) < size or size >= 1 << 24:
                return None
            size <<= 2


def _top_die(dwarf: DWARFInfo, cu: Any) -> Optional[Tuple[Optional[int], str]]:
    """(DW_AT_stmt_list, DW_AT_comp_dir) of ``cu``'s top DIE, read here from the raw sections:
    pyelftools parses the CU's whole abbreviation table through construct to read it, about half
    of a CU's decode time (libpython: 0.75 of 1.5 s for its 151 CUs). None when it uses a form
    this reader leaves to pyelftools (a string by index, a very long attribute)."""
    hdr = cu.header
    version = hdr['version']
    offset_size = 8 if cu.dwarf_format() == 64 else 4
    addr_size = hdr['address_size']
    data = _read_at(dwarf.debug_info_sec, cu.cu_die_offset, _TOP_DIE_READ)
    try:
        code, i = read_uleb(data, 0)
        attrs = _abbrev_attrs(dwarf.debug_abbrev_sec, hdr['debug_abbrev_offset'], code)
        if attrs is None:
            return None
        stmt_list: Optional[int] = None
        comp_dir = ''
        order = 'little' if dwarf.config.little_endian else 'big'
        for name, form in attrs:
            while form == _FORM_INDIRECT:
                form, i = read_uleb(data, i)
            start = i
            if form in _FIXED_FORMS:
                i += _FIXED_FORMS[form]
            elif form in _OFFSET_FORMS:
                i += offset_size
            elif form == _FORM_ADDR:
                i += addr_size
            elif form == _FORM_REF_ADDR:
                i += addr_size if version == 2 else offset_size
            elif form in _LEB_FORMS:
                _, i = read_uleb(data, i)
            elif form == _FORM_STRING:
                i = data.index(b'\0', i) + 1
            elif form in _BLOCK_FORMS:
                n = _BLOCK_FORMS[form]
                i += n + int.from_bytes(data[i:i + n], order)
            elif form == _FORM_BLOCK or form == _FORM_EXPRLOC:
                n, i = read_uleb(data, i)
                i += n
            else:
                return None  # a form this reader does not know
            if i > len(data):
                return None  # past what was read
            if name == _AT_STMT_LIST:
                if form not in (_FORM_SEC_OFFSET, _FORM_DATA4, _FORM_DATA8):
                    return None
                stmt_list = int.from_bytes(data[start:i], order)
            elif name == _AT_COMP_DIR:
                if form == _FORM_STRING:
                    comp_dir = _text(data[start:i - 1])
                elif form in (_FORM_STRP, _FORM_LINE_STRP):
                    sec = dwarf.debug_str_sec if form == _FORM_STRP else dwarf.debug_line_str_sec
                    if sec is None:
                        return None
                    raw = _read_at(sec, int.from_bytes(data[start:i], order), 4096)
                    end = raw.find(b'\0')
                    if end < 0:
                        return None
                    comp_dir = _text(raw[:end])
                else:
                    return None  # strx: needs the CU's string offsets base
        return stmt_list, comp_dir
    except (IndexError, ValueError):
        return None


def decode_cu(dwarf: DWARFInfo, cu_offset: int) -> _CULines:
    cu = dwarf.get_CU_at(cu_offset)
    top = _top_die(dwarf, cu)
    if top is not None:
        stmt_list, comp_dir = top
        lp = dwarf._parse_line_program_at_offset(stmt_list, cu.structs) if stmt_list is not None else None
    else:  # pyelftools reads the top DIE
        lp = dwarf.line_program_for_CU(cu)
        if lp is not None:
            attrs = cu.get_top_DIE().attributes
            comp_dir = _text(attrs['DW_AT_comp_dir'].value) if 'DW_AT_comp_dir' in attrs else ''
    if lp is None:
        return _CULines(array('Q'), array('I'), array('I'), [])
    lp.stream.seek(lp.program_start_offset)
    program = lp.stream.read(lp.program_end_offset - lp.program_start_offset)
    rows = decode_line_program(program, lp.header, dwarf.config.little_endian)
    rows = _by_address(rows)
    addrs, lines, files = array('Q'), array('I'), array('I')
    for addr, _kind, line, fileno in rows:
        if addrs and addrs[-1] == addr:  # the last row at an address wins, as in addr2line
            lines[-1] = line
            files[-1] = fileno
            continue
        addrs.append(addr)
        lines.append(line)
        files.append(fileno)
    return _CULines(addrs, lines, files, _file_names(lp, comp_dir))


def parse_aranges(data: bytes, little_endian: bool = True) -> List[Tuple[int, int, int]]:
    """(start, end, CU offset) rows of a ``.debug_aranges`` section (DWARF 2-5, section 6.1.2).

    Hand-written: pyelftools' ``ARanges`` parses each entry through construct (~0.5 ms per
    CU set), over a second for a Rust binary's 2,000 sets; a set is a small header followed
    by fixed-size (address, length) pairs, which ``struct.iter_unpack`` reads in C."""
    le = '<' if little_endian else '>'
    out: List[Tuple[int, int, int]] = []
    pos, n = 0, len(data)
    while pos + 4 <= n:
        start = pos
        (length,) = struct.unpack_from(le + 'I', data, pos)
        pos += 4
        if length == 0xFFFFFFFF:
            (length,) = struct.unpack_from(le + 'Q', data, pos)
            pos += 8
            off_fmt, off_size = 'Q', 8
        else:
            off_fmt, off_size = 'I', 4
        end = pos + length
        if length == 0 or end > n:
            break
        (cu_offset,) = struct.unpack_from(le + off_fmt, data, pos + 2)
        addr_size, seg_size = data[pos + 2 + off_size], data[pos + 3 + off_size]
        pos += 4 + off_size
        if addr_size not in (4, 8) or seg_size not in (0, addr_size):
            pos = end  # a layout this reader does not know: skip the set
            continue
        tuple_size = addr_size * (2 + (1 if seg_size else 0))
        pos = start + -(-(pos - start) // tuple_size) * tuple_size  # pairs are aligned to their size
        fmt = le + ('Q' if addr_size == 8 else 'I') * (tuple_size // addr_size)
        usable = (end - pos) - (end - pos) % tuple_size
        for t in struct.iter_unpack(fmt, data[pos:pos + usable]):
            addr, size = t[-2], t[-1]
            if addr == 0 and size == 0:
                break
            if size:
                out.append((addr, addr + size, cu_offset))
        pos = end
    return out


def _cu_ranges(dwarf: DWARFInfo) -> List[Tuple[int, int, int]]:
    """(start, end, CU offset) for every address range of the file's CUs."""
    out: List[Tuple[int, int, int]] = []
    sec = dwarf.debug_aranges_sec
    if sec is not None:
        sec.stream.seek(0)
        out = parse_aranges(sec.stream.read(sec.size), dwarf.config.little_endian)
        if out:
            return out
    # no .debug_aranges (clang, rustc): each CU's top DIE (low_pc/high_pc or DW_AT_ranges)
    rl = None
    for cu in dwarf.iter_CUs():
        top = cu.get_top_DIE()
        attrs = top.attributes
        if 'DW_AT_low_pc' in attrs and 'DW_AT_high_pc' in attrs:
            lo = attrs['DW_AT_low_pc'].value
            hi = attrs['DW_AT_high_pc']
            end = hi.value if hi.form == 'DW_FORM_addr' else lo + hi.value
            out.append((lo, end, cu.cu_offset))
        elif 'DW_AT_ranges' in attrs:
            if rl is None:
                rl = dwarf.range_lists()
            if rl is None:
                continue
            base = attrs['DW_AT_low_pc'].value if 'DW_AT_low_pc' in attrs else 0
            for r in rl.get_range_list_at_offset(attrs['DW_AT_ranges'].value, cu=cu):
                if hasattr(r, 'begin_offset'):
                    if getattr(r, 'is_absolute', False):
                        out.append((r.begin_offset, r.end_offset, cu.cu_offset))
                    else:
                        out.append((base + r.begin_offset, base + r.end_offset, cu.cu_offset))
                elif hasattr(r, 'base_address'):
                    base = r.base_address
    return out


class LineTable:
    """Address -> (file, line) for one ELF file; CUs decoded on first use (see module doc)."""

    __slots__ = ('starts', 'ends', 'cu_offsets', 'cus', 'cu_bytes', 'max_cu_bytes', 'source', 'dwarf_info',
                 'failed', 'decodes', 'inflated')

    def __init__(self, ranges: List[Tuple[int, int, int]], dwarf_source: Optional[ElfInfo], source: str,
                 max_cu_bytes: int) -> None:
        ranges = sorted(r for r in ranges if r[1] > r[0])
        self.starts = array('Q', [r[0] for r in ranges])
        self.ends = array('Q', [r[1] for r in ranges])
        self.cu_offsets = array('Q', [r[2] for r in ranges])
        self.cus: 'OrderedDict[int, _CULines]' = OrderedDict()
        self.cu_bytes = 0
        self.max_cu_bytes = max_cu_bytes
        self.source = source  # 'self' | 'debug_file' | 'none'
        self.dwarf_info = dwarf_source  # ElfInfo of the file holding the DWARF (section offsets)
        self.failed: set = set()  # CUs that did not decode (not retried)
        self.decodes = 0
        # compressed sections (SHF_COMPRESSED) inflated whole at the first CU decode when the
        # file's total is at most MAX_KEPT_INFLATED (Debian's debug files: libc's is 8.6 MB);
        # larger ones are inflated per decode, only as far as read
        self.inflated: Optional[dict] = None
        if dwarf_source is not None:
            total = sum(_inflated_size(dwarf_source, n) for n in _SECTIONS)
            if 0 < total <= MAX_KEPT_INFLATED:
                self.inflated = {}

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def nbytes(self) -> int:
        kept = sum(len(v) for v in self.inflated.values()) if self.inflated else 0
        return 300 + kept + len(self.starts) * 24 + self.cu_bytes + (len(self.dwarf_info.section_list) * 260
                                                               if self.dwarf_info else 0)

    def lookup(self, vaddr: int, open_dwarf: OpenDwarf, may_decode: bool = True) -> Any:
        """(file, line) of ``vaddr``, decoding its CU if needed (``open_dwarf`` gives the
        DWARF file open, or None); ``DEFERRED`` when the CU is not decoded yet and
        ``may_decode`` is false. Raises on malformed DWARF (the caller counts it)."""
        i = bisect_right(self.starts, vaddr) - 1
        if i < 0 or vaddr >= self.ends[i]:
            return None
        off = self.cu_offsets[i]
        cu = self.cus.get(off)
        if cu is None:
            if off in self.failed or self.dwarf_info is None:
                return None
            if not may_decode:
                return DEFERRED
            f = open_dwarf()
            if f is None:
                return None
            try:
                with f:
                    cu = decode_cu(dwarf_info(f, self.dwarf_info, self.inflated), off)
            except Exception:
                self.failed.add(off)
                raise
            self.decodes += 1
            self.cus[off] = cu
            self.cu_bytes += cu.nbytes
            while self.cu_bytes > self.max_cu_bytes and len(self.cus) > 1:
                _, old = self.cus.popitem(last=False)
                self.cu_bytes -= old.nbytes
        else:
            self.cus.move_to_end(off)
        return cu.lookup(vaddr)


NO_LINES = LineTable([], None, 'none', 0)


def load_line_table(f: BinaryIO, dwarf_source: ElfInfo, source: str, max_cu_bytes: int) -> LineTable:
    """The CU index of the DWARF in ``f`` (whose ElfInfo is ``dwarf_source``). Raises on
    malformed DWARF."""
    return LineTable(_cu_ranges(dwarf_info(f, dwarf_source)), dwarf_source, source, max_cu_bytes)


def identity_matches(f: Any, info: ElfInfo) -> bool:
    """Whether open file ``f`` is still the file ``info`` was read from."""
    try:
        st = os.fstat(f.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == (info.dev, info.inode, info.size, info.mtime_ns)

