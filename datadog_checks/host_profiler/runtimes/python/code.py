# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Code objects read from a process's memory: name, file, first line and line table.

The BPF program records code object addresses; they are read here, after the sample, so the
object may have been freed and its address reused. Each read checks the object's type
(``PyCode_Type``) and the sizes of what it points to, and ``CodeCache`` re-reads the fields it
cached once per drain before trusting them again (``validate``).
"""
from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Tuple

from ..base import MemoryReadError, ProcessMemory
from .lines import line_310, line_311, line_lnotab
from .offsets import Offsets

MAX_NAME = 1024
MAX_FILENAME = 4096
MAX_LINES_PER_CODE = 64  # instruction positions whose line is remembered
MAX_LINETABLE = 1 << 16  # as the OpenTelemetry profiler: bigger tables are not believed


class BadObject(ValueError):
    """Memory that does not hold what it should (freed, reused or garbage)."""


@dataclass
class CodeInfo:
    name: str
    filename: str
    firstlineno: int
    linetable: bytes
    header: bytes  # the fields this entry came from (type, pointers, first line): the reuse check
    lines: Dict[int, int] = field(default_factory=dict)  # instruction position -> line
    validated: int = -1  # drain number of the last check

    @property
    def nbytes(self) -> int:
        # what a full `lines` costs is counted from the start: the size stays the same while cached
        return 200 + len(self.name) + len(self.filename) + len(self.linetable) + 24 * MAX_LINES_PER_CODE


def read_str(mem: ProcessMemory, pid: int, addr: int, off: Offsets, limit: int) -> str:
    """A compact str object (what code objects hold); raises BadObject or MemoryReadError."""
    head = mem.read(pid, addr, 40)
    length = struct.unpack_from('<q', head, 16)[0]
    state = struct.unpack_from('<I', head, 32)[0]
    if not 0 <= length <= limit:
        raise BadObject('string length')
    if not state & 0x20:  # not compact: code object names always are
        raise BadObject('string not compact')
    if length == 0:
        return ''
    if state & 0x40:  # ascii
        data = mem.read(pid, addr + off.str_ascii_data, length)
        if max(data) >= 128:
            raise BadObject('ascii string with non-ascii bytes')
        return data.decode('ascii')
    kind = (state >> 2) & 7
    if kind not in (1, 2, 4):
        raise BadObject('string kind')
    data = mem.read(pid, addr + off.str_compact_data, length * kind)
    return data.decode({1: 'latin-1', 2: 'utf-16-le', 4: 'utf-32-le'}[kind], 'replace')


def read_bytes(mem: ProcessMemory, pid: int, addr: int, limit: int) -> bytes:
    size = struct.unpack('<q', mem.read(pid, addr + 16, 8))[0]
    if not 0 <= size <= limit:
        raise BadObject('bytes size')
    return mem.read(pid, addr + 32, size) if size else b''


def _header_fields(header: bytes, off: Offsets) -> Tuple[int, int, int, int, int, int]:
    ob_type = struct.unpack_from('<Q', header, 8)[0]
    first = struct.unpack_from('<i', header, off.co_firstlineno)[0]
    fname = struct.unpack_from('<Q', header, off.co_filename)[0]
    name = struct.unpack_from('<Q', header, off.co_name)[0]
    qual = struct.unpack_from('<Q', header, off.co_qualname)[0] if off.co_qualname else 0
    table = struct.unpack_from('<Q', header, off.co_linetable)[0]
    return ob_type, first, fname, name, qual, table


def _key_bytes(header: bytes, off: Offsets) -> bytes:
    return struct.pack('<QiQQQQ', *_header_fields(header, off))


def read_code(mem: ProcessMemory, pid: int, addr: int, off: Offsets, code_type: int) -> CodeInfo:
    header = mem.read(pid, addr, off.code_header_size)
    ob_type, first, fname, name, qual, table = _header_fields(header, off)
    if code_type and ob_type != code_type:
        raise BadObject('not a code object (type 0x{:x})'.format(ob_type))
    if not 0 < first < 1 << 24:
        raise BadObject('first line')
    func = read_str(mem, pid, qual or name, off, MAX_NAME)
    filename = read_str(mem, pid, fname, off, MAX_FILENAME)
    linetable = read_bytes(mem, pid, table, MAX_LINETABLE)
    return CodeInfo(func, filename, first, linetable, _key_bytes(header, off))


def line_of(info: CodeInfo, off: Offsets, instr: int) -> int:
    """Line of the instruction position the BPF program recorded (0: unknown)."""
    line = info.lines.get(instr)
    if line is not None:
        return line
    if off.layout == 1:  # f_lasti
        if instr >= 1 << 31:  # -1: the frame has not started
            line = info.firstlineno
        elif off.minor >= 10:
            line = line_310(info.linetable, info.firstlineno, instr * 2 if off.lasti_code_units else instr)
        else:
            line = line_lnotab(info.linetable, info.firstlineno, instr)
    else:  # bytes from the code object's start to the last or current instruction
        index = (instr - off.co_code_adaptive) // 2
        line = line_311(info.linetable, info.firstlineno, index) if instr != 0xFFFFFFFF and index >= 0 else 0
        if not line:
            line = info.firstlineno  # a frame that has not run its first instruction
    if len(info.lines) < MAX_LINES_PER_CODE:
        info.lines[instr] = line
    return line


class CodeCache:
    """(pid, code address) -> CodeInfo, bounded by bytes; LRU."""

    def __init__(self, max_bytes: int = 16 << 20) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._entries: 'OrderedDict[Tuple[int, int], CodeInfo]' = OrderedDict()
        self._by_pid: Dict[int, set] = {}  # pid -> its code addresses cached: forget() costs its own
        self.drain = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, mem: ProcessMemory, pid: int, addr: int, off: Offsets, code_type: int,
            counts: Dict[str, int]) -> CodeInfo:
        key = (pid, addr)
        info = self._entries.get(key)
        if info is not None:
            self._entries.move_to_end(key)
            if info.validated == self.drain:
                return info
            # once per drain: is it still the same object? (freed code objects get reused)
            try:
                header = mem.read(pid, addr, off.code_header_size)
            except MemoryReadError:
                return info  # the process exited: its last samples keep what was read while it ran
            if _key_bytes(header, off) == info.header:
                info.validated = self.drain
                return info
            counts['code_object_reused'] = counts.get('code_object_reused', 0) + 1
            self._drop(key)
        info = read_code(mem, pid, addr, off, code_type)
        info.validated = self.drain
        counts['code_objects_read'] = counts.get('code_objects_read', 0) + 1
        self._entries[key] = info
        self._by_pid.setdefault(pid, set()).add(addr)
        self.nbytes += info.nbytes
        while self.nbytes > self.max_bytes and self._entries:
            self._drop(next(iter(self._entries)))
        return info

    def _drop(self, key) -> None:
        info = self._entries.pop(key, None)
        if info is not None:
            self.nbytes -= info.nbytes
            addrs = self._by_pid.get(key[0])
            if addrs is not None:
                addrs.discard(key[1])
                if not addrs:
                    del self._by_pid[key[0]]

    def forget(self, pid: int) -> None:
        for addr in list(self._by_pid.get(pid, ())):
            self._drop((pid, addr))
