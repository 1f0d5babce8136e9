# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Per-process ``find_table`` for the unwinder, over CFI tables cached per file identity.

* The tables live in ``host.budget.ByteLRU``: given one (``cache=``), the byte cache shared
  with the symbolizer under ``receiver.symbolizer.memory_budget_mb`` (through its ``cfi``
  view); else a cache of their own of ``memory_budget_bytes``. (``ByteLRU`` and
  ``split_memory_budget`` are still importable from here.)
* ``CfiTables.finder(process)`` → ``find_table(address) -> (CfiTable, load_bias) | None``:
  the process's mappings (``ProcessInfo``-like: ``pid, start_time, mappings, root``) are
  bisected; a file mapping is opened through ``/proc/PID/map_files/START-END`` (deleted
  files too) or ``/proc/PID/root/PATH`` (containers), identified by its GNU build id, else
  ``(dev, inode, size, mtime)``, and its table compiled once (``cfi.build_cfi_table``).
  ``load_bias`` turns a process address into the ELF virtual address:
  ``vaddr = address - bias`` with ``bias = map.start - map.offset + seg.offset - seg.vaddr``
  for the PT_LOAD holding ``map.offset``.
* The vDSO image is read from ``/proc/PID/mem`` at the ``[vdso]`` mapping once per boot
  (``host.proc.vdso_image``, shared with the symbolizer), and has its own ``.eh_frame``; its
  table is cached as a file's is.
* Anonymous memory, ``[stack]``, ``[vsyscall]``, unreadable or non-ELF files: ``None``
  (the unwinder walks that frame with frame pointers in ``auto``).

Build budget: compiling a table costs 1-300 ms (python3.11: ~150 ms), and a host has many
binaries, so the first drains could take seconds. ``set_build_budget(seconds)`` (the receiver
calls it before each drain; 0 for the final drains at stop) bounds the compile time until the
next call: once spent, a file without a cached table is left unresolved — that frame is walked
with frame pointers (``auto``) or ends the stack (``dwarf``) — and compiled at a later drain
(``unwind.cfi.tables.deferred``). ``None`` (the default) means no limit.

