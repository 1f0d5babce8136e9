# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Addresses -> ``Frame``: kernel (kallsyms), native ELF, Go, vDSO and JIT (perf maps).

For a user address the symbolizer finds the process mapping, turns the address into the
ELF virtual address (``addr - map.start + map.offset``, then the PT_LOAD segment's
``p_vaddr - p_offset``) and looks it up in the file's table, chained in this order:
``.symtab`` (+``.dynsym``) → separate debug file → ``.gnu_debugdata`` (+``.dynsym``) →
``.dynsym`` → Go pclntab. Files are opened through ``host.files.FileOpener``: by
``/proc/PID/map_files/START-END`` (the mapped inode: works for deleted files), else by path
inside the process's root (containers), regular files only and size-capped.

Caches
  * One LRU shared by all processes, keyed by file identity (build id or dev/inode/size/mtime),
    holding symbol tables, line tables, ELF headers, perf maps and the vDSO's table, capped at
    ``memory_budget_bytes`` (each entry's size is estimated): the ``symbols`` view of
    ``cache`` (a ``host.budget.ByteLRU``) when one is given, shared with the CFI tables under
    ``receiver.symbolizer.memory_budget_mb``, else a cache of its own.
  * Per layout (a ``mappings`` list object): the sorted mappings and what each resolved to
    (file identity, PT_LOAD segments, build id). The process registry gives processes with
    identical executable mappings (children forked from one parent) the same list object, so
    a layout is resolved once for all of them, whatever their number.
  * Per process (pid, start time): its layout, rebuilt when the process's ``mappings`` list
    object changes, what could not be opened through it, its perf map; at most
    ``max_processes`` processes (and layouts), LRU.

Resolving a file mapping costs system calls, and every system call hands the GIL to the
sampler thread (which may keep it for the whole switch interval): a mapping whose path still
names the mapped file (``stat`` gives the mapping's dev and inode) is resolved with that one
``stat`` when the file's headers are cached; only otherwise is the file opened (through
``/proc/PID/map_files`` first).

Return addresses: every frame but the leaf is a return address, so it is looked up at
``address - 1`` (the call instruction), as perf and pprof do; ``Frame.address`` keeps the
original value. Never raises on bad files: such frames stay unknown and are counted.
"""
from __future__ import annotations

import io
import os
import threading
import time
from array import array
from bisect import bisect_right
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..host.budget import ByteLRU
from ..host.files import (
    FileOpener, FileRefused, OpenedMapping, declare_refusals, join_root, process_owners,
)
from ..host.proc import DELETED_SUFFIX, VDSO, VSYSCALL, boot_id, maps_dev, vdso_image
from ..profile.model import FRAME_GO, FRAME_JIT, FRAME_KERNEL, FRAME_NATIVE, Frame, Mapping
from .debuginfo import find_debug_file, read_debugdata
from ..host.elf import ElfInfo, read_elf_info, read_elf_info_bytes
from .gopclntab import load_pclntab
from .kallsyms import Kallsyms
from .lines import DEFERRED, NO_LINES, LineTable, has_line_tables, identity_matches, load_line_table
from .names import normalize_mode
from .perfmap import PerfMap, perf_map_paths
from .symtab import EMPTY, ChainTable, load_symbols

UNKNOWN_REASONS = ('no_mapping', 'unreadable', 'not_elf', 'no_symbols', 'no_symbol', 'anon', 'kernel_restricted')

# per-mapping states
_UNRESOLVED, _FILE, _ANON, _VDSO, _VSYSCALL, _BAD = range(6)
# Resolved frames of file mappings kept for reuse (the same Frame object for an address of a
# layout, whichever process and run): fewer objects for the builder, the encoder and the GC.
MAX_KEPT_FRAMES = 32768
# Decoding a CU's line table costs ~0.1-0.2 s of CPU (pyelftools): at most this many seconds of
# it per window, so that a burst of new code (start-up, a host full of new binaries) costs at
# most a tenth of a core; frames met beyond it get their line at a later sighting.
LINE_DECODE_SECONDS = 1.0
LINE_DECODE_WINDOW = 10.0


class _Entry:
    __slots__ = ('start', 'end', 'offset', 'path', 'dev', 'inode', 'state', 'reason', 'mapping', 'kind', 'key',
                 'info_key', 'loads', 'frames')

    def __init__(self, m: Any) -> None:
        self.start = int(m.start)
        self.end = int(m.end)
        self.offset = int(m.offset)
        self.path = m.path or ''
        self.dev = str(getattr(m, 'dev', '') or '').lower()
        self.inode = int(getattr(m, 'inode', 0) or 0)
        self.state = _UNRESOLVED
        self.reason = ''
        self.mapping = Mapping(self.start, self.end, self.offset, self.path)
        self.kind = FRAME_NATIVE
        self.key: Any = None  # symbol-table cache key
        self.info_key: Any = None
        self.loads: Any = ()
        self.frames: Optional[Dict[int, Frame]] = None  # resolved frames (immutable), shared by the layout

    def vaddr(self, addr: int) -> Optional[int]:
        off = addr - self.start + self.offset
        for vaddr, offset, filesz, _executable in self.loads:
            if offset <= off < offset + filesz:
                return off - offset + vaddr
        for vaddr, offset, _filesz, executable in self.loads:
            if executable:
                return off - offset + vaddr
        return off if not self.loads else None


class _Layout:
    """The sorted mappings of one ``mappings`` list object and their resolution (file-level
    facts only: shared by every process with this list)."""

    __slots__ = ('mappings_ref', 'starts', 'entries', 'jit')

    def __init__(self, mappings: Any) -> None:
        self.mappings_ref = mappings
        self.jit: Any = None  # (frame kind, rename) of anonymous executable memory, at its first frame
        ms = sorted((m for m in mappings if m.end > m.start), key=lambda m: m.start)
        self.entries = [_Entry(m) for m in ms]
        self.starts = array('Q', [e.start for e in self.entries])


class _Proc:
    __slots__ = ('mappings_ref', 'starts', 'entries', 'perfmap_paths', 'key', 'unreadable', 'layout')

    def __init__(self, key: Any, mappings: Any, layout: _Layout) -> None:
        self.key = key
        self.mappings_ref = mappings
        self.layout = layout
        self.starts = layout.starts
        self.entries = layout.entries
        self.perfmap_paths: Optional[List[str]] = None  # as the process sees them
        # entries this process could not open (it exited, a file it alone cannot read): per
        # process, as another process with the same layout may well open them
        self.unreadable: Optional[set] = None


class _Sized:
    """Wraps an ElfInfo (or None for a bad file) for the byte-budgeted LRU."""

    __slots__ = ('info', 'nbytes')

    def __init__(self, info: Optional[ElfInfo]) -> None:
        self.info = info
        self.nbytes = 400 + (len(info.section_list) * 260 + len(info.loads) * 120 if info else 0)


class _VdsoEntry:
    """The vDSO's symbol table and mapping facts, for the byte-budgeted LRU."""

    __slots__ = ('result', 'nbytes')

    def __init__(self, table: Any, info: Optional[ElfInfo]) -> None:
        loads = tuple((s.vaddr, s.offset, max(s.filesz, 1), s.executable) for s in info.loads) if info else ()
        self.result = (table, loads, info.build_id if info else '', info.build_id_kind if info else '')
        self.nbytes = int(getattr(table, 'nbytes', 0)) + 400


CACHE_OWNER = 'symbols'  # this module's part of the shared byte cache (host.budget.ByteLRU.view)


class Symbolizer:
    def __init__(self, telemetry: Any, memory_budget_bytes: int = 256 << 20, debug_dirs: Sequence[str] = ('/usr/lib/debug',),
                 perf_map: bool = True, proc: str = '/proc', kallsyms_path: Optional[str] = None,
                 demangle: Any = 'simplified', lines: bool = False, adjust_return_addresses: bool = True,
                 max_processes: int = 4096,
                 on_new_file: Optional[Callable[[ElfInfo, str, Any], None]] = None,
                 jit_frames_of: Optional[Callable[[Sequence[Any]], Any]] = None,
                 cache: Optional[ByteLRU] = None) -> None:
        self.telemetry = telemetry
        if cache is None:
            cache = ByteLRU(memory_budget_bytes)
        self.cache = cache.view(CACHE_OWNER)
        self.memory_budget_bytes = cache.budget
        self.debug_dirs = tuple(debug_dirs)
        self.perf_map = perf_map
        self.proc = proc.rstrip('/') or '/proc'
        self.demangle = normalize_mode(demangle)  # names.DEMANGLE_MODES
        self.lines = bool(lines)
        self._line_window = (0.0, 0.0)  # (window start, decode seconds spent in it)
        self.adjust_return_addresses = adjust_return_addresses
        self.max_processes = max_processes
        self.on_new_file = on_new_file
        # mappings -> (kind, rename) of a process's JIT code: which runtime wrote its perf map
        # (runtimes.jit.jit_frames_of); None: frames of type `jit`, names as in the map
        self.jit_frames_of = jit_frames_of
        self.opener = FileOpener(telemetry, self.proc)
        self._lock = threading.RLock()
        self._evictions_counted = 0
        self._procs: 'OrderedDict[Any, _Proc]' = OrderedDict()
        self._layouts: 'OrderedDict[int, _Layout]' = OrderedDict()  # id(mappings list) -> layout
        self._seen_files: 'OrderedDict[Any, None]' = OrderedDict()
        self._frames_kept = 0
        self._frame_entries: List[_Entry] = []
        self._boot_id = boot_id(self.proc)
        self.kallsyms = Kallsyms(kallsyms_path or self.proc + '/kallsyms', self.proc + '/modules', telemetry)
        self._kernel_mappings: Dict[str, Mapping] = {}
        for name in ('symbols.cache.hits', 'symbols.cache.misses', 'symbols.cache.evictions', 'symbols.frames.resolved'):
            telemetry.declare(name)
        for reason in UNKNOWN_REASONS:
            telemetry.declare('symbols.frames.unknown', ('reason:' + reason,))
        telemetry.declare('symbols.lines.cu_decodes')
        telemetry.declare('symbols.lines.deferred')
        for kind in ('elf', 'pclntab', 'perfmap', 'debugdata', 'dwarf'):
            telemetry.declare('symbols.bad_input', ('kind:' + kind,))
        declare_refusals(telemetry)
        telemetry.gauge('symbols.cache.bytes', 0)

    # ----------------------------------------------------------------------------- cache
    @property
    def cache_bytes(self) -> int:
        return self.cache.bytes

    def _cache_get(self, key: Any, stats: List[int]) -> Any:
        obj = self.cache.get(key)
        stats[0 if obj is not None else 1] += 1
        return obj

    def _cache_put(self, key: Any, obj: Any, stats: List[int]) -> None:
        if not self.cache.put(key, obj):
            stats[2] += 1  # too big to keep: used for this call only

    def _resize(self, key: Any, obj: Any) -> None:
        """Re-account an entry whose size changed (a perf map that grew)."""
        self.cache.resize(key, obj)

    def _flush_stats(self, stats: List[int], unknown: Dict[str, int], resolved: int) -> None:
        t = self.telemetry
        if stats[0]:
            t.count('symbols.cache.hits', stats[0])
        if stats[1]:
            t.count('symbols.cache.misses', stats[1])
        nbytes, evictions = self.cache.usage()  # (in a shared cache, the CFI tables' puts evict too)
        if stats[2] or evictions != self._evictions_counted:
            t.count('symbols.cache.evictions', stats[2] + evictions - self._evictions_counted)
            self._evictions_counted = evictions
        if resolved:
            t.count('symbols.frames.resolved', resolved)
        for reason, n in unknown.items():
            t.count('symbols.frames.unknown', n, ('reason:' + reason,))
        t.gauge('symbols.cache.bytes', nbytes)

    # -------------------------------------------------------------------------- processes
    def _proc_state(self, process: Any) -> _Proc:
        key = (process.pid, getattr(process, 'start_time', 0))
        st = self._procs.get(key)
        mappings = process.mappings
        if st is None or st.mappings_ref is not mappings:
            st = _Proc(key, mappings, self._layout(mappings))
            self._procs[key] = st
            while len(self._procs) > self.max_processes:
                self._procs.popitem(last=False)
        self._procs.move_to_end(key)
        return st

    def _layout(self, mappings: Any) -> _Layout:
        layouts = self._layouts
        k = id(mappings)
        lay = layouts.get(k)
        if lay is not None and lay.mappings_ref is mappings:  # (the layout's reference keeps the id unique)
            layouts.move_to_end(k)
            return lay
        lay = layouts[k] = _Layout(mappings)
        layouts.move_to_end(k)
        while len(layouts) > self.max_processes:
            layouts.popitem(last=False)
        return lay

    def _root(self, process: Any) -> str:
        return getattr(process, 'root', '') or '{}/{}/root'.format(self.proc, process.pid)

    def _open(self, process: Any, e: _Entry) -> Optional[OpenedMapping]:
        """(file, fstat, path shown, through map_files) of the file mapped by ``e``, or None
        (``FileOpener.open_mapping``: the mapped inode, else the path inside the process's root,
        only if it is the mapped file: a binary replaced since it was mapped never lends its symbols)."""
        return self.opener.open_mapping(process.pid, e.start, e.end, e.path, self._root(process),
                                        inode=e.inode, dev=e.dev, verify=True)

    def _resolve(self, process: Any, st: Optional[_Proc], e: _Entry, stats: List[int]) -> None:
        """Resolve ``e`` (shared by the processes of a layout) through ``process``. What only
        this process failed to open is kept in ``st.unreadable``, not in the shared entry."""
        path = e.path
        if path == VDSO:
            e.state = _VDSO
            return
        if path == VSYSCALL:
            e.state = _VSYSCALL
            return
        if not path or path.startswith('[') or path.startswith('//anon') or path.startswith('/dev/zero'):
            e.state = _ANON
            return
        if e.inode and not path.endswith(DELETED_SUFFIX) and self._resolve_by_stat(process, e, stats):
            return
        self._resolve_by_open(process, e, stats)
        if e.state == _BAD and e.reason == 'unreadable':
            e.state, e.reason = _UNRESOLVED, ''
            if st is not None:
                if st.unreadable is None:
                    st.unreadable = set()
                st.unreadable.add(id(e))

    def _resolve_by_stat(self, process: Any, e: _Entry, stats: List[int]) -> bool:
        """One ``stat`` of the mapping's path: when it is the mapped file (same dev and inode as
        in /proc/PID/maps) and its headers are cached, no need to open it."""
        root = self._root(process)
        p = root.rstrip('/') + e.path if root and root != '/' else e.path
        try:
            st = os.stat(p)
        except (OSError, ValueError):
            return False
        if st.st_ino != e.inode or maps_dev(st.st_dev) != e.dev:
            return False
        info_key = ('info', st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        holder = self._cache_get(info_key, stats) if info_key in self.cache else None
        if holder is None:
            return False
        self._set_file(process, e, info_key, holder.info, p)
        return True

    def _resolve_by_open(self, process: Any, e: _Entry, stats: List[int]) -> None:
        found = self._open(process, e)
        if found is None:
            e.state, e.reason = _BAD, 'unreadable'
            return
        f, st, opened, by_map = found
        with f:
            if e.inode and st.st_ino != e.inode and not by_map:
                # Opened by path (the process is gone): the file was replaced since it was mapped.
                e.state, e.reason = _BAD, 'unreadable'
                return
            info_key = ('info', st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            holder = self._cache_get(info_key, stats)
            if holder is None:
                info = read_elf_info(opened, self.telemetry, stream=f)
                if info is not None:
                    info.dev, info.inode, info.mtime_ns, info.size = st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size
                holder = _Sized(info)
                self._cache_put(info_key, holder, stats)
        self._set_file(process, e, info_key, holder.info, opened)

    def _set_file(self, process: Any, e: _Entry, info_key: Any, info: Optional[ElfInfo], opened: str) -> None:
        if info is None:
            e.state, e.reason = _BAD, 'not_elf'
            return
        e.info_key = info_key
        e.key = ('syms',) + info.cache_key
        e.kind = FRAME_GO if info.is_go else FRAME_NATIVE
        e.loads = tuple((s.vaddr, s.offset, max(s.filesz, 1), s.executable) for s in info.loads)
        e.mapping = Mapping(e.start, e.end, e.offset, e.path, info.build_id, info.build_id_kind)
        e.state = _FILE
        if self.on_new_file is not None and e.key not in self._seen_files:
            self._seen_files[e.key] = None
            if len(self._seen_files) > 16384:
                self._seen_files.popitem(last=False)
            try:
                self.on_new_file(info, opened, process)
            except Exception:  # noqa: BLE001 - a reporter bug must not break symbolization
                pass

    # ----------------------------------------------------------------------------- tables
    def _table(self, process: Any, e: _Entry, stats: List[int], local: Dict[Any, Any]) -> Any:
        table = local.get(e.key)
        if table is not None:
            return table
        table = self._cache_get(e.key, stats)
        if table is None:
            table = self._load_table(process, e, stats)
            self._cache_put(e.key, table, stats)
        local[e.key] = table
        return table

    def _load(self, process: Any, e: _Entry, stats: List[int], load: Callable[..., Any], none: Any) -> Any:
        """``load(f, st, path shown, info)`` with ``e``'s file open and its ElfInfo (cached, else
        read again); ``none`` when the file cannot be opened or is not ELF."""
        found = self._open(process, e)
        if found is None:
            return none
        f, st, p, _ = found
        with f:
            holder = self._cache_get(e.info_key, stats)
            info = holder.info if holder is not None else read_elf_info(p, self.telemetry, stream=f)
            if info is None:
                return none
            return load(f, st, p, info)

    def _load_table(self, process: Any, e: _Entry, stats: List[int]) -> Any:
        return self._load(process, e, stats, lambda f, st, p, info: self._symbol_table(process, e, f, st, p, info),
                          EMPTY)

    def _symbol_table(self, process: Any, e: _Entry, f: Any, st: os.stat_result, p: str, info: ElfInfo) -> Any:
        try:
            table = self._build_table(process, e, info, f, p, (st.st_dev, st.st_ino))
        except Exception:  # noqa: BLE001 - malformed tables can raise anything
            self.telemetry.count('symbols.bad_input', 1, ('kind:elf',))
            table = EMPTY
        self.telemetry.count('symbols.tables.loaded', 1, ('source:' + (table.source or 'none'),))
        return table

    def _build_table(self, process: Any, e: _Entry, info: ElfInfo, f: Any, opened: str, ident: Any = None) -> Any:
        dm = self.demangle
        tables: List[Any] = []
        if info.has_symtab:
            tables.append(load_symbols(f, info, ('.symtab', '.dynsym'), dm))
        else:
            path = e.path[: -len(DELETED_SUFFIX)] if e.path.endswith(DELETED_SUFFIX) else e.path
            dbg = None
            if info.gnu_build_id or info.debuglink_name:
                dbg = find_debug_file(info, path, self._root(process), self.debug_dirs, self.telemetry,
                                      own_ident=ident, opener=self.opener, pid=process.pid)
            if dbg is not None:
                g, _ = self.opener.open_in_root(*dbg.location, kind='debug', pid=process.pid)
                with g:
                    tables.append(load_symbols(g, dbg, ('.symtab', '.dynsym'), dm, source='debug_file'))
            else:
                if info.has_gnu_debugdata:
                    mini = None
                    try:
                        mini_bytes = read_debugdata(f, info, self.opener, opened, process.pid)
                        mini = read_elf_info_bytes(mini_bytes, 'gnu_debugdata', self.telemetry)
                    except FileRefused:
                        pass  # bigger than the caps: counted as a refusal
                    except Exception:  # noqa: BLE001 - lzma/ValueError on bad data
                        self.telemetry.count('symbols.bad_input', 1, ('kind:debugdata',))
                    if mini is not None:
                        tables.append(load_symbols(io.BytesIO(mini_bytes), mini, ('.symtab',), dm,
                                                   source='gnu_debugdata'))
                        self.telemetry.count('symbols.debug_files.found', 1, ('method:gnu_debugdata',))
                if info.has_dynsym:
                    tables.append(load_symbols(f, info, ('.dynsym',), dm))
        if info.is_go and not info.has_symtab or (not tables and not info.has_section_headers):
            pcln = load_pclntab(f, info, self.telemetry)
            if pcln is not None:
                tables.append(pcln)
        tables = [t for t in tables if len(t)]
        if not tables:
            return EMPTY
        if len(tables) == 1:
            return tables[0]
        return ChainTable(tables)

    # ------------------------------------------------------------------------------ lines
    def _source_line(self, process: Any, e: _Entry, vaddr: int, stats: List[int],
                     local: Dict[Any, Any]) -> Optional[Tuple[str, int]]:
        """(file, line) of ELF address ``vaddr`` from the DWARF line tables of ``e``'s file
        (or its debug file); None without them. Cached as the symbol tables are, under the
        same byte budget; a CU's lines are decoded at its first lookup."""
        key = ('lines',) + tuple(e.key[1:])
        lt = local.get(key)
        if lt is None:
            lt = self._cache_get(key, stats)
            if lt is None:
                lt = self._load_lines(process, e, stats)
                self._cache_put(key, lt, stats)
            local[key] = lt
        if lt is NO_LINES:
            return None
        decodes = lt.decodes
        now = time.monotonic()
        start, spent = self._line_window
        if now - start > LINE_DECODE_WINDOW:
            start, spent = now, 0.0
        try:
            hit = lt.lookup(vaddr, lambda: self._reopen_dwarf(process, e, lt), spent < LINE_DECODE_SECONDS)
        except Exception:  # noqa: BLE001 - malformed DWARF: the frame keeps its name
            self.telemetry.count('symbols.bad_input', 1, ('kind:dwarf',))
            hit = None
        if lt.decodes != decodes:
            spent += time.monotonic() - now
            self.telemetry.count('symbols.lines.cu_decodes', lt.decodes - decodes)
            self._resize(key, lt)
        self._line_window = (start, spent)
        if hit is DEFERRED:
            self.telemetry.count('symbols.lines.deferred', 1)
        return hit

    def _load_lines(self, process: Any, e: _Entry, stats: List[int]) -> LineTable:
        return self._load(process, e, stats, lambda f, st, p, info: self._line_table(process, e, f, st, info),
                          NO_LINES)

    def _line_table(self, process: Any, e: _Entry, f: Any, st: os.stat_result, info: ElfInfo) -> LineTable:
        cu_budget = max(1 << 20, self.memory_budget_bytes // 8)
        try:
            if has_line_tables(info):
                return load_line_table(f, info, 'self', cu_budget)
            if info.gnu_build_id or info.debuglink_name:
                path = e.path[: -len(DELETED_SUFFIX)] if e.path.endswith(DELETED_SUFFIX) else e.path
                dbg = find_debug_file(info, path, self._root(process), self.debug_dirs, None,
                                      own_ident=(st.st_dev, st.st_ino), opener=self.opener, pid=process.pid)
                if has_line_tables(dbg):
                    g, _ = self.opener.open_in_root(*dbg.location, kind='debug', pid=process.pid)
                    with g:
                        return load_line_table(g, dbg, 'debug_file', cu_budget)
        except FileRefused:
            pass  # counted by the opener
        except OSError:
            pass  # the debug file went away, or a read failed: not the file's fault
        except Exception:  # noqa: BLE001 - malformed DWARF can raise anything
            self.telemetry.count('symbols.bad_input', 1, ('kind:dwarf',))
        return NO_LINES

    def _reopen_dwarf(self, process: Any, e: _Entry, lt: LineTable) -> Any:
        """The file holding ``lt``'s DWARF, open (through the opener), if it is still the file
        it was read from."""
        info = lt.dwarf_info
        f = None
        if lt.source == 'self':
            found = self._open(process, e)
            if found is not None:
                f = found[0]
        else:
            try:
                f, _ = self.opener.open_in_root(*info.location, kind='debug', pid=process.pid)
            except (OSError, ValueError):
                return None
        if f is not None and not identity_matches(f, info):
            f.close()
            return None
        return f

    # ------------------------------------------------------------------------------- vdso
    def _vdso_table(self, process: Any, e: _Entry, stats: List[int]) -> Any:
        key = ('vdso', self._boot_id, e.end - e.start)
        hit = self._cache_get(key, stats)
        if hit is not None:
            return hit.result
        table, mapping_info = EMPTY, None
        image = vdso_image(process.pid, e.start, e.end, self.proc)
        if image is not None:
            try:
                info = read_elf_info_bytes(image, VDSO, self.telemetry)
                if info is not None:
                    table = load_symbols(io.BytesIO(image), info, ('.dynsym', '.symtab'), False, source='vdso')
                    mapping_info = info
            except (OSError, ValueError, OverflowError):
                pass
            except Exception:  # noqa: BLE001
                self.telemetry.count('symbols.bad_input', 1, ('kind:elf',))
        entry = _VdsoEntry(table, mapping_info)
        self._cache_put(key, entry, stats)
        return entry.result

    # ------------------------------------------------------------------------- user frames
    def symbolize_user(self, process: Any, addresses: Sequence[int]) -> List[Frame]:
        """Frames for ``addresses`` (leaf first) of ``process`` (any object with ``pid,
        start_time, mappings, root``). Never raises."""
        with self._lock:
            stats = [0, 0, 0]
            unknown: Dict[str, int] = {}
            resolved = 0
            out: List[Frame] = []
            try:
                st = self._proc_state(process)
            except Exception:  # noqa: BLE001 - a malformed process object
                st = None
            local: Dict[Any, Any] = {}
            perfmap: Any = None
            perfmap_checked = False
            adjust = self.adjust_return_addresses
            for n, addr in enumerate(addresses):
                addr = int(addr)
                look = addr - 1 if adjust and n > 0 and addr > 0 else addr
                e = None
                if st is not None:
                    i = bisect_right(st.starts, look) - 1
                    if i >= 0 and look < st.entries[i].end:
                        e = st.entries[i]
                if e is None:
                    unknown['no_mapping'] = unknown.get('no_mapping', 0) + 1
                    out.append(Frame('', addr, FRAME_NATIVE, None))
                    continue
                try:
                    if e.state == _UNRESOLVED:
                        if st.unreadable is None or id(e) not in st.unreadable:
                            self._resolve(process, st, e, stats)
                    state = e.state
                    if state == _UNRESOLVED:
                        state = _BAD
                    name = None
                    source_line = None
                    kind = e.kind
                    mapping = e.mapping
                    reason = 'no_symbol'
                    if state == _FILE:
                        fk = addr if look == addr else ~addr  # a return address is looked up at addr - 1
                        if e.frames is not None:
                            frame = e.frames.get(fk)
                            if frame is not None:
                                resolved += 1
                                out.append(frame)
                                continue
                        table = self._table(process, e, stats, local)
                        v = e.vaddr(look)
                        if v is not None:
                            name = table.lookup(v)
                            if name and self.lines:
                                source_line = self._source_line(process, e, v, stats, local)
                        if name is None and table is EMPTY:
                            reason = 'no_symbols'
                    elif state == _ANON:
                        kind, rename = self._jit_frames(st)
                        reason = 'anon'
                        if self.perf_map:
                            if not perfmap_checked:
                                perfmap_checked = True
                                perfmap = self._perfmap(process, st, stats)
                            if perfmap is not None:
                                name = perfmap.lookup(look)
                                if name and kind != FRAME_JIT:
                                    # a runtime's frame (jvm, v8js): its name is the whole story, an
                                    # anonymous mapping tells a backend nothing more
                                    mapping = None
                                    if rename is not None:
                                        name = rename(name)
                    elif state == _VDSO:
                        table, loads, bid, bkind = self._vdso_table(process, e, stats)
                        if bid and mapping.build_id != bid:
                            e.mapping = mapping = Mapping(e.start, e.end, e.offset, e.path, bid, bkind)
                        e.loads = loads
                        v = e.vaddr(look)
                        name = (table.lookup(v) if v is not None else None) or VDSO
                    elif state == _VSYSCALL:
                        name = VSYSCALL
                    else:
                        reason = e.reason or 'unreadable'
                except Exception:  # noqa: BLE001 - never let one frame break a stack
                    name, reason, kind, mapping = None, 'unreadable', e.kind, e.mapping
                if name:
                    resolved += 1
                    if source_line is DEFERRED:  # no line yet: not kept, so it is looked up again
                        frame = Frame(name, addr, kind, mapping)
                    elif source_line is not None:
                        frame = Frame(name, addr, kind, mapping, source_line[0], source_line[1])
                        self._keep_frame(e, fk, frame)
                    else:
                        frame = Frame(name, addr, kind, mapping)
                        if state == _FILE:
                            self._keep_frame(e, fk, frame)
                    out.append(frame)
                else:
                    unknown[reason] = unknown.get(reason, 0) + 1
                    out.append(Frame('', addr, kind, mapping))
            self._flush_stats(stats, unknown, resolved)
            return out

    def _keep_frame(self, e: _Entry, fk: int, frame: Frame) -> None:
        if self._frames_kept >= MAX_KEPT_FRAMES:
            for x in self._frame_entries:
                x.frames = None
            self._frame_entries = []
            self._frames_kept = 0
        if e.frames is None:
            e.frames = {}
            self._frame_entries.append(e)
        e.frames[fk] = frame
        self._frames_kept += 1

    def _jit_frames(self, st: Optional[_Proc]) -> Tuple[str, Any]:
        if st is None or self.jit_frames_of is None:
            return FRAME_JIT, None
        lay = st.layout
        if lay.jit is None:
            try:
                jf = self.jit_frames_of(lay.mappings_ref)
                lay.jit = (jf.kind, jf.rename)
            except Exception:  # noqa: BLE001 - a detector bug leaves the generic kind
                lay.jit = (FRAME_JIT, None)
        return lay.jit

    def reload_perf_map(self, pid: int, start_time: Any) -> None:
        """The process rewrote its perf map from the start (a JVM asked for it): read it anew at its
        next frame instead of its appended tail. Thread-safe."""
        with self._lock:
            key = ('perfmap', pid, start_time)
            self.cache.pop(key)

    def _perfmap(self, process: Any, st: _Proc, stats: List[int]) -> Optional[PerfMap]:
        key = ('perfmap', process.pid, getattr(process, 'start_time', 0))
        pm = self._cache_get(key, stats)
        if pm is None:
            root = self._root(process)
            if st.perfmap_paths is None:
                st.perfmap_paths = perf_map_paths(process.pid, self.proc)
            for path in st.perfmap_paths:
                shown = join_root(root, path)
                if os.path.exists(shown):
                    # perf's rule: the map of a process is trusted if its user or root owns it
                    pm = PerfMap(shown, self.telemetry, root, path, process_owners(process.pid, self.proc),
                                 process.pid, self.opener)
                    break
            if pm is None:
                return None
            pm.refresh()
            self._cache_put(key, pm, stats)
            return pm
        if pm.refresh():
            self._resize(key, pm)
        return pm

    # ----------------------------------------------------------------------- kernel frames
    def load_kernel_symbols(self) -> bool:
        """Load /proc/kallsyms now (it is otherwise loaded at the first kernel frame). Never raises."""
        with self._lock:
            try:
                self.kallsyms.maybe_refresh()
            except Exception:  # noqa: BLE001 - symbolize_kernel reports what it cannot resolve
                return False
            return self.kallsyms.table is not None

    def symbolize_kernel(self, addresses: Sequence[int]) -> List[Frame]:
        """Frames for kernel ``addresses`` (leaf first) from /proc/kallsyms. Never raises."""
        with self._lock:
            unknown: Dict[str, int] = {}
            resolved = 0
            out: List[Frame] = []
            try:
                self.kallsyms.maybe_refresh()
            except Exception:  # noqa: BLE001
                pass
            ks = self.kallsyms
            adjust = self.adjust_return_addresses
            for n, addr in enumerate(addresses):
                addr = int(addr)
                look = addr - 1 if adjust and n > 0 and addr > 0 else addr
                hit = ks.lookup(look)
                if hit is None:
                    reason = 'kernel_restricted' if ks.restricted or ks.table is None else 'no_symbol'
                    unknown[reason] = unknown.get(reason, 0) + 1
                    out.append(Frame('', addr, FRAME_KERNEL, None))
                    continue
                name, module = hit
                mapping = self._kernel_mappings.get(module)
                if mapping is None:
                    lo, hi = ks.module_ranges.get(module, (0, 0))
                    mapping = Mapping(lo, hi, 0, module)
                    self._kernel_mappings[module] = mapping
                resolved += 1
                out.append(Frame(name, addr, FRAME_KERNEL, mapping))
            if ks.loads != getattr(self, '_kallsyms_loads', 0):
                self._kallsyms_loads = ks.loads
                self._kernel_mappings = {}
            self._flush_stats([0, 0, 0], unknown, resolved)
            return out

    # ---------------------------------------------------------------------------- helpers
    def stats(self) -> Dict[str, Any]:
        with self._lock:
            return {
                'cache_bytes': self.cache.bytes,
                'cache_entries': len(self.cache),
                'memory_budget_bytes': self.memory_budget_bytes,
                'processes': len(self._procs),
                'layouts': len(self._layouts),
                'kallsyms_symbols': len(self.kallsyms.table) if self.kallsyms.table is not None else 0,
            }



