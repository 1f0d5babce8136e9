# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Where a process's OpenTelemetry thread-context variable lives (OTEP 4947), for the BPF reader.

A module (the executable or a shared library) that publishes thread contexts exports the TLS
variable ``otel_thread_ctx_v1`` (``STT_TLS``, 8 bytes) in its ``.dynsym``. The BPF program
(``receiver/bpf/thread_ctx.h``) finds the sampled thread's copy from its thread pointer (fs_base);
this module works out, once per process and module, how:

- the variable's TLS access model, from the module's relocations that name it (x86-64):
  - none, in the executable: **local-exec**; offset from the thread pointer
    ``st_value - roundup(p_memsz, p_align)`` of its ``PT_TLS``;
  - ``R_X86_64_TPOFF64``: **initial-exec**; the GOT slot holds the offset from the thread pointer;
  - ``R_X86_64_TLSDESC``: **TLSDESC**; the descriptor's argument (second word) is the offset from
    the thread pointer when the module is in static TLS, else a pointer to ``{module id, offset}``
    (glibc's dynamic descriptor);
  - ``R_X86_64_DTPMOD64`` (+ ``DTPOFF64``): **general-dynamic**; GOT slots with the module id and
    the offset in the module's block;
  - only a module-level ``DTPMOD64`` (symbol 0): **local-dynamic**; that module id, offset
    ``st_value``.
- Static TLS: ``address = fs_base + offset``. Dynamic TLS (a library loaded by ``dlopen``):
  ``address = DTV[module id] + offset``, the DTV at ``fs_base + 8`` (glibc's ``tcbhead_t.dtv``).

Module files are opened by ``host.files.FileOpener.open_mapping`` (the mapped inode through
/proc/PID/map_files, else the path inside the process's root only if it is still that inode; never
a FIFO, a device or a file over the ELF cap; refusals counted in ``symbols.files.refused``).

The GOT slots are read from the process's memory (``/proc/PID/mem``): the dynamic loader filled
them when it relocated the module. ``ThreadTlsRuntime`` registers each process in ``tc_procs``
at its first sample and again whenever its mappings change (a ``dlopen``); a model it cannot read
is counted (``otel_context.tls_errors{reason}``) and the process's samples carry no link.
"""
from __future__ import annotations

import contextlib
import operator
import struct
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO, Dict, List, Optional, Tuple

from ..host.files import opener_for
from .base import MemoryReadError, ProcessMemory, Runtime

__all__ = ['SYMBOL', 'TlsVariable', 'TlsError', 'analyze', 'resolve_module', 'ThreadTlsRuntime',
           'TLS_ERROR_REASONS']

SYMBOL = 'otel_thread_ctx_v1'
MAX_MODULES = 4  # TC_MODULES in bpf/thread_ctx.h
MODEL_STATIC = 1  # TC_STATIC
MODEL_DTV = 2  # TC_DTV
GLIBC_DTV_OFFSET = 8  # offsetof(tcbhead_t, dtv) on x86-64

R_X86_64_DTPMOD64 = 16
R_X86_64_DTPOFF64 = 17
R_X86_64_TPOFF64 = 18
R_X86_64_TLSDESC = 36
EM_X86_64 = 62
STT_TLS = 6
SHT_RELA = 4
SHT_DYNSYM = 11
ET_EXEC = 2
PT_INTERP = 3
PT_TLS = 7

# Why a module exporting the variable (or a process) could not be registered (counted).
TLS_ERROR_REASONS = (
    'unsupported_model',  # no relocation names the variable in a shared library: its offset is unknown
    'unsupported_arch',  # not an x86-64 ELF
    'unsupported_libc',  # not glibc (musl's thread pointer layout differs)
    'bad_symbol',  # the symbol is not an 8-byte STT_TLS, or there is no PT_TLS
    'unresolved',  # the loader has not filled the GOT slot (yet): retried at the next mapping change
    'memory',  # the GOT slot or the descriptor could not be read
    'elf',  # the module's file could not be read or parsed
    'too_many_modules',  # more than MAX_MODULES modules export it: the others are not read
    'process_map_full',  # tc_procs is full
)

_RELA = struct.Struct('<QQq')
_U64 = struct.Struct('<Q')
_I64 = struct.Struct('<q')


class TlsError(Exception):
    def __init__(self, reason: str, detail: str = '') -> None:
        super().__init__('{}: {}'.format(reason, detail) if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class TlsVariable:
    """What a module's file says about its ``otel_thread_ctx_v1``."""

    model: str  # 'local_exec' | 'initial_exec' | 'tlsdesc' | 'general_dynamic' | 'local_dynamic'
    st_value: int  # offset of the variable in the module's TLS block
    got: int = 0  # vaddr of the GOT slot the model reads (0: local-exec)
    dtpoff_got: int = 0  # general-dynamic: vaddr of the DTPOFF64 slot (0: none, use st_value)
    tls_offset: int = 0  # local-exec: offset from the thread pointer
    loads: Tuple[Tuple[int, int], ...] = ()  # (p_offset, p_vaddr) of the PT_LOAD segments


_path_of = operator.attrgetter('path')

SHT_GNU_HASH = 0x6ffffff6
_SYM = struct.Struct('<IBBHQQ')  # Elf64_Sym: name, info, other, shndx, value, size


def _gnu_hash(name: bytes) -> int:
    h = 5381
    for c in name:
        h = (h * 33 + c) & 0xffffffff
    return h


SYMBOL_GNU_HASH = _gnu_hash(SYMBOL.encode())


def _read(f, offset: int, size: int) -> bytes:
    f.seek(offset)
    return f.read(size)


def _bloom_may_hold(f, gnu_hash: Any) -> bool:
    """The GNU hash table's bloom filter: False when it surely does not hold the symbol (a few
    small reads rule out almost every module of a host; a full look costs tens of ms)."""
    head = _read(f, gnu_hash.offset, 16)
    if len(head) < 16:
        return True
    _nbuckets, _symoffset, bloom_size, bloom_shift = struct.unpack('<IIII', head)
    if not bloom_size:
        return True
    h = SYMBOL_GNU_HASH
    word = _read(f, gnu_hash.offset + 16 + 8 * ((h // 64) % bloom_size), 8)
    if len(word) < 8:
        return True
    w = _U64.unpack(word)[0]
    mask = (1 << (h % 64)) | (1 << ((h >> bloom_shift) % 64))
    return w & mask == mask


def _parse(f, path: str) -> Optional[Any]:
    """The module's ELF headers (host.elf), or None when it is no 64-bit little-endian ELF with a
    dynamic symbol table."""
    from ..host.elf import parse_elf

    info = parse_elf(f, path, go_build_id=False)
    if info.elfclass != 64 or not info.little_endian or '.dynsym' not in info.sections:
        return None
    return info


def _dynamic_module(f, path: str) -> Optional[Any]:
    """The module's ELF headers, or None when it surely does not export the variable (no dynamic
    symbols, or its GNU hash bloom filter rules the name out)."""
    info = _parse(f, path)
    if info is None:
        return None
    gnu = next((sec for sec in info.section_list if sec.type == SHT_GNU_HASH), None)
    return info if gnu is None or _bloom_may_hold(f, gnu) else None


def may_export(path: str) -> bool:
    """False when the file surely does not define ``otel_thread_ctx_v1`` in its dynamic symbols
    (its GNU hash bloom filter says so, or it has no dynamic symbols). True: look closer."""
    try:
        with open(path, 'rb') as f:
            return _dynamic_module(f, path) is not None
    except (OSError, ValueError, struct.error):
        return False


def analyze(path: str, f: Optional[BinaryIO] = None) -> Optional[TlsVariable]:
    """The variable of the ELF file at ``path`` (or already opened as ``f``: ``path`` is then only
    named in errors); None when it does not export it. Raises TlsError."""
    try:
        with (open(path, 'rb') if f is None else contextlib.nullcontext(f)) as f:
            info = _dynamic_module(f, path)
            if info is None:
                return None
            dynsym = info.sections['.dynsym']
            dynstr = info.linked(dynsym) or info.sections.get('.dynstr')
            if dynstr is None or dynsym.entsize != _SYM.size:
                return None
            strings = _read(f, dynstr.offset, dynstr.size)
            needle = SYMBOL.encode() + b'\0'
            if needle not in strings:
                return None  # the cheap test that rules out almost every module
            if info.machine != 'EM_X86_64':
                raise TlsError('unsupported_arch', info.machine)
            index = sym = None
            table = _read(f, dynsym.offset, dynsym.size - dynsym.size % _SYM.size)
            for i, entry in enumerate(_SYM.iter_unpack(table[:len(table) - len(table) % _SYM.size])):
                st_name, st_info, _other, shndx, _value, _size = entry
                if shndx != 0 and strings[st_name:st_name + len(needle)] == needle:
                    index, sym = i, entry
                    break
            if sym is None:
                return None  # it only refers to another module's
            _name, st_info, _other, _shndx, st_value, st_size = sym
            if st_info & 0xf != STT_TLS or st_size != 8:
                raise TlsError('bad_symbol', 'type {} of {} bytes'.format(st_info & 0xf, st_size))
            tls = next((seg for seg in info.segments if seg.type == PT_TLS), None)
            loads = [(seg.offset, seg.vaddr) for seg in info.loads]
            is_exec = info.elf_type == 'ET_EXEC' or any(seg.type == PT_INTERP for seg in info.segments)
            if tls is None:
                raise TlsError('bad_symbol', 'no PT_TLS segment')
            # the relocations of the dynamic symbol table that name the variable
            found: Dict[int, int] = {}
            ld_got = 0
            dynsym_index = info.section_list.index(dynsym)
            for sec in info.section_list:
                if sec.type != SHT_RELA or sec.link != dynsym_index:
                    continue
                data = _read(f, sec.offset, sec.size)
                for r_offset, r_info, _addend in _RELA.iter_unpack(data[:len(data) - len(data) % _RELA.size]):
                    rtype, rsym = r_info & 0xffffffff, r_info >> 32
                    if rsym == index and rtype in (R_X86_64_DTPMOD64, R_X86_64_DTPOFF64, R_X86_64_TPOFF64,
                                                   R_X86_64_TLSDESC):
                        found.setdefault(rtype, r_offset)
                    elif rsym == 0 and rtype == R_X86_64_DTPMOD64 and not ld_got:
                        ld_got = r_offset
    except (OSError, ValueError, KeyError, struct.error) as e:
        raise TlsError('elf', '{}: {}'.format(path, e))
    loads_t = tuple(loads)
    if R_X86_64_TLSDESC in found:
        return TlsVariable('tlsdesc', st_value, got=found[R_X86_64_TLSDESC], loads=loads_t)
    if R_X86_64_TPOFF64 in found:
        return TlsVariable('initial_exec', st_value, got=found[R_X86_64_TPOFF64], loads=loads_t)
    if R_X86_64_DTPMOD64 in found:
        return TlsVariable('general_dynamic', st_value, got=found[R_X86_64_DTPMOD64],
                           dtpoff_got=found.get(R_X86_64_DTPOFF64, 0), loads=loads_t)
    if is_exec:
        align = max(1, tls.align)
        block = (tls.memsz + align - 1) // align * align
        return TlsVariable('local_exec', st_value, tls_offset=st_value - block, loads=loads_t)
    if ld_got:
        return TlsVariable('local_dynamic', st_value, got=ld_got, loads=loads_t)
    raise TlsError('unsupported_model', 'no relocation names {} in {}'.format(SYMBOL, path))


def load_bias(var: TlsVariable, start: int, file_offset: int) -> int:
    """The load bias of a module from one of its mappings (start address, offset in the file): the
    mapping is the page-aligned part of the last PT_LOAD segment starting at or before that offset."""
    best = None
    for p_offset, p_vaddr in var.loads:
        if p_offset & ~0xfff <= file_offset and (best is None or p_offset > best[0]):
            best = (p_offset, p_vaddr)
    if best is None:
        return start - file_offset
    p_offset, p_vaddr = best
    return start - (p_vaddr & ~0xfff) - (file_offset - (p_offset & ~0xfff))


def resolve_module(var: TlsVariable, bias: int, read) -> Tuple[int, int, int]:
    """(model, offset, module id) for the BPF program; ``read(address, size) -> bytes`` reads the
    process's memory. Raises TlsError."""
    def u64(addr: int) -> int:
        try:
            return _U64.unpack(read(addr, 8))[0]
        except (MemoryReadError, OSError) as e:
            raise TlsError('memory', '0x{:x}: {}'.format(addr, e))

    def signed(v: int) -> int:
        return v - (1 << 64) if v >= 1 << 63 else v

    if var.model == 'local_exec':
        return MODEL_STATIC, var.tls_offset, 0
    if var.model == 'initial_exec':
        return MODEL_STATIC, signed(u64(bias + var.got)), 0
    if var.model == 'tlsdesc':
        arg = u64(bias + var.got + 8)
        sarg = signed(arg)
        # x86-64 static TLS lies below the thread pointer: a static descriptor's argument (what
        # _dl_tlsdesc_return adds to it) is negative; a dynamic one's is a pointer (not a size
        # test: the brk heap of a non-PIE executable is below 4 GiB)
        if sarg < 0:
            return MODEL_STATIC, sarg, 0
        if u64(bias + var.got) == 0 or arg == 0:
            raise TlsError('unresolved', 'TLSDESC slot not filled yet')
        module, offset = u64(arg), u64(arg + 8)  # glibc's tlsdesc_dynamic_arg: {tls_index, gen}
        if not 1 <= module < 1 << 20 or offset >= 1 << 32:
            raise TlsError('unresolved', 'TLSDESC argument 0x{:x} is not a dynamic descriptor'.format(arg))
        return MODEL_DTV, offset, module
    if var.model in ('general_dynamic', 'local_dynamic'):
        module = u64(bias + var.got)
        if not 1 <= module < 1 << 20:
            raise TlsError('unresolved', 'module id {} in the GOT'.format(module))
        offset = u64(bias + var.dtpoff_got) if var.model == 'general_dynamic' and var.dtpoff_got else var.st_value
        return MODEL_DTV, offset, module
    raise TlsError('unsupported_model', var.model)


DELETED = ' (deleted)'


class ThreadTlsRuntime(Runtime):
    """Registers, in the BPF map ``tc_procs``, the processes whose modules export
    ``otel_thread_ctx_v1`` (not an interpreter: it adds no frames; it rides the runtimes' seam to
    see each process at its first sample and after each change of its mappings)."""

    name = 'otel_thread_context'
    kind = 'otel_thread_context'

    def __init__(self, telemetry: Any = None, log: Any = None, memory: Optional[ProcessMemory] = None,
                 **_: Any) -> None:
        self.telemetry = telemetry
        self.log = log
        self.memory = memory or ProcessMemory()
        self.opener = opener_for(telemetry)
        self._table = None
        self._files: Dict[Tuple[str, int, int, int], Optional[TlsVariable]] = {}  # (path, dev, ino, mtime)
        self._procs: Dict[int, Tuple[int, frozenset, int]] = {}  # pid -> (start, module paths, modules registered)
        # pid -> (start, the mappings list last looked at, the set of its mapping paths): the receiver
        # observes every sampled process at every drain, and a process's mappings are a new list only
        # when they were read again; a new list with the same paths (anonymous memory came or went:
        # most re-reads) holds the same modules (a look over a few hundred mappings at each drain was
        # most of the receiver's span-link cost)
        self._seen: Dict[int, Tuple[int, Any, frozenset]] = {}
        self._logged: set = set()
        self._lock = threading.Lock()
        if telemetry is not None:
            telemetry.declare('otel_context.thread_context_modules')
            for r in TLS_ERROR_REASONS:
                telemetry.declare('otel_context.tls_errors', ['reason:' + r])

    @property
    def processes(self) -> int:
        return sum(1 for v in self._procs.values() if v[2])

    def attach(self, sampler: Any) -> None:
        self._table = sampler.table('tc_procs')
        self._procs.clear()
        self._seen.clear()

    def _error(self, pid: int, e: TlsError) -> None:
        if self.telemetry is not None:
            self.telemetry.count('otel_context.tls_errors', 1, ['reason:' + e.reason])
        if self.log is not None and e.reason not in self._logged:
            self._logged.add(e.reason)
            self.log.info('span links off for a module of pid %s: %s', pid, e)

    def _variable(self, process: Any, path: str, mapping: Any) -> Optional[TlsVariable]:
        """The module's variable, its file opened by ``FileOpener.open_mapping`` with the identity
        check (the mapped inode, never a FIFO, a device, a huge file, a file swapped after it was
        mapped or another mount namespace's: refusals counted in ``symbols.files.refused``)."""
        found = self.opener.open_mapping(process.pid, mapping.start, mapping.end, mapping.path,
                                         getattr(process, 'root', '') or '',
                                         inode=int(getattr(mapping, 'inode', 0) or 0),
                                         dev=str(getattr(mapping, 'dev', '') or ''), verify=True)
        if found is None:
            return None
        f, st, _, _ = found
        with f:
            return self._analyze(process, path, f, st)

    def _analyze(self, process: Any, path: str, f: BinaryIO, st: Any) -> Optional[TlsVariable]:
        key = (path, st.st_dev, st.st_ino, int(st.st_mtime))
        if key in self._files:
            return self._files[key]
        try:
            var = analyze(path, f)
        except TlsError as e:
            self._files[key] = None
            self._error(process.pid, e)
            return None
        if len(self._files) > 4096:
            self._files.clear()
        self._files[key] = var
        return var

    def observe(self, process: Any) -> bool:
        with self._lock:
            return self._observe(process)

    def _observe(self, process: Any) -> bool:
        pid = process.pid
        mappings = process.mappings
        seen = self._seen.get(pid)
        if seen is not None and seen[0] == process.start_time:
            if seen[1] is mappings:
                return False  # the same mappings as at the last look
            names = frozenset(map(_path_of, mappings))
            if names == seen[2]:
                self._seen[pid] = (seen[0], mappings, names)
                return False  # the same files mapped: the same modules
        else:
            names = frozenset(map(_path_of, mappings))
        again = self._look(process, mappings)
        if again or self._procs.get(pid, (None, frozenset()))[1] == frozenset():
            self._seen.pop(pid, None)  # to be retried at the next look (not resolved yet, or the map full)
        else:
            if len(self._seen) > 65536:
                self._seen.clear()
            self._seen[pid] = (process.start_time, mappings, names)
        return again

    def _look(self, process: Any, mappings: Any) -> bool:
        pid = process.pid
        first: Dict[str, Any] = {}
        for m in mappings:
            path = m.path
            if not path.startswith('/') or (path.startswith('/dev/') and not path.startswith('/dev/shm/')):
                continue  # anonymous memory, or a mapped device (never a module: not opened)
            if path.endswith(DELETED):
                path = path[:-len(DELETED)]
            prev = first.get(path)
            if prev is None or m.offset < prev.offset:
                first[path] = m
        paths = frozenset(first)
        known = self._procs.get(pid)
        if known is not None and known[0] == process.start_time and known[1] == paths:
            return False  # seen with these modules already
        if any('ld-musl' in p for p in paths):
            self._procs[pid] = (process.start_time, paths, 0)
            self._error(pid, TlsError('unsupported_libc', 'musl'))
            return False
        modules: List[Tuple[int, int, int]] = []
        again = False
        for path, m in first.items():
            var = self._variable(process, path, m)
            if var is None:
                continue
            if len(modules) >= MAX_MODULES:
                self._error(pid, TlsError('too_many_modules', path))
                break
            bias = load_bias(var, m.start, m.offset)
            try:
                modules.append(resolve_module(var, bias, lambda a, n: self.memory.read(pid, a, n)))
            except TlsError as e:
                self._error(pid, e)
                again = again or e.reason == 'unresolved'
        if len(self._procs) > 65536:
            self._procs.clear()
        self._procs[pid] = (process.start_time, paths if not again else frozenset(), len(modules))
        if modules:
            self._register(pid, modules)
        if self.telemetry is not None:
            self.telemetry.gauge('otel_context.thread_context_processes', self.processes)
        return again

    def _register(self, pid: int, modules: List[Tuple[int, int, int]]) -> None:
        table = self._table
        if table is None:
            return
        leaf = table.Leaf()
        leaf.n = len(modules)
        leaf.dtv_offset = GLIBC_DTV_OFFSET
        for i, (model, offset, module) in enumerate(modules):
            leaf.m[i].model = model
            leaf.m[i].offset = offset
            leaf.m[i].module_id = module
        try:
            table[table.Key(pid)] = leaf
        except Exception as e:  # noqa: BLE001 - the map is full
            self._procs[pid] = (self._procs[pid][0], frozenset(), 0)
            self._error(pid, TlsError('process_map_full', str(e)))
            return
        if self.telemetry is not None:
            self.telemetry.count('otel_context.thread_context_modules', len(modules))

    def forget(self, pid: int) -> None:
        with self._lock:
            self._seen.pop(pid, None)
            if self._procs.pop(pid, None) is None:
                return
            self._drop_kernel_state(pid)

    def resolve(self, pid: int, raw: Any) -> None:
        return None

    def close(self) -> None:
        self.memory.close()
