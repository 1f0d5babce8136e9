# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""What the uploader needs to know about one ELF file: identities and the local symbol source.

Ranking (the Go host profiler's ``symbol/source.go``): ``debug_info > gopclntab > symbol_table >
dynamic_symbol_table > none``.

- DWARF: ``.debug_info``/``.zdebug_info`` of at least 32 bytes that is not NOBITS, or an
  alternate (dwz) file: no program headers, a build id and a ``.debug_str``.
- Otherwise ``.symtab``, then ``.dynsym`` (only when ``upload_dynamic_symbols``).
- Go binaries get ``max(source, gopclntab)`` when ``upload_go_pcln_tab`` and the pclntab is valid.
- No DWARF in the binary: the separate debug file (build-id dir, then ``.gnu_debuglink`` with
  CRC) is looked up under the process root; when it ranks higher it becomes the file to copy.

Files are opened through ``host.files.FileOpener`` (inside the process's root, regular files
only, size-capped), and the copier hands objcopy the file it opened, not a path.

The ELF parsing proper is ``symbols/``'s (``elf.read_elf_info``, ``debuginfo.find_debug_file``,
``gopclntab.header_version``); this module adds the pclntab location (for the copier), the
file hash and the uploader's view of the result.
"""
from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO, Optional, Tuple

from ..host.files import FileOpener, join_root, opener_for
from ..symbols.debuginfo import find_debug_file
from ..host.elf import ElfInfo, read_elf_info
from ..symbols.gopclntab import MAX_PCLNTAB, header_version

DEBUG_INFO = 'debug_info'
GOPCLNTAB = 'gopclntab'
SYMBOL_TABLE = 'symbol_table'
DYNAMIC_SYMBOL_TABLE = 'dynamic_symbol_table'
NONE = 'none'
_RANK = {NONE: 0, DYNAMIC_SYMBOL_TABLE: 1, SYMBOL_TABLE: 2, GOPCLNTAB: 3, DEBUG_INFO: 4}
SOURCES = (NONE, DYNAMIC_SYMBOL_TABLE, SYMBOL_TABLE, GOPCLNTAB, DEBUG_INFO)

PCLNTAB_SECTIONS = ('.gopclntab', '.data.rel.ro.gopclntab')

_ARCH = {'EM_X86_64': 'amd64', 'EM_AARCH64': 'arm64', 'EM_386': '386', 'EM_ARM': 'arm',
         'EM_PPC64': 'ppc64le', 'EM_S390': 's390x', 'EM_RISCV': 'riscv64'}


def rank(source: str) -> int:
    """Numeric level of a symbol source; unknown strings rank as none."""
    return _RANK.get(source or NONE, 0)


def best(*sources: str) -> str:
    return max(sources, key=rank) if sources else NONE


def file_hash(path: str, size: Optional[int] = None) -> str:
    """The eBPF profiler's file id ("htlhash"): SHA-256 of the first 4 KiB, the last 4 KiB and
    the length (big-endian u64), truncated to 128 bits, in hex. Reads at most 8 KiB."""
    with open(path, 'rb') as f:
        return stream_hash(f, size)


def stream_hash(f: BinaryIO, size: Optional[int] = None) -> str:
    """``file_hash`` of an open file."""
    if size is None:
        size = os.fstat(f.fileno()).st_size
    h = hashlib.sha256()
    f.seek(0)
    h.update(f.read(4096))
    f.seek(max(0, size - 4096))
    h.update(f.read(4096))
    h.update(struct.pack('>Q', size))
    return h.hexdigest()[:32]


@dataclass
class Pclntab:
    section: str  # section name holding it
    offset: int  # file offset in the ELF
    size: int
    address: int  # virtual address
    version: str
    text_start: int  # runtime.text (0 when unknown)


@dataclass
class ElfFacts:
    """Facts of one file that do not depend on the uploader's configuration."""
    size: int
    arch: str
    gnu_build_id: str
    go_build_id: str
    debuglink: Optional[Tuple[str, int]]  # (name, crc)
    has_dwarf: bool
    has_symtab: bool
    has_dynsym: bool
    is_go: bool
    pclntab: Optional[Pclntab]  # None: not Go, or its pclntab is missing/broken
    info: Optional[ElfInfo] = None


