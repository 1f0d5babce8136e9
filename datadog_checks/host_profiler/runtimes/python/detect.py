# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Is a process a CPython interpreter, which version, and where are its runtime globals.

Only the mappings count (never comm or argv): the executable ``python3.X`` or the library
``libpython3.X*.so*`` (a shared build maps its executable too, but the interpreter is in the
library). /proc/PID/maps shows resolved paths, so a symlinked interpreter (a venv's bin/python)
shows as the real file. The file is opened by ``host.files.FileOpener.open_mapping``: through
/proc/PID/map_files (the very file mapped, in any namespace), else under the process's root
(containers) only if it is still the mapped inode; never a FIFO, a device or a file over 1 GiB
(refusals counted in ``symbols.files.refused``). Symbols come
from ``.dynsym``, which even stripped distribution builds keep: ``_PyRuntime`` (3.7+),
``Py_Version`` (3.11+: the exact version), ``PyCode_Type`` (to validate code objects).
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO, Dict, Optional, Tuple

from ...host.elf import find_symbols, parse_elf, read_vaddr
from ...host.files import FileOpener, opener_for
from ...host.proc import DELETED_SUFFIX

LIB_RE = re.compile(r'(?:^|/)libpython(\d)\.(\d+)[a-z]*\.so[^/]*$')
EXE_RE = re.compile(r'(?:^|/)python(\d)\.(\d+)[a-z]*$')
MAX_FILE_BYTES = 1 << 30
SYMBOLS = ('_PyRuntime', 'Py_Version', 'PyCode_Type', 'PyUnicode_Type')


class NotYet(Exception):
    """A shared build's executable is mapped but not its libpython yet (the loader runs): look again soon."""


class NotPython(Exception):
    """Carries the reason (a metric tag) a process is not profiled as Python."""

    def __init__(self, reason: str, detail: str = '') -> None:
        super().__init__(detail or reason)
        self.reason = reason


@dataclass(frozen=True)
class InterpreterFile:
    path: str  # as the process sees it
    major: int
    minor: int  # from Py_Version when exported, else the file name
    micro: int
    exec_type: bool  # ET_EXEC (not position independent: no load bias)
    symbols: Tuple[Tuple[str, int], ...]  # name -> ELF virtual address
    loads: Tuple[Tuple[int, int, int], ...]  # PT_LOAD (file offset, vaddr, filesz)

    def symbol(self, name: str) -> int:
        return dict(self.symbols).get(name, 0)

    def bias(self, map_start: int, map_offset: int) -> int:
        """Load bias of the file from one of its mappings."""
        if self.exec_type:
            return 0
        for off, vaddr, filesz in self.loads:
            if off <= map_offset < off + max(filesz, 1):
                return map_start - (map_offset - off + vaddr)
        return map_start - map_offset


@dataclass(frozen=True)
class Interpreter:
    """A CPython process: its interpreter file and the run-time addresses of its globals."""

    file: InterpreterFile
    runtime: int  # &_PyRuntime
    code_type: int  # &PyCode_Type (0: unknown)

    @property
    def version(self) -> str:
        return '{}.{}'.format(self.file.major, self.file.minor)


def find_interpreter_mapping(mappings) -> Optional[Tuple[object, int, int]]:
    """(mapping, major, minor) of the library if mapped, else of the executable."""
    exe = None
    for m in mappings:
        path = m.path
        if path.endswith(DELETED_SUFFIX):
            path = path[:-len(DELETED_SUFFIX)]
        mm = LIB_RE.search(path)
        if mm:
            return m, int(mm.group(1)), int(mm.group(2))
        if exe is None:
            mm = EXE_RE.search(path)
            if mm:
                exe = (m, int(mm.group(1)), int(mm.group(2)))
    return exe


_file_cache: Dict[tuple, InterpreterFile] = {}


def read_interpreter_file(path: str, f: BinaryIO, st: Any, major: int, minor: int) -> InterpreterFile:
    """Symbols and version of an interpreter file, opened as ``f`` (``st``: its fstat), cached
    by dev, inode, size, mtime."""
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _file_cache.get(key)
    if hit is not None:
        return hit
    try:
        elf = parse_elf(f, path, st.st_size, go_build_id=False)
        if elf.machine != 'EM_X86_64':
            raise NotPython('unsupported_arch', '{}: {}'.format(path, elf.machine))
        loads = tuple((s.offset, s.vaddr, s.filesz) for s in elf.loads)
        symbols = find_symbols(f, elf, SYMBOLS)
        version = None
        if symbols.get('Py_Version'):
            version = read_vaddr(f, elf, symbols['Py_Version'], 4)
        exec_type = elf.elf_type == 'ET_EXEC'
    except (OSError, ValueError, struct.error) as e:
        raise NotPython('file_unreadable', '{}: {}'.format(path, e))
    micro = 0
    if version is not None:
        hexv = struct.unpack('<I', version)[0]
        major, minor, micro = hexv >> 24, (hexv >> 16) & 0xFF, (hexv >> 8) & 0xFF
    info = InterpreterFile(path, major, minor, micro, exec_type, tuple(sorted(symbols.items())), loads)
    if len(_file_cache) > 64:
        _file_cache.clear()
    _file_cache[key] = info
    return info


def open_mapped_file(process: Any, mapping: Any, opener: Optional[FileOpener] = None,
                     max_bytes: int = MAX_FILE_BYTES) -> Optional[Tuple[BinaryIO, Any]]:
    """(file, fstat) of the file ``mapping`` of ``process`` maps, or None (gone, or refused and
    counted): ``FileOpener.open_mapping`` with the identity check. /proc/PID/map_files opens the
    very file mapped whatever the namespaces; else the path under the process's root, only if it
    is still the mapped inode (a file swapped after mapping, or another mount namespace's file
    at that path, is refused)."""
    opener = opener or opener_for(None)
    found = opener.open_mapping(process.pid, mapping.start, mapping.end, mapping.path,
                                getattr(process, 'root', '') or '', inode=int(getattr(mapping, 'inode', 0) or 0),
                                dev=str(getattr(mapping, 'dev', '') or ''), verify=True, max_bytes=max_bytes)
    return None if found is None else (found[0], found[1])


def detect(process, opener: Optional[FileOpener] = None) -> Optional[Interpreter]:
    """The CPython interpreter of a process, None when it maps none; raises NotPython when it
    does but cannot be profiled (the reason is counted). ``opener``: the FileOpener counting
    refusals (default: one counting nowhere)."""
    found = find_interpreter_mapping(process.mappings)
    if found is None:
        return None
    m, major, minor = found
    path = m.path[:-len(DELETED_SUFFIX)] if m.path.endswith(DELETED_SUFFIX) else m.path
    opened = open_mapped_file(process, m, opener)
    if opened is None:
        raise NotPython('file_unreadable', '{}: gone, or refused (see symbols.files.refused)'.format(path))
    f, st = opened
    with f:
        info = read_interpreter_file(path, f, st, major, minor)
    runtime = info.symbol('_PyRuntime')
    if not runtime and not LIB_RE.search(path):
        raise NotYet(path)  # a shared build's executable, its libpython not mapped yet (the loader runs)
    if not runtime:
        raise NotPython('no_runtime_symbol', '{} exports no _PyRuntime'.format(path))
    bias = info.bias(m.start, m.offset)
    code_type = info.symbol('PyCode_Type')
    return Interpreter(info, runtime + bias, code_type + bias if code_type else 0)
