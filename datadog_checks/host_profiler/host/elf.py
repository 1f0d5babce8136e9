# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The package's one ELF library: headers, sections, program headers, notes and build ids,
symbol lookups, debug links, compressed-section headers and LEB128 numbers.

Used by symbolization (``symbols/``), CFI (``unwind/cfi_table.py``), Go pclntab, the symbol
uploader and the Python runtime's detection. Every reader of an ELF file goes through
``parse_elf`` (raising) or ``read_elf_info`` (never raising).

``read_elf_info`` never raises: on any malformed input it returns ``None`` and counts
``symbols.bad_input{kind:elf}``. Headers, sections and segments are fixed-size records
decoded with ``struct`` (see ``parse_elf`` for why not pyelftools, which the tests use as
the oracle); ELF notes are decoded here too (three words and two padded strings), the same
way from sections and from PT_NOTE segments (stripped section headers), including the Go
build-id note (owner ``Go``, type 4).

``ElfInfo`` is plain data that the symbol uploader reuses (symbol source ranking,
build ids, file identity) without opening the file again.
"""
from __future__ import annotations

import enum
import io
import os
import struct
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Dict, Iterable, NamedTuple, Optional, Tuple

from .files import MAX_SECTIONS, record_refusal

ELF_MAGIC = b'\x7fELF'
NT_GNU_BUILD_ID = 3
NT_GO_BUILD_ID = 4
GO_BUILD_ID_PREFIX = b'\xff Go build ID: "'
GO_BUILD_ID_SCAN_BYTES = 32 * 1024  # `go tool buildid` looks at the start of the file only
MAX_NOTE_BYTES = 1 << 20

SHT_NOBITS = 8
SHF_COMPRESSED = 0x800
ELFCOMPRESS_ZLIB = 1
PF_X = 1
PT_LOAD, PT_NOTE = 1, 4
PT_GNU_EH_FRAME = 0x6474E550
EM_X86_64 = 62


class LebError(ValueError):
    """A LEB128 number longer than 10 bytes (more than 64 bits: corrupt data)."""


def read_uleb(d: Any, p: int) -> Tuple[int, int]:
    """The unsigned LEB128 number at ``d[p]`` (bytes, mmap, memoryview) and the position after it.
    Raises IndexError past the end of ``d`` and LebError on an overlong number."""
    result = 0
    shift = 0
    while True:
        b = d[p]
        p += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, p
        shift += 7
        if shift > 70:
            raise LebError('uleb128 too long')


def read_sleb(d: Any, p: int) -> Tuple[int, int]:
    """The signed LEB128 number at ``d[p]`` and the position after it (see ``read_uleb``)."""
    result = 0
    shift = 0
    while True:
        b = d[p]
        p += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            if b & 0x40:
                result -= 1 << shift
            return result, p
        if shift > 70:
            raise LebError('sleb128 too long')


class NotElfError(ValueError):
    """The file does not start with the ELF magic (not malformed: just not ELF)."""


class TooManySectionsError(ValueError):
    """The section table claims more than ``MAX_SECTIONS`` headers (refused, not parsed)."""


class SymbolSource(enum.IntEnum):
    """Ranking used by the symbol uploader: higher is better."""

    NONE = 0
    DYNAMIC_SYMBOL_TABLE = 1
    SYMBOL_TABLE = 2
    GOPCLNTAB = 3
    DEBUG_INFO = 4

    @property
    def label(self) -> str:
        return self.name.lower()


class Section(NamedTuple):
    """A section header (a tuple: one is made per section of every file read, and a frozen
    dataclass's ``__init__`` costs several times more)."""

    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int
    flags: int

    @property
    def nobits(self) -> bool:
        return self.type == SHT_NOBITS


class LoadSegment(NamedTuple):
    """A program header (``ElfInfo.loads`` holds the PT_LOAD ones, ``ElfInfo.segments`` all)."""

    vaddr: int
    offset: int
    filesz: int
    memsz: int
    flags: int
    type: int = PT_LOAD
    align: int = 0

    @property
    def executable(self) -> bool:
        return bool(self.flags & PF_X)


@dataclass
class ElfInfo:
    """What the symbolizer and the symbol uploader need to know about one ELF file."""

    path: str
    size: int = 0
    dev: int = 0
    inode: int = 0
    mtime_ns: int = 0
    elfclass: int = 64
    little_endian: bool = True
    machine: str = ''
    elf_type: str = ''  # ET_EXEC / ET_DYN / ...
    phnum: int = 0
    gnu_build_id: str = ''  # hex
    go_build_id: str = ''
    debuglink_name: str = ''
    debuglink_crc: int = 0
    has_symtab: bool = False
    has_dynsym: bool = False
    has_debug_info: bool = False  # .debug_info/.zdebug_info >= 32 bytes, not NOBITS
    has_debug_str: bool = False
    has_gopclntab: bool = False
    has_gnu_debugdata: bool = False
    has_section_headers: bool = True
    sections: Dict[str, Section] = field(default_factory=dict, repr=False)
    section_list: Tuple[Section, ...] = field(default=(), repr=False)  # by index, for sh_link
    loads: Tuple[LoadSegment, ...] = ()
    segments: Tuple[LoadSegment, ...] = field(default=(), repr=False)  # every program header
    # (root, path inside it) where this file was found, to open it again through the opener
    location: Tuple[str, str] = ('/', '')

    # -- identity --------------------------------------------------------------------
    @property
    def build_id(self) -> str:
        return self.gnu_build_id or self.go_build_id

    @property
    def build_id_kind(self) -> str:
        if self.gnu_build_id:
            return 'gnu'
        if self.go_build_id:
            return 'go'
        return ''

    @property
    def file_key(self) -> Tuple[Any, ...]:
        """Identity of the file: its build id, else (dev, inode, size, mtime)."""
        if self.gnu_build_id:
            return ('gnu', self.gnu_build_id)
        if self.go_build_id and self.go_build_id != 'redacted':
            return ('go', self.go_build_id)
        return ('stat', self.dev, self.inode, self.size, self.mtime_ns)

    @property
    def cache_key(self) -> Tuple[Any, ...]:
        """Key of the symbol-table cache: the identity plus the size, so that a stripped
        copy and the unstripped original of one build (same build id) do not share a table."""
        return self.file_key + (self.size,)

    # -- classification --------------------------------------------------------------
    @property
    def is_go(self) -> bool:
        return bool(self.go_build_id) or self.has_gopclntab

    @property
    def is_alternate_debug_file(self) -> bool:
        """A dwz/alternate debug file: no program headers, a build id and `.debug_str`."""
        return self.phnum == 0 and bool(self.gnu_build_id) and self.has_debug_str

    @property
    def has_dwarf(self) -> bool:
        return self.has_debug_info or self.is_alternate_debug_file

    def symbol_source(self, upload_dynamic_symbols: bool = False, upload_go_pcln_tab: bool = True) -> SymbolSource:
        """The Go host profiler's ranking: DWARF, else .symtab, else .dynsym (only if allowed);
        Go binaries get max(source, gopclntab) when pclntab upload is enabled."""
        if self.has_dwarf:
            source = SymbolSource.DEBUG_INFO
        elif self.has_symtab:
            source = SymbolSource.SYMBOL_TABLE
        elif self.has_dynsym and upload_dynamic_symbols:
            source = SymbolSource.DYNAMIC_SYMBOL_TABLE
        else:
            source = SymbolSource.NONE
        if upload_go_pcln_tab and self.is_go:
            source = max(source, SymbolSource.GOPCLNTAB)
        return source

    # -- addresses -------------------------------------------------------------------
    def file_offset_to_vaddr(self, file_offset: int) -> Optional[int]:
        """Translate an offset in the file to the ELF virtual address (PT_LOAD bias)."""
        for seg in self.loads:
            if seg.offset <= file_offset < seg.offset + max(seg.filesz, 1):
                return file_offset - seg.offset + seg.vaddr
        for seg in self.loads:  # an offset just past filesz (page rounding): use the exec bias
            if seg.executable:
                return file_offset - seg.offset + seg.vaddr
        if not self.loads:
            return file_offset
        return None

    def section(self, name: str) -> Optional[Section]:
        return self.sections.get(name)

    def linked(self, section: Section) -> Optional[Section]:
        if 0 < section.link < len(self.section_list):
            return self.section_list[section.link]
        return None

    def segment(self, p_type: int) -> Optional[LoadSegment]:
        """The first program header of type ``p_type`` (e.g. ``PT_GNU_EH_FRAME``)."""
        for seg in self.segments:
            if seg.type == p_type:
                return seg
        return None

    def compression_header(self, stream: BinaryIO, section: Section) -> Tuple[int, int, int]:
        """``(ch_type, uncompressed size, header size)`` of an ``SHF_COMPRESSED`` section
        (its ``Elf_Chdr``); raises ValueError on a truncated header."""
        stream.seek(section.offset)
        n = 24 if self.elfclass == 64 else 12
        chdr = stream.read(n)
        le = '<' if self.little_endian else '>'
        if len(chdr) < n:
            raise ValueError('{}: truncated compression header'.format(section.name))
        if self.elfclass == 64:
            ctype, _res, csize, _align = struct.unpack(le + 'IIQQ', chdr)
        else:
            ctype, csize, _align = struct.unpack(le + 'III', chdr)
        return ctype, csize, n


def _parse_notes(data: bytes, little_endian: bool, align: int = 4) -> Dict[Tuple[bytes, int], bytes]:
    """Decode an ELF note area: {(owner, type): desc}. Stops at the first malformed note."""
    out: Dict[Tuple[bytes, int], bytes] = {}
    fmt = '<III' if little_endian else '>III'
    pos = 0
    n = len(data)
    align = 8 if align == 8 else 4
    while pos + 12 <= n:
        namesz, descsz, ntype = struct.unpack_from(fmt, data, pos)
        pos += 12
        name_end = pos + namesz
        desc_start = (name_end + align - 1) & ~(align - 1) if namesz else pos
        desc_end = desc_start + descsz
        if namesz > n or descsz > n or desc_end > n:
            break
        owner = data[pos:name_end].rstrip(b'\0')
        out.setdefault((owner, ntype), data[desc_start:desc_end])
        pos = (desc_end + align - 1) & ~(align - 1)
    return out


def _go_build_id_from_note(desc: bytes) -> str:
    try:
        return desc.split(b'\0', 1)[0].decode('ascii')
    except UnicodeDecodeError:
        return ''


def _scan_go_build_id(head: bytes) -> str:
    i = head.find(GO_BUILD_ID_PREFIX)
    if i < 0:
        return ''
    start = i + len(GO_BUILD_ID_PREFIX)
    end = head.find(b'"\n \xff', start)
    if end < 0 or end - start > 512:
        return ''
    try:
        return head[start:end].decode('ascii')
    except UnicodeDecodeError:
        return ''


def _read_at(stream: BinaryIO, offset: int, size: int) -> bytes:
    stream.seek(offset)
    return stream.read(size)


_MACHINES = {3: 'EM_386', 40: 'EM_ARM', 62: 'EM_X86_64', 183: 'EM_AARCH64', 243: 'EM_RISCV', 21: 'EM_PPC64',
             22: 'EM_S390', 8: 'EM_MIPS'}
_TYPES = {0: 'ET_NONE', 1: 'ET_REL', 2: 'ET_EXEC', 3: 'ET_DYN', 4: 'ET_CORE'}


def parse_elf(stream: BinaryIO, path: str = '', size: Optional[int] = None, strict: bool = True,
              go_build_id: bool = True) -> ElfInfo:
    """Parse headers of the ELF in ``stream``. Raises on malformed input (see ``read_elf_info``).

    ``strict=False`` (CFI compilation, which can still find ``.eh_frame`` through
    ``PT_GNU_EH_FRAME``): program or section header tables that do not fit in the file are
    ignored instead of refused, as are sections whose contents lie beyond it (their readers
    bound-check them). ``go_build_id=False`` skips the scan of the file's start for a Go
    build id without a note (only the GNU build id is wanted).

    The ELF, program and section headers are fixed-size records decoded here with ``struct``
    rather than with pyelftools: pyelftools' construct-based parsing costs ~3 ms for a small
    file (more with many sections), and this runs for every file mapped by every new process
    and thousands of times per second in the fuzz suite. pyelftools is the oracle the tests
    compare this parser with."""
    stream.seek(0)
    ident = stream.read(64)
    if ident[:4] != ELF_MAGIC:
        raise NotElfError('not an ELF file')
    if size is None:
        stream.seek(0, io.SEEK_END)
        size = stream.tell()
    cls, data_enc = ident[4], ident[5]
    if cls not in (1, 2) or data_enc not in (1, 2):
        raise ValueError('bad ELF class or encoding')
    le = '<' if data_enc == 1 else '>'
    info = ElfInfo(path=path, size=size)
    info.elfclass = 64 if cls == 2 else 32
    info.little_endian = data_enc == 1
    if cls == 2:
        if len(ident) < 64:
            raise ValueError('truncated ELF header')
        (e_type, e_machine, _v, _entry, e_phoff, e_shoff, _flags, _ehsize, e_phentsize, e_phnum, e_shentsize,
         e_shnum, e_shstrndx) = struct.unpack_from(le + 'HHIQQQIHHHHHH', ident, 16)
        ph_fmt, ph_size = le + 'IIQQQQQQ', 56
        sh_fmt, sh_size = le + 'IIQQQQIIQQ', 64
    else:
        if len(ident) < 52:
            raise ValueError('truncated ELF header')
        (e_type, e_machine, _v, _entry, e_phoff, e_shoff, _flags, _ehsize, e_phentsize, e_phnum, e_shentsize,
         e_shnum, e_shstrndx) = struct.unpack_from(le + 'HHIIIIIHHHHHH', ident, 16)
        ph_fmt, ph_size = le + 'IIIIIIII', 32
        sh_fmt, sh_size = le + 'IIIIIIIIII', 40
    info.machine = _MACHINES.get(e_machine, str(e_machine))
    info.elf_type = _TYPES.get(e_type, str(e_type))
    info.phnum = e_phnum

    loads = []
    segments = []
    fits = False
    notes: Dict[Tuple[bytes, int], bytes] = {}
    if e_phnum and e_phoff:
        fits = e_phentsize >= ph_size and e_phoff + e_phnum * e_phentsize <= size
        if not fits and strict:
            raise ValueError('program headers beyond the end of the file')
    if e_phnum and e_phoff and fits:
        raw = _read_at(stream, e_phoff, e_phnum * e_phentsize)
        for i in range(e_phnum):
            if cls == 2:
                p_type, p_flags, p_offset, p_vaddr, _pa, p_filesz, p_memsz, p_align = struct.unpack_from(
                    ph_fmt, raw, i * e_phentsize)
            else:
                p_type, p_offset, p_vaddr, _pa, p_filesz, p_memsz, p_flags, p_align = struct.unpack_from(
                    ph_fmt, raw, i * e_phentsize)
            seg = LoadSegment(p_vaddr, p_offset, p_filesz, p_memsz, p_flags, p_type, p_align)
            segments.append(seg)
            if p_type == PT_LOAD:
                loads.append(seg)
            elif p_type == PT_NOTE and 0 < p_filesz <= MAX_NOTE_BYTES and p_offset + p_filesz <= size:
                for k, v in _parse_notes(_read_at(stream, p_offset, p_filesz), info.little_endian, p_align).items():
                    notes.setdefault(k, v)
    info.loads = tuple(loads)
    info.segments = tuple(segments)

    sections: Dict[str, Section] = {}
    section_list = []
    shnum = e_shnum if e_shoff else 0
    if e_shoff and e_shnum == 0 and e_shentsize >= sh_size and e_shoff + sh_size <= size:
        # extended numbering: the real count is section 0's sh_size
        shnum = struct.unpack_from(sh_fmt, _read_at(stream, e_shoff, sh_size))[5]
    if shnum and (e_shentsize < sh_size or e_shoff + shnum * e_shentsize > size):
        if strict:
            raise ValueError('section headers beyond the end of the file')
        shnum = 0
    if shnum:
        if shnum > MAX_SECTIONS:  # real ones, in the file, but too many to be worth decoding
            raise TooManySectionsError('{} section headers (at most {} are read)'.format(shnum, MAX_SECTIONS))
        raw = _read_at(stream, e_shoff, shnum * e_shentsize)
        if e_shentsize == sh_size:
            headers = list(struct.iter_unpack(sh_fmt, raw))
        else:
            headers = [struct.unpack_from(sh_fmt, raw, i * e_shentsize) for i in range(shnum)]
        if e_shstrndx == 0xFFFF and headers:
            e_shstrndx = headers[0][6]  # SHN_XINDEX: in section 0's sh_link
        names = b''
        if 0 < e_shstrndx < shnum:
            h = headers[e_shstrndx]
            if h[1] != SHT_NOBITS and h[4] + h[5] <= size and h[5] <= 1 << 24:
                names = _read_at(stream, h[4], h[5])
        for i, h in enumerate(headers):
            sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_sz, sh_link, _info, _align, sh_entsize = h
            if strict and sh_type not in (0, SHT_NOBITS) and sh_offset + sh_sz > size:
                # a section with contents must lie in the file: corrupt (or garbage) section headers
                raise ValueError('section {} extends beyond the end of the file'.format(i))
            end = names.find(b'\0', sh_name) if sh_name < len(names) else -1
            name = names[sh_name:end].decode('utf-8', 'replace') if end >= 0 else ''
            s = Section(name, sh_type, sh_addr, sh_offset, sh_sz, sh_link, sh_entsize, sh_flags)
            if name:
                sections.setdefault(name, s)
            section_list.append(s)
    else:
        info.has_section_headers = False
    info.sections = sections
    info.section_list = tuple(section_list)

    for name in ('.note.gnu.build-id', '.note.go.buildid'):
        s = sections.get(name)
        if s and not s.nobits and 0 < s.size <= MAX_NOTE_BYTES and s.offset < size:
            for k, v in _parse_notes(_read_at(stream, s.offset, s.size), info.little_endian).items():
                notes.setdefault(k, v)
    gnu = notes.get((b'GNU', NT_GNU_BUILD_ID))
    if gnu:
        info.gnu_build_id = gnu.hex()
    go = notes.get((b'Go', NT_GO_BUILD_ID))
    if go:
        info.go_build_id = _go_build_id_from_note(go)
    if not info.go_build_id and go_build_id:
        info.go_build_id = _scan_go_build_id(_read_at(stream, 0, GO_BUILD_ID_SCAN_BYTES))

    def present(name: str, min_size: int = 1) -> bool:
        s = sections.get(name)
        return bool(s) and not s.nobits and s.size >= min_size and s.offset + s.size <= size

    info.has_symtab = present('.symtab', 24)
    info.has_dynsym = present('.dynsym', 24)
    info.has_debug_info = present('.debug_info', 32) or present('.zdebug_info', 32)
    info.has_debug_str = present('.debug_str') or present('.zdebug_str')
    info.has_gopclntab = present('.gopclntab', 16) or present('.data.rel.ro.gopclntab', 16)
    info.has_gnu_debugdata = present('.gnu_debugdata')

    link = sections.get('.gnu_debuglink')
    if link and present('.gnu_debuglink', 8) and link.size <= 4096:
        raw = _read_at(stream, link.offset, link.size)
        nul = raw.find(b'\0')
        if nul > 0:
            crc_off = (nul + 4) & ~3
            if crc_off + 4 <= len(raw):
                try:
                    info.debuglink_name = os.path.basename(raw[:nul].decode('utf-8'))
                    info.debuglink_crc = struct.unpack_from('<I' if info.little_endian else '>I', raw, crc_off)[0]
                except UnicodeDecodeError:
                    pass
    return info


def read_elf_info(path: str, telemetry: Any = None, stream: Optional[BinaryIO] = None) -> Optional[ElfInfo]:
    """Open ``path`` (or use ``stream``) and return its ``ElfInfo``; ``None`` if it cannot be read
    or is not a valid ELF. Never raises. Malformed files count ``symbols.bad_input{kind:elf}``."""
    own = stream is None
    try:
        if own:
            stream = open(path, 'rb')
    except (OSError, ValueError):
        return None
    try:
        st = None
        try:
            st = os.fstat(stream.fileno())
        except (OSError, AttributeError, io.UnsupportedOperation, ValueError):
            pass
        info = parse_elf(stream, path, st.st_size if st else None)
        if st is not None:
            info.dev, info.inode, info.mtime_ns = st.st_dev, st.st_ino, st.st_mtime_ns
        return info
    except (OSError, NotElfError):
        return None
    except TooManySectionsError:
        record_refusal(telemetry, 'too_many_sections', path, kind='elf',
                       ident=(st.st_dev, st.st_ino) if st is not None and st.st_ino else None)
        return None
    except Exception:  # noqa: BLE001 - malformed input can raise anything from the parser
        if telemetry is not None:
            telemetry.count('symbols.bad_input', 1, ('kind:elf',))
        return None
    finally:
        if own and stream is not None:
            stream.close()


def read_elf_info_bytes(data: bytes, path: str = '', telemetry: Any = None) -> Optional[ElfInfo]:
    """``read_elf_info`` for an in-memory image (vDSO, .gnu_debugdata)."""
    return read_elf_info(path, telemetry, stream=io.BytesIO(data))


MAX_SYMBOL_SECTION = 64 << 20


def find_symbols(stream: BinaryIO, info: ElfInfo, names: Iterable[str], section: str = '.dynsym') -> Dict[str, int]:
    """name -> ``st_value`` of a few defined symbols of ``section`` (64-bit little-endian
    tables). The names are found in the linked string table first, then the table is scanned
    in C with ``struct.iter_unpack``: pyelftools' ``get_symbol_by_name`` parses every symbol in
    Python (a second for libpython on a busy host). Raises ValueError on a table over 64 MiB."""
    symtab = info.sections.get(section)
    strtab = info.linked(symtab) if symtab is not None else None
    if strtab is None and section == '.dynsym':
        strtab = info.sections.get('.dynstr')
    if symtab is None or strtab is None or symtab.nobits or strtab.nobits or symtab.entsize != 24:
        return {}
    if symtab.size > MAX_SYMBOL_SECTION or strtab.size > MAX_SYMBOL_SECTION:
        raise ValueError('symbol table too large')
    strings = _read_at(stream, strtab.offset, strtab.size)
    offsets = {}
    for name in names:
        # every place the string table holds the name followed by its NUL: linkers merge a
        # name into the tail of a longer one ('malloc' inside '__libc_malloc')
        needle = name.encode() + b'\0'
        at = strings.find(needle)
        while at >= 0:
            offsets[at] = name
            at = strings.find(needle, at + 1)
    if not offsets:
        return {}
    table = _read_at(stream, symtab.offset, symtab.size - symtab.size % 24)
    table = table[:len(table) - len(table) % 24]
    out: Dict[str, int] = {}
    for st_name, _info, _other, shndx, value, _size in struct.iter_unpack('<IBBHQQ', table):
        name = offsets.get(st_name)
        if name is not None and shndx != 0 and value:
            out[name] = value
    return out


def read_vaddr(stream: BinaryIO, info: ElfInfo, vaddr: int, size: int) -> Optional[bytes]:
    """``size`` bytes at ELF virtual address ``vaddr`` (from the PT_LOAD holding them), or None."""
    for seg in info.loads:
        if seg.vaddr <= vaddr and vaddr + size <= seg.vaddr + seg.filesz:
            data = _read_at(stream, seg.offset + vaddr - seg.vaddr, size)
            return data if len(data) == size else None
    return None


def elf_extent(head: bytes) -> Optional[int]:
    """Bytes the ELF whose first 64 bytes are ``head`` spans, from its program and section
    header tables (which strip/objcopy put last); None when the header does not tell."""
    if len(head) < 52 or head[:4] != ELF_MAGIC or head[4] not in (1, 2) or head[5] not in (1, 2):
        raise ValueError('.gnu_debugdata does not hold an ELF file')
    e = '<' if head[5] == 1 else '>'
    if head[4] == 2:
        if len(head) < 64:
            raise ValueError('.gnu_debugdata holds a truncated ELF file')
        phoff, shoff = struct.unpack_from(e + 'QQ', head, 0x20)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(e + 'HHHH', head, 0x36)
    else:
        phoff, shoff = struct.unpack_from(e + 'II', head, 0x1C)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(e + 'HHHH', head, 0x2A)
    if shoff and not shnum:
        return None  # extended numbering: the count is in section 0
    return max(len(head), phoff + phnum * phentsize, shoff + shnum * shentsize)