def read_facts(path: str, stream: Optional[BinaryIO] = None, telemetry: Any = None) -> ElfFacts:
    """Read what the uploader needs (via ``host.elf.read_elf_info``) from ``path`` or the
    open ``stream``; raises on non-ELF files."""
    if stream is None:
        with open(path, 'rb') as f:
            return read_facts(path, f, telemetry)
    info = read_elf_info(path, telemetry, stream=stream)
    if info is None:
        raise ValueError('not a readable ELF file')
    pclntab = None
    if info.is_go:
        for name in PCLNTAB_SECTIONS:
            sec = info.section(name)
            if sec is not None and not sec.nobits:
                pclntab = _check_pclntab(stream, sec, info.little_endian)
                break
        if pclntab is not None and not pclntab.text_start:
            text = info.section('.text')
            pclntab.text_start = text.addr if text is not None else 0
    arch = _ARCH.get(info.machine, info.machine.lower().replace('em_', ''))
    debuglink = (info.debuglink_name, info.debuglink_crc) if info.debuglink_name else None
    return ElfFacts(size=info.size, arch=arch, gnu_build_id=info.gnu_build_id, go_build_id=info.go_build_id,
                    debuglink=debuglink, has_dwarf=info.has_dwarf, has_symtab=info.has_symtab,
                    has_dynsym=info.has_dynsym, is_go=info.is_go, pclntab=pclntab, info=info)


def _check_pclntab(f: BinaryIO, sec, little: bool) -> Optional[Pclntab]:
    """Validate the pclntab header (``symbols.gopclntab.header_version``); None when broken.
    Only the header is read: decoding the whole table is the symbolizer's job, not needed here."""
    if sec.size < 16 or sec.size > MAX_PCLNTAB:
        return None
    f.seek(sec.offset)
    head = f.read(64)
    hdr = header_version(head)
    if hdr is None:
        return None
    version, e, _quantum, ptr = hdr
    text_start = 0
    if version in ('1.18', '1.20'):
        text_start = struct.unpack_from(e + ('Q' if ptr == 8 else 'I'), head, 8 + 2 * ptr)[0]
    return Pclntab(section=sec.name, offset=sec.offset, size=sec.size, address=sec.addr,
                   version=version, text_start=text_start)


def local_source(facts: ElfFacts, upload_dynamic_symbols: bool, upload_go_pcln_tab: bool) -> str:
    """``ElfInfo.symbol_source`` with gopclntab counted only when the pclntab is valid."""
    return facts.info.symbol_source(upload_dynamic_symbols,
                                    upload_go_pcln_tab and facts.pclntab is not None).label


in_root = join_root  # ``path`` as seen from the process whose root directory is ``root``


@dataclass
class LocalSymbols:
    """The result of the retrieval stage for one file."""
    path: str  # the file as opened (under the process root)
    filename: str  # the file's name as the process sees it (basename), for the event
    arch: str
    gnu_build_id: str
    go_build_id: str
    file_hash: str
    source: str
    symbol_file: str  # file given to objcopy: the binary or its separate debug file
    symbol_file_size: int
    facts: ElfFacts  # of the binary itself (pclntab, markers)
    # (root, path inside it) of the binary and of the symbol file: the copier opens them again
    # through the opener (('', '') when unknown: ``path``/``symbol_file`` are host paths)
    location: Tuple[str, str] = ('', '')
    symbol_file_location: Tuple[str, str] = ('', '')

    @property
    def query_build_id(self) -> str:
        """File hash if the Go build id is 'redacted', else GNU build id, then Go build id, then hash."""
        if self.go_build_id == 'redacted':
            return self.file_hash
        return self.gnu_build_id or self.go_build_id or self.file_hash


def inspect(path_in_root: str, root: str, upload_dynamic_symbols: bool = False,
            upload_go_pcln_tab: bool = True, opener: Optional[FileOpener] = None) -> LocalSymbols:
    """Open the ELF (through ``opener``), look for a separate debug file, decide the local
    symbol source."""
    opener = opener or opener_for(None)
    root = root or '/'
    full = in_root(root, path_in_root)
    f, st = opener.open_in_root(root, path_in_root, kind='upload')
    with f:
        facts = read_facts(full, f, opener.telemetry)
        facts.info.dev, facts.info.inode = st.st_dev, st.st_ino
        source = local_source(facts, upload_dynamic_symbols, upload_go_pcln_tab)
        symbol_file, symbol_size, symbol_location = full, facts.size, (root, path_in_root)
        if not facts.has_dwarf:
            debug = find_debug_file(facts.info, path_in_root, root, telemetry=opener.telemetry,
                                    own_ident=(st.st_dev, st.st_ino), opener=opener)
            if debug is not None:
                dsource = debug.symbol_source(upload_dynamic_symbols, False).label
                if rank(dsource) > rank(source):
                    source, symbol_file, symbol_size = dsource, debug.path, debug.size
                    symbol_location = debug.location
        fhash = stream_hash(f, facts.size)
    return LocalSymbols(path=full, filename=os.path.basename(path_in_root), arch=facts.arch,
                        gnu_build_id=facts.gnu_build_id, go_build_id=facts.go_build_id,
                        file_hash=fhash, source=source, symbol_file=symbol_file,
                        symbol_file_size=symbol_size, facts=facts, location=(root, path_in_root),
                        symbol_file_location=symbol_location)
