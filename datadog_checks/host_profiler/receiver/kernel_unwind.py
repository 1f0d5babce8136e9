# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Loads the unwind tables of sampled processes into the BPF maps of the in-kernel unwinder
(bpf/kernel_unwind.h), on a thread of its own.

* A process is loaded at its first sample (the sampler's ``sampled`` event): its executable
  mappings are read from /proc, each file's CFI is compiled (unwind/cfi.py, cached per file
  identity: build id, else device/inode/size/mtime) into stack deltas (unwind/stack_deltas.py)
  and written to ``ku_rows``/``ku_tables``, then the process's sorted ranges to ``ku_procs``.
  Until then its samples go through the stack copy, unwound in user space as in ``dwarf``
  (``unwind.kernel.copy_fallback{reason:no_process}``); a file whose table is not in yet
  (written ``PENDING`` first, so the big ones do not hold back the others) sends the samples
  that reach it the same way (``reason:table_pending``).
* Tables are evicted least recently used when the rows do not fit ``kernel_unwind_memory_mb``;
  the processes that used an evicted table get it back at their next request.
* A pc in none of a process's known mappings (a library loaded later): the kernel marks the
  process in ``ku_refresh`` and this thread reads its mappings again.
"""
from __future__ import annotations

import ctypes as ct
import errno
import os
import queue
import threading
import time
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

from ..host.files import FileOpener, FileRefused
from ..host.proc import DELETED_SUFFIX, VDSO, vdso_image
from ..runtime.malloc_trim import release_freed_memory
from ..unwind.cfi import CfiError, build_cfi_table
from ..unwind.stack_deltas import ROW_BYTES, RULE_BYTES, RuleSet, RuleSetFull, StackDeltas, compile_deltas

KU_STATS = (
    'walks', 'complete', 'truncated', 'failed', 'fallback_no_process', 'fallback_table_pending', 'frames',
    'fp_frames', 'signal_frames', 'stacks_full', 'tail_call_failed', 'copy_lost', 'read_error',
    'unknown_mapping', 'tail_calls', 'rule_searches', 'walk_ns',
)
TABLE_NONE = 0xFFFFFFFF
TABLE_PENDING = 0xFFFFFFFE
MAX_MAPS = 256
RULES_CAPACITY = 65536
TABLES_CAPACITY = 8192
# A binary with more CFI than this (LLVM, clang: ~5 MB of .eh_frame, ~1M rows) is not compiled for the
# kernel: its build takes seconds of CPU and ~200 MB of transient memory in Python. Its samples keep
# the stack copy, unwound in user space by the lazy table that decodes only the FDEs samples hit.
MAX_KERNEL_CFI_BYTES = 4 << 20
# Table builds spend at most this share of one CPU on average (2%) (a token bucket of CPU seconds, with a
# burst for the first processes of a start); a binary left for later keeps the copy until then.
BUILD_CPU_SHARE = 0.02
BUILD_CPU_BURST_S = 3.0
# Files with at least this much CFI (python3.11: 400 KiB, libjvm: 1.4 MiB) are compiled in a child process
# (unwind/cfi_worker.py): their compile leaves ~10 MiB of half-empty object arenas in the process; a
# smaller one (libc: 150 KiB, the test programs) is compiled here, without the child's ~70 ms start.
WORKER_MIN_CFI_BYTES = 256 << 10
# Iterations of the BPF binary search of a table's rows (KU_SEARCH_STEPS): a table holds fewer rows than
# 2^21 (MAX_KERNEL_CFI_BYTES keeps them under ~1M: libLLVM's 5 MB of CFI make 949k). Each iteration less
# is ~4% less of ku_walk's verification (25 -> 21: 730k -> 474k instructions with ku_cache).
SEARCH_STEPS = 21
MAX_TABLE_ROWS = (1 << SEARCH_STEPS) - 1
REFRESH_EVERY_S = 1.0
BATCH = 65536
# The loader starts this long after attach: the first drain (0.2 s after start) and its samples come
# before ku_walk's verification (~0.3 s of CPU) and the first table builds, which would otherwise run
# beside the start-up on the other CPU. Samples of that second are copied and unwound in user space,
# as any process's before its tables are in. The start-up's total CPU is the same, spread later.
LOADER_START_DELAY_S = 1.0

COUNTERS = (
    'unwind.kernel.tables.loaded', 'unwind.kernel.tables.evicted', 'unwind.kernel.tables.failed',
    'unwind.kernel.tables.too_big', 'unwind.kernel.tables.deferred', 'unwind.kernel.tables.worker_failed', 'unwind.kernel.load_duration', 'unwind.kernel.samples', 'unwind.kernel.frames',
    'unwind.kernel.partial', 'unwind.kernel.copy_fallback', 'unwind.kernel.stacks_full',
)
GAUGES = ('unwind.kernel.bytes', 'unwind.kernel.rows', 'unwind.kernel.rules', 'unwind.kernel.processes')
METRICS = COUNTERS + GAUGES


def load_bias(loads: Any, map_start: int, map_offset: int) -> int:
    """address - ELF vaddr in a mapping of a file with these PT_LOAD segments (as unwind/tables.py)."""
    for vaddr, offset, filesz, _ in loads:
        if offset & ~0xFFF <= map_offset < offset + max(filesz, 1):
            return map_start - map_offset + offset - vaddr
    return map_start - map_offset


PROC_BYTES = 8 + 32 * MAX_MAPS  # a ku_procs value


def rows_capacity(memory_mb: int) -> int:
    """Rows in 3/4 of the budget (the rest: processes' ranges, rules, tables)."""
    return max(1024, (int(memory_mb) << 20) * 3 // 4 // ROW_BYTES)


def procs_capacity(memory_mb: int, max_processes: int) -> int:
    """Processes whose ranges fit in 1/4 of the budget (8 KiB each), at most max_processes."""
    return max(16, min(int(max_processes), (int(memory_mb) << 20) // 4 // PROC_BYTES))


class _Table:
    """A table in the maps (its rows are not kept here: the kernel has them)."""

    __slots__ = ('tid', 'first', 'n', 'loads', 'users')

    def __init__(self, tid: int, first: int, n: int, loads) -> None:
        self.tid = tid
        self.first = first
        self.n = n
        self.loads = loads
        self.users: set = set()


class _Rows:
    """First-fit allocator of row ranges in ku_rows (free ranges coalesced)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.free: List[List[int]] = [[0, capacity]]  # [start, length], sorted
        self.used = 0

    def alloc(self, n: int) -> Optional[int]:
        for i, (s, ln) in enumerate(self.free):
            if ln >= n:
                if ln == n:
                    del self.free[i]
                else:
                    self.free[i] = [s + n, ln - n]
                self.used += n
                return s
        return None

    def release(self, start: int, n: int) -> None:
        self.used -= n
        fr = self.free
        fr.append([start, n])
        fr.sort()
        out: List[List[int]] = []
        for s, ln in fr:
            if out and out[-1][0] + out[-1][1] == s:
                out[-1][1] += ln
            else:
                out.append([s, ln])
        self.free = out


class KernelUnwind:
    def __init__(self, memory_mb: int = 64, telemetry: Any = None, log: Any = None, proc: str = '/proc',
                 max_processes: int = 16384, stacks_size: int = 16384, build_process: bool = True,
                 start_delay_s: float = LOADER_START_DELAY_S) -> None:
        self.memory_mb = int(memory_mb)
        self.start_delay_s = float(start_delay_s)
        self.telemetry = telemetry
        self.log = log
        self.proc = proc
        self.max_processes = procs_capacity(memory_mb, max_processes)
        self.stacks_size = max(1, int(stacks_size))
        self.rows_capacity = rows_capacity(self.memory_mb)
        self.opener = FileOpener(telemetry, proc)
        self._rows = _Rows(self.rows_capacity)
        self._rules = RuleSet(RULES_CAPACITY)
        self._tables: 'OrderedDict[Any, _Table]' = OrderedDict()  # file key -> table (LRU order)
        self._failed: Dict[Any, str] = {}  # file key -> why (no CFI, unreadable): frame pointers there
        self._free_ids = list(range(TABLES_CAPACITY - 1, -1, -1))
        self._procs: Dict[int, Tuple[Any, ...]] = {}  # pid -> file keys its entry refers to
        self._incomplete: set = set()  # pids with a PENDING range (an evicted or failed load)
        self._queue: 'queue.Queue[Tuple[str, int]]' = queue.Queue()
        self._queued: set = set()
        self._own_pid = os.getpid()
        self._cfi_bytes: Dict[Any, int] = {}  # file key -> bytes of CFI, between _too_big and the build
        self._copy_only: set = set()  # file keys over MAX_KERNEL_CFI_BYTES: their samples keep the copy
        self._build_tokens = BUILD_CPU_BURST_S  # CPU seconds table builds may spend now
        self._tokens_at = time.monotonic()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()  # tables, rows, processes (taken before _io, never after)
        # map writes: close() takes it to drop the maps, so that no write follows the BPF object's cleanup
        # (its fds may be reused); it waits for one write at most, never for a table being compiled
        self._io = threading.RLock()
        self._maps: Dict[str, Any] = {}
        self._bpf: Any = None  # BCC's BPF object, from attach() until close()
        self._prog_type = 0
        self._walk_fd: Optional[int] = None  # ku_walk once loaded (see _load_walk)
        self._walk_error = ''
        self.walk_load_cpu_seconds = 0.0  # its verification, CPU of the process while it ran
        self._prev_stats = [0] * len(KU_STATS)
        self.load_seconds = 0.0
        # compile CFI in a short-lived child process (unwind/cfi_worker.py): its transient memory
        # leaves with it; off after the first failure to run one (then compiled here)
        self.build_process = bool(build_process)
        self.loads = 0
        self.evictions = 0
        self._gen = 0  # generation of the last table written (ku_tables[].gen, never 0)
        self._stats_batch: Any = None  # buffers of _read_stats' batch read; False: the kernel refused it
        if telemetry is not None:
            for name in COUNTERS:
                telemetry.declare(name)
            for name in GAUGES:  # submitted as gauges, as metadata.csv says
                telemetry.gauge(name, 0)

    # ------------------------------------------------------------------ BPF side
    def cflags(self) -> Dict[str, Any]:
        return {
            'KU_RULES': RULES_CAPACITY,
            'KU_ROWS': self.rows_capacity,
            'KU_TABLES': TABLES_CAPACITY,
            'KU_PROCS': self.max_processes,
            'KU_STACKS': self.stacks_size,
            'KU_SEARCH_STEPS': SEARCH_STEPS,
        }

    def attach(self, bpf: Any, perf_event_type: int) -> None:
        """Take the maps and start the loader thread. ``ku_walk`` (whose verification costs ~0.5 s of
        CPU) is loaded into the tail-call array by the loader thread just before it writes the first
        process to ``ku_procs``: until then the BPF program never tail-calls it (a process not in
        ``ku_procs`` is copied, KU_ST_FB_NO_PROCESS), so it is off the path to the first sample."""
        self._bpf = bpf
        self._prog_type = perf_event_type
        for name in ('ku_rules', 'ku_rows', 'ku_tables', 'ku_procs', 'ku_stats', 'ku_refresh', 'ku_progs'):
            self._maps[name] = bpf[name]
        self._write_rules()
        self._thread = threading.Thread(target=self._run, name='host_profiler-kernel-unwind', daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the loader (a table being compiled is abandoned when done) and drop the maps."""
        self._stop.set()
        self._queue.put(('stop', 0))
        with self._io:
            progs = self._maps.get('ku_progs')
            if progs is not None:
                try:
                    # the tail-call entry refers to ku_walk: cleared now, not by the kernel's deferred
                    # clean-up of the array, so that the program is gone when BCC closes its fd
                    del progs[ct.c_int(0)]
                except Exception:  # noqa: BLE001
                    pass
            self._maps = {}
            self._bpf = None
        th = self._thread
        if th is not None and th is not threading.current_thread():
            th.join(1.0)  # it exits at once unless it is compiling a table (then it ends when done)

    # ------------------------------------------------------------------ requests (any thread)
    def request(self, pid: int) -> None:
        """Load this process (its first sample, or its maps changed). Not the profiler itself: it maps
        LLVM (BCC), whose table alone takes ~200 MB of transient memory to build; its own samples
        keep the stack copy (counted as the no-process fallback)."""
        if pid == self._own_pid:
            return
        if pid and pid not in self._queued:
            self._queued.add(pid)
            self._queue.put(('load', int(pid)))

    def forget(self, pid: int) -> None:
        """The process exited or exec'd: drop its entry (an exec'd one is announced again)."""
        self._queue.put(('forget', int(pid)))

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Tests and benchmarks: wait until every request so far is done."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.02)
        return False

    # ------------------------------------------------------------------ stats
    def _read_stats(self) -> Optional[List[int]]:
        """ku_stats summed over the CPUs, in one BPF_MAP_LOOKUP_BATCH call (one lookup per counter
        through BCC: a system call and a per-CPU decode each, ~7 µs a counter at every drain); BCC's
        lookups when the kernel refuses the batch. None when closed."""
        m = self._maps.get('ku_stats')
        if m is None:
            return None
        n = len(KU_STATS)
        try:
            if self._stats_batch is not False:
                from bcc.libbcc import lib

                if self._stats_batch is None:
                    ncpu = max(1, int(m.total_cpu))  # BCC's PerCpuArray: the possible CPUs
                    self._stats_batch = ((ct.c_uint32 * n)(), (ct.c_uint64 * (n * ncpu))(), ncpu,
                                         ct.c_uint32(0), ct.c_uint32(0))
                keys, vals, ncpu, out_batch, count = self._stats_batch
                count.value = n
                res = lib.bpf_lookup_batch(m.map_fd, None, ct.byref(out_batch), ct.byref(keys), ct.byref(vals),
                                           ct.byref(count))
                if (res == 0 or ct.get_errno() == errno.ENOENT) and count.value == n:
                    return [sum(vals[i * ncpu:(i + 1) * ncpu]) for i in range(n)]
                self._stats_batch = False  # refused: BCC's way from now on
            return [int(sum(m[ct.c_int(i)])) for i in range(n)]
        except Exception:  # noqa: BLE001 - closed meanwhile
            return None

    def kernel_stats(self) -> Dict[str, int]:
        cur = self._read_stats()
        if cur is None:
            return {}
        return {name: v for name, v in zip(KU_STATS, cur) if not name.startswith('_')}

    def report(self) -> Dict[str, int]:
        """Kernel counters since the last call, also counted in telemetry (called at each drain)."""
        cur = self._read_stats()
        if cur is None:
            return {}
        delta = {name: c - p for name, c, p in zip(KU_STATS, cur, self._prev_stats)}
        self._prev_stats = cur
        t = self.telemetry
        if t is not None:
            t.count('unwind.kernel.samples', delta['walks'])
            t.count('unwind.kernel.frames', delta['frames'])
            t.count('unwind.kernel.partial', delta['truncated'], ('reason:depth_limit',))
            t.count('unwind.kernel.partial', delta['failed'], ('reason:unwind_incomplete',))
            t.count('unwind.kernel.copy_fallback', delta['fallback_no_process'], ('reason:no_process',))
            t.count('unwind.kernel.copy_fallback', delta['fallback_table_pending'], ('reason:table_pending',))
            t.count('unwind.kernel.copy_fallback', delta['tail_call_failed'], ('reason:tail_call_failed',))
            t.count('unwind.kernel.stacks_full', delta['stacks_full'])
            with self._lock:
                t.gauge('unwind.kernel.bytes', self._rows.used * ROW_BYTES + len(self._rules) * RULE_BYTES)
                t.gauge('unwind.kernel.rows', self._rows.used)
                t.gauge('unwind.kernel.rules', len(self._rules))
                t.gauge('unwind.kernel.processes', len(self._procs))
        return delta

    def stats(self) -> Dict[str, Any]:
        with self._lock:
            return {'tables': len(self._tables), 'rows': self._rows.used, 'rules': len(self._rules),
                    'bytes': self._rows.used * ROW_BYTES + len(self._rules) * RULE_BYTES,
                    'processes': len(self._procs), 'loads': self.loads, 'evictions': self.evictions,
                    'load_seconds': self.load_seconds}

    # ------------------------------------------------------------------ loader thread
    def _run(self) -> None:
        if self._stop.wait(self.start_delay_s):
            return
        next_refresh = time.monotonic() + REFRESH_EVERY_S
        while not self._stop.is_set():
            try:
                kind, pid = self._queue.get(timeout=max(0.01, next_refresh - time.monotonic()))
            except queue.Empty:
                kind, pid = '', 0
            try:
                if kind == 'load':
                    self._queued.discard(pid)
                    self._load(pid)
                elif kind == 'forget':
                    self._forget(pid)
            except Exception:  # noqa: BLE001 - one process must not stop the loader
                if self.log:
                    self.log.debug('kernel unwind: loading pid %s failed', pid, exc_info=True)
            finally:
                if kind:
                    self._queue.task_done()
            if time.monotonic() >= next_refresh:
                next_refresh = time.monotonic() + REFRESH_EVERY_S
                self._refresh()

    def _refresh(self) -> None:
        with self._io:
            m = self._maps.get('ku_refresh')
            if m is None:
                return
            try:
                pids = [k.value for k in m.keys()]
                for p in pids:
                    try:
                        del m[m.Key(p)]
                    except KeyError:
                        pass
            except Exception:  # noqa: BLE001
                return
        for p in pids:
            self.request(p)
        if self._may_build():  # a process waiting for builds is looked at again once there is budget
            for p in list(self._incomplete):
                self.request(p)

    def _forget(self, pid: int) -> None:
        with self._lock:
            keys = self._procs.pop(pid, None)
            self._incomplete.discard(pid)
            if keys is None:
                return
            for k in keys:
                t = self._tables.get(k)
                if t is not None:
                    t.users.discard(pid)
        with self._io:
            procs = self._maps.get('ku_procs')
            if procs is not None:
                try:
                    del procs[procs.Key(pid)]
                except KeyError:
                    pass

    def _load(self, pid: int) -> None:
        from .processes import read_process

        if self._stop.is_set():
            return
        info = read_process(pid, proc=self.proc)
        if info is None or not info.mappings:
            return
        maps = sorted((m for m in info.mappings if m.end > m.start), key=lambda m: m.start)[:MAX_MAPS]
        # identify every file first; write the entry with PENDING ranges, then load the tables
        entries = []  # (mapping, file key or None, opened file or image)
        for m in maps:
            entries.append([m] + list(self._identify(info, m)))
        need = [e for e in entries if e[1] is not None and e[1] not in self._tables and e[1] not in self._failed
                and e[1] not in self._copy_only and not self._too_big(e[1], e[2])]
        if need:
            self._write_proc(pid, entries)
        if need and self.build_process and self._may_build():
            self._build_in_child(need, pid)
        for e in need:
            if self._stop.is_set():
                break
            if e[1] in self._tables or e[1] in self._failed:
                continue
            if not self._may_build():
                # over the CPU budget: the rest stays PENDING (copied) and is retried at the next refresh
                if self.telemetry is not None:
                    self.telemetry.count('unwind.kernel.tables.deferred')
                break
            c0 = time.thread_time()
            self._build(e[1], e[2], pid)
            self._build_tokens -= time.thread_time() - c0
        for e in need:
            self._cfi_bytes.pop(e[1], None)
        if need:
            release_freed_memory()  # what compiling the CFI left in glibc's arenas
        for e in entries:
            src = e[2]
            if hasattr(src, 'close'):
                src.close()
        self._write_proc(pid, entries)

    def _may_build(self) -> bool:
        now = time.monotonic()
        self._build_tokens = min(BUILD_CPU_BURST_S,
                                 self._build_tokens + (now - self._tokens_at) * BUILD_CPU_SHARE)
        self._tokens_at = now
        return self._build_tokens > 0

    def _too_big(self, key: Any, src: Any) -> bool:
        """True (and remembered) when the file's CFI is over MAX_KERNEL_CFI_BYTES."""
        if src is None or isinstance(src, (bytes, bytearray)):
            return False
        from ..host.elf import parse_elf

        try:
            info = parse_elf(src, strict=False, go_build_id=False)
        except (OSError, ValueError):
            return False  # the build reports it
        cfi = sum(sec.size for name in ('.eh_frame', '.debug_frame')
                  for sec in [info.sections.get(name)] if sec is not None and not sec.nobits)
        if cfi <= MAX_KERNEL_CFI_BYTES:
            self._cfi_bytes[key] = cfi
            return False
        self._copy_only.add(key)
        if self.telemetry is not None:
            self.telemetry.count('unwind.kernel.tables.too_big')
        return True

    def _identify(self, info: Any, m: Any) -> Tuple[Any, Any]:
        """(file key, source to build from: an open file or a vDSO image) or (None, None): no table."""
        path = m.path or ''
        if path == VDSO:
            image = vdso_image(info.pid, m.start, m.end, self.proc)
            if image is None:
                return None, None
            return ('vdso', len(image), hash(image)), image
        if not path or path.startswith('[') or path.startswith('//anon') or path.startswith('/dev/'):
            return None, None
        clean = path[: -len(DELETED_SUFFIX)] if path.endswith(DELETED_SUFFIX) else path
        opener = self.opener
        f = st = None
        for open_candidate in (lambda: opener.open_mapped(info.pid, m.start, m.end),
                               lambda: opener.open_in_root(info.root or '/', clean, pid=info.pid)):
            try:
                f, st = open_candidate()
                break
            except (FileRefused, OSError, ValueError):
                continue
        if f is None:
            return None, None
        key = ('stat', st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if key in self._tables or key in self._failed or key in self._copy_only:
            f.close()
            return key, None
        return key, f

    def _build_in_child(self, need: List[List[Any]], pid: int) -> None:
        """Compile the CFI of these files in one child process (unwind/cfi_worker.py), so that the
        transient objects of the compile leave nothing in this process's RSS; each table then goes
        through ``_build``. A child that cannot run leaves them to ``_build`` in this process."""
        from ..unwind.cfi_worker import build_in_child

        sizes = self._cfi_bytes
        todo = [e for e in need if e[2] is not None and not isinstance(e[2], (bytes, bytearray))
                and sizes.get(e[1], 0) >= WORKER_MIN_CFI_BYTES]
        if not todo:
            return
        t0 = time.perf_counter()
        try:
            results, child_cpu = build_in_child([e[2] for e in todo])
        except OSError as e:
            self.build_process = False  # from now on in this process
            if self.log:
                self.log.warning('kernel unwind: compiling tables in a child process failed (%s); '
                                 'compiling them in the profiler process from now on', e)
            if self.telemetry is not None:
                self.telemetry.count('unwind.kernel.tables.worker_failed')
            return
        finally:
            self.load_seconds += time.perf_counter() - t0
        self._build_tokens -= child_cpu
        for e, res in zip(todo, results):
            if e[1] in self._tables or e[1] in self._failed:
                continue
            self._build(e[1], res, pid)

    def _build(self, key: Any, src: Any, pid: int) -> None:
        t0 = time.perf_counter()
        try:
            if isinstance(src, tuple):  # from the child process: (table, loads) or ('error', name, message)
                if src[0] == 'error':
                    raise CfiError('{}: {}'.format(src[1], src[2]))
                table, loads = src
            elif isinstance(src, (bytes, bytearray)):
                table, info = build_cfi_table(data=bytes(src), lazy=False)
                loads = tuple(info.loads)
            elif src is not None:
                table, info = build_cfi_table(stream=src, lazy=False)
                loads = tuple(info.loads)
            else:
                return
            with self._lock:
                deltas = compile_deltas(table, self._rules)
        except (CfiError, OSError, ValueError, RuleSetFull) as e:
            self._failed[key] = str(e)[:100]
            if self.telemetry is not None:
                self.telemetry.count('unwind.kernel.tables.failed')
            return
        finally:
            self.load_seconds += time.perf_counter() - t0
        if not len(deltas):
            self._failed[key] = 'no CFI'
            return
        self._write_rules()
        self._insert(key, deltas, loads, pid)
        dt = time.perf_counter() - t0
        if self.telemetry is not None:
            self.telemetry.count('unwind.kernel.tables.loaded')
            self.telemetry.count('unwind.kernel.load_duration', dt)

    def _insert(self, key: Any, deltas: StackDeltas, loads: Any, pid: int) -> None:
        n = len(deltas)
        if n > self.rows_capacity:
            self._failed[key] = 'too big for kernel_unwind_memory_mb'
            return
        if n > MAX_TABLE_ROWS:  # beyond the BPF search's reach: its samples keep the stack copy, as _too_big
            self._copy_only.add(key)
            if self.telemetry is not None:
                self.telemetry.count('unwind.kernel.tables.too_big')
            return
        with self._lock:
            first = self._rows.alloc(n)
            while (first is None or not self._free_ids) and self._tables:
                self._evict_one(keep=pid)
                first = self._rows.alloc(n) if first is None else first
            if first is None or not self._free_ids:
                self._failed[key] = 'no room'
                return
            tid = self._free_ids.pop()
            # a new generation at every load: the kernel's per-CPU rule cache (ku_cache) is tagged
            # with it, so a table id reused after an eviction never answers with the old file's rules
            self._gen = self._gen % 0xFFFFFFFF + 1
            t = _Table(tid, first, n, loads)
            self._tables[key] = t
            self.loads += 1
            gen = self._gen
        with self._io:
            rows_map, tables = self._maps.get('ku_rows'), self._maps.get('ku_tables')
            if rows_map is None or tables is None:
                return  # closed
            Leaf = rows_map.Leaf
            rows = deltas.rows
            for s in range(0, n, BATCH):
                k = min(BATCH, n - s)
                keys = (ct.c_uint * k)(*range(first + s, first + s + k))
                vals = (Leaf * k).from_buffer_copy(rows[2 * s: 2 * (s + k)].tobytes())
                rows_map.items_update_batch(keys, vals)
            leaf = tables.Leaf()
            leaf.base = deltas.base
            leaf.first = first
            leaf.n = n
            leaf.gen = gen
            tables[tables.Key(tid)] = leaf

    def _evict_one(self, keep: int) -> None:
        """Evict the least recently used table (lock held)."""
        key, t = self._tables.popitem(last=False)
        self.evictions += 1
        if self.telemetry is not None:
            self.telemetry.count('unwind.kernel.tables.evicted')
        for pid in list(t.users):
            if pid != keep:
                self._incomplete.add(pid)
                self._mark_pending(pid, t.tid)
        self._rows.release(t.first, t.n)
        self._free_ids.append(t.tid)
        with self._io:
            try:
                tables = self._maps['ku_tables']
                leaf = tables.Leaf()
                leaf.n = 0
                tables[tables.Key(t.tid)] = leaf
            except Exception:  # noqa: BLE001 - closed
                pass

    def _mark_pending(self, pid: int, tid: int) -> None:
        with self._io:
            procs = self._maps.get('ku_procs')
            if procs is None:
                return
            try:
                v = procs[procs.Key(pid)]
            except KeyError:
                return
            for i in range(min(int(v.n), MAX_MAPS)):
                if v.maps[i].table == tid:
                    v.maps[i].table = TABLE_PENDING
            procs[procs.Key(pid)] = v

    def _write_rules(self) -> None:
        if self._maps.get('ku_rules') is None:
            return
        with self._lock:
            pending = self._rules.take_pending()
        if not pending:
            return
        with self._io:
            m = self._maps.get('ku_rules')
            if m is None:
                return
            Leaf = m.Leaf
            keys = (ct.c_uint * len(pending))(*[i for i, _ in pending])
            vals = (Leaf * len(pending)).from_buffer_copy(b''.join(b for _, b in pending))
            m.items_update_batch(keys, vals)

    def walk_loaded(self) -> bool:
        """ku_walk is in the tail-call array (the loader's first process entry loads it)."""
        return self._walk_fd is not None

    def _load_walk(self) -> bool:
        """Load ku_walk and put it in ``ku_progs`` (once, on the loader thread, before the first
        ``ku_procs`` entry). False when closed or when the kernel refused it (logged once: every
        sample then keeps its stack copy, as with ``unwinding: dwarf``)."""
        if self._walk_fd is not None:
            return True
        if self._walk_error:
            return False
        with self._io:
            bpf, progs = self._bpf, self._maps.get('ku_progs')
            if bpf is None or progs is None:
                return False
            c0 = time.process_time()
            try:
                fn = bpf.load_func(b'ku_walk', self._prog_type)
                progs[ct.c_int(0)] = ct.c_int(fn.fd)
            except Exception as e:  # noqa: BLE001 - BCC raises a bare Exception
                self._walk_error = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
                if self.log:
                    self.log.error('kernel unwinding is off: the kernel refused the BPF program ku_walk (%s); '
                                   'user stacks are copied and unwound in user space (unwinding: dwarf)',
                                   self._walk_error)
                return False
            self.walk_load_cpu_seconds = time.process_time() - c0
            self._walk_fd = fn.fd
        return True

    def _write_proc(self, pid: int, entries: List[List[Any]]) -> None:
        procs = self._maps.get('ku_procs')
        if procs is None or not self._load_walk():
            return
        while pid not in self._procs and len(self._procs) >= self.max_processes:
            self._forget(next(iter(self._procs)))  # the longest loaded: its samples go through the copy
        leaf = procs.Leaf()
        keys = []
        pending = False
        with self._lock:
            for i, (m, key, _src) in enumerate(entries):
                slot = leaf.maps[i]
                slot.start = m.start
                slot.end = m.end
                if key is None or key in self._failed:
                    slot.table = TABLE_NONE
                    continue
                t = self._tables.get(key)
                if t is None:
                    slot.table = TABLE_PENDING  # the BPF program sends the sample as a stack copy
                    if key not in self._copy_only:
                        pending = True  # retried: a build still to come (deferred, or evicted)
                    continue
                self._tables.move_to_end(key)
                t.users.add(pid)
                keys.append(key)
                slot.table = t.tid
                slot.bias = load_bias(t.loads, m.start, m.offset) & 0xFFFFFFFFFFFFFFFF
            leaf.n = len(entries)
            old = self._procs.get(pid, ())
            for k in old:
                if k not in keys and k in self._tables:
                    self._tables[k].users.discard(pid)
            self._procs[pid] = tuple(keys)
            if pending:
                self._incomplete.add(pid)
            else:
                self._incomplete.discard(pid)
        with self._io:
            procs = self._maps.get('ku_procs')
            if procs is not None:
                procs[procs.Key(pid)] = leaf