Telemetry: ``unwind.cfi.cache.hits``/``misses``, ``unwind.cfi.build_duration`` (seconds),
``unwind.cfi.tables.built{result:ok|empty|error}``, ``unwind.cfi.tables.deferred``, gauge
``unwind.cfi.cache.bytes``.
"""
from __future__ import annotations

import threading
import time
from array import array
from bisect import bisect_right
from collections import OrderedDict
from typing import Any, Callable, Dict, Optional, Tuple

from ..host.budget import (  # noqa: F401 - ByteLRU and the budget split are imported from here too
    CFI_BUDGET_SHARE, DEFAULT_MEMORY_BUDGET_MB, MIN_CFI_BUDGET_MB, ByteLRU, split_memory_budget,
)
from ..host.files import FileOpener, record_refusal
from ..host.proc import DELETED_SUFFIX, VDSO, boot_id, vdso_image
from .cfi import EMPTY_TABLE, CfiError, CfiTable, TooManySections, build_cfi_table
from .memo import WalkMemo

MAX_CACHED_RULES = 65536  # per process (a few MB at most): cleared when exceeded
CACHE_OWNER = 'cfi'  # this module's part of the shared byte cache (host.budget.ByteLRU.view)


class FileCfi:
    """A compiled table plus the PT_LOAD segments needed to compute load biases."""

    __slots__ = ('table', 'loads', 'build_id', 'nbytes')

    def __init__(self, table: CfiTable, loads: Tuple[Tuple[int, int, int, int], ...], build_id: str = '') -> None:
        self.table = table
        self.loads = loads
        self.build_id = build_id
        self.nbytes = table.nbytes + 64 * len(loads) + 200

    def bias(self, map_start: int, map_offset: int) -> int:
        for vaddr, offset, filesz, _ in self.loads:
            seg_off = offset & ~0xFFF
            if seg_off <= map_offset < offset + max(filesz, 1):
                return map_start - map_offset + offset - vaddr
        return map_start - map_offset


_NONE_FILE = FileCfi(EMPTY_TABLE, ())


FindTable = Callable[[int], Optional[Tuple[CfiTable, int]]]


class _Deferred(Exception):
    """The build budget is spent: leave the mapping unresolved for now."""

# entry states
_UNRESOLVED, _OK, _NONE = range(3)


class _Entry:
    __slots__ = ('start', 'end', 'offset', 'path', 'state', 'found', 'm')

    def __init__(self, m: Any) -> None:
        self.m = m
        self.start = int(m.start)
        self.end = int(m.end)
        self.offset = int(m.offset)
        self.path = getattr(m, 'path', '') or ''
        self.state = _UNRESOLVED
        self.found: Optional[Tuple[CfiTable, int]] = None


class _Proc:
    __slots__ = ('mappings_ref', 'starts', 'entries', 'find_table', 'rules', 'walks')

    def __init__(self, mappings: Any) -> None:
        self.mappings_ref = mappings
        ms = sorted((m for m in mappings if m.end > m.start), key=lambda m: m.start)
        self.entries = [_Entry(m) for m in ms]
        self.starts = array('Q', [e.start for e in self.entries])
        self.find_table: Optional[FindTable] = None  # built by CfiTables.walk_state with the entry
        # pc -> CFI rule, for the unwinder (unwind_ex's rule_cache): a hot loop's samples repeat
        # the same few pcs, and a lookup is two bisects. Valid as long as these mappings are.
        self.rules: Dict[int, Any] = {}
        self.walks = WalkMemo()  # whole walks, valid as long as the rules are


class CfiTables:
    def __init__(self, telemetry: Any, memory_budget_bytes: int = 64 << 20, proc: str = '/proc',
                 max_processes: int = 16384,  # the receiver's max_processes: fewer thrash
                 cache: Optional[ByteLRU] = None) -> None:
        self.telemetry = telemetry
        self.proc = proc.rstrip('/') or '/proc'
        self.opener = FileOpener(telemetry, self.proc)
        self.cache = (cache if cache is not None else ByteLRU(memory_budget_bytes)).view(CACHE_OWNER)
        self.max_processes = max_processes
        self._lock = threading.RLock()
        self._procs: 'OrderedDict[Any, _Proc]' = OrderedDict()
        self._ids: 'OrderedDict[Any, Any]' = OrderedDict()  # stat key -> file key
        self._boot_id = boot_id(self.proc)
        self._evictions_counted = 0
        self.build_seconds = 0.0
        self._budget: Optional[float] = None  # seconds of compiling left (None: unlimited)
        self.deferrals = 0  # lookups left unresolved because the budget was spent (callers may retry later)
        for name in ('unwind.cfi.cache.hits', 'unwind.cfi.cache.misses', 'unwind.cfi.cache.evictions',
                     'unwind.cfi.build_duration', 'unwind.cfi.tables.deferred'):
            telemetry.declare(name)
        for r in ('ok', 'empty', 'error'):
            telemetry.declare('unwind.cfi.tables.built', ('result:' + r,))
        telemetry.gauge('unwind.cfi.cache.bytes', 0)

    def set_build_budget(self, seconds: Optional[float]) -> None:
        """Compile at most about ``seconds`` of tables until the next call (None: no limit)."""
        self._budget = None if seconds is None else float(seconds)

    # ------------------------------------------------------------------------ processes
    def finder(self, process: Any) -> FindTable:
        """``find_table`` for one process (valid while its mappings list is the same)."""
        return self.walk_state(process)[0]

    def walk_state(self, process: Any) -> Tuple[FindTable, Dict[int, Any], WalkMemo]:
        """``(find_table, rule_cache, walk memo)`` for one process, valid while its mappings list
        is the same (see ``unwind_ex`` and ``memo.py``)."""
        key = (process.pid, getattr(process, 'start_time', 0))
        with self._lock:
            st = self._procs.get(key)
            mappings = process.mappings
            if st is None or st.mappings_ref is not mappings:
                st = _Proc(mappings)
                st.find_table = self._find_table(process, st)
                self._procs[key] = st
                while len(self._procs) > self.max_processes:
                    self._procs.popitem(last=False)
            self._procs.move_to_end(key)
            if len(st.rules) > MAX_CACHED_RULES:
                st.rules.clear()
        return st.find_table, st.rules, st.walks

    def _find_table(self, process: Any, st: _Proc) -> FindTable:
        starts = st.starts
        entries = st.entries

        def find_table(address: int) -> Optional[Tuple[CfiTable, int]]:
            i = bisect_right(starts, address) - 1
            if i < 0:
                return None
            e = entries[i]
            if address >= e.end:
                return None
            if e.state == _UNRESOLVED:
                self._resolve(process, e)
            return e.found

        return find_table

    def _resolve(self, process: Any, e: _Entry) -> None:
        with self._lock:
            if e.state != _UNRESOLVED:
                return
            try:
                fc = self._file_cfi(process, e)
            except _Deferred:
                self.deferrals += 1
                self.telemetry.count('unwind.cfi.tables.deferred')
                return  # stays unresolved: compiled at a later drain
            except Exception:  # noqa: BLE001 - never let a file break unwinding
                fc = None
            if fc is None or not len(fc.table):
                e.state, e.found = _NONE, None
            else:
                e.state, e.found = _OK, (fc.table, fc.bias(e.start, e.offset))

    def _file_cfi(self, process: Any, e: _Entry) -> Optional[FileCfi]:
        path = e.path
        if path == VDSO:
            return self._vdso_cfi(process, e)
        if not path or path.startswith('[') or path.startswith('//anon') or path.startswith('/dev/'):
            return None
        clean = path[: -len(DELETED_SUFFIX)] if path.endswith(DELETED_SUFFIX) else path
        # the mapping's own identity (dev, inode from /proc/PID/maps): known files need no syscall,
        # which also serves processes that exited before their samples were unwound
        mdev, minode = getattr(e.m, 'dev', ''), int(getattr(e.m, 'inode', 0) or 0)
        mkey = ('map', str(mdev), minode, clean) if minode else None
        if mkey is not None:
            fkey = self._ids.get(mkey)
            hit = self.cache.get(fkey) if fkey is not None else None
            if hit is not None:
                self.telemetry.count('unwind.cfi.cache.hits')
                return hit
        if self._budget is not None and self._budget <= 0:
            raise _Deferred()  # (before any syscall: this is retried for every frame until compiled)
        # through the opener: the mapped inode (map_files), else the path inside the process's
        # root, else the host path, only if it is the same file
        found = self.opener.open_mapping(process.pid, e.start, e.end, path, getattr(process, 'root', ''),
                                         inode=minode, dev=str(mdev), host_fallback=True, verify=True)
        if found is None:
            return None
        f, st, _, _ = found
        with f:
            skey = ('stat', st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            fkey = self._ids.get(skey)
            if fkey is not None:
                hit = self.cache.get(fkey)
                if hit is not None:
                    self.telemetry.count('unwind.cfi.cache.hits')
                    if mkey is not None:
                        self._remember(mkey, fkey)
                    return hit
            if self._budget is not None and self._budget <= 0:
                raise _Deferred()
            self.telemetry.count('unwind.cfi.cache.misses')
            fc = self._build(lambda: build_cfi_table(stream=f), skey, clean, pid=process.pid)
            if mkey is not None:
                self._remember(mkey, self._ids.get(skey))
            return fc

    def _remember(self, key: Any, fkey: Any) -> None:
        if fkey is None:
            return
        self._ids[key] = fkey
        if len(self._ids) > 65536:
            self._ids.popitem(last=False)

    def _build(self, build: Any, skey: Any, where: str = '', pid: int = 0) -> FileCfi:
        t0 = time.perf_counter()
        result = 'ok'
        try:
            table, info = build()
            fc = FileCfi(table, tuple(info.loads), info.build_id)
            if not len(table):
                result = 'empty'
        except TooManySections:
            record_refusal(self.telemetry, 'too_many_sections', where, pid, 'elf', skey[1:3])
            fc, info, result = _NONE_FILE, None, 'error'
        except (CfiError, OSError, ValueError):
            fc, info, result = _NONE_FILE, None, 'error'
        except Exception:  # noqa: BLE001 - malformed input
            fc, info, result = _NONE_FILE, None, 'error'
        dt = time.perf_counter() - t0
        self.build_seconds += dt
        if self._budget is not None:
            self._budget -= dt
        self.telemetry.count('unwind.cfi.build_duration', dt)
        self.telemetry.count('unwind.cfi.tables.built', 1, ('result:' + result,))
        fkey = ('gnu', fc.build_id) if fc.build_id else skey
        # another file with the same build id (a container's copy) shares the table
        old = self.cache.get(fkey)
        if old is not None:
            fc = old
        self.cache.put(fkey, fc)
        self._remember(skey, fkey)
        evictions = self.cache.evictions  # (of this owner: in a shared cache, the symbolizer's puts evict too)
        if evictions != self._evictions_counted:
            self.telemetry.count('unwind.cfi.cache.evictions', evictions - self._evictions_counted)
            self._evictions_counted = evictions
        self.telemetry.gauge('unwind.cfi.cache.bytes', self.cache.bytes)
        return fc

    def _vdso_cfi(self, process: Any, e: _Entry) -> Optional[FileCfi]:
        skey = ('vdso', self._boot_id, e.end - e.start)
        fkey = self._ids.get(skey)
        fc = self.cache.get(fkey) if fkey is not None else None
        if fc is not None:
            self.telemetry.count('unwind.cfi.cache.hits')
            return fc
        self.telemetry.count('unwind.cfi.cache.misses')
        image = vdso_image(process.pid, e.start, e.end, self.proc)
        if image is None:
            return None
        return self._build(lambda: build_cfi_table(data=image), skey)

    def stats(self) -> Dict[str, Any]:
        with self._lock:
            return {'cache_bytes': self.cache.bytes, 'cache_entries': len(self.cache), 'processes': len(self._procs),
                    'build_seconds': self.build_seconds}


