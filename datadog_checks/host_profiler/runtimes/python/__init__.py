# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""CPython 3.8-3.13: Python functions by name, file and line in every stack.

- ``detect``: which processes run CPython (from their mappings), which version, where
  ``_PyRuntime`` is.
- BPF (``receiver/bpf/sampler.c``, ``PYTHON``): per process a ``py_proc_t`` in ``py_procs``
  (built by ``offsets.Offsets.bpf_state``); at each sample the thread's frame chain is walked and
  recorded as (code object address, instruction position, flags) leaf first.
- ``code``: code objects read from the process's memory (cached, checked against reuse) and
  ``lines``: the line of an instruction position.
- ``PythonRuntime.resolve``: the recorded frames -> ``RuntimeStack`` segments, one per C call of
  the eval loop, which ``profile.builder.interleave`` puts in place of the native
  ``_PyEval_EvalFrameDefault`` frames.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Dict, Optional, Tuple

from ...host.files import opener_for
from ...profile.model import FRAME_ABORT, FRAME_CPYTHON, Frame, RuntimeStack
from ..base import MemoryReadError, ProcessMemory, Runtime
from .code import BadObject, CodeCache, line_of
from .detect import Interpreter, NotPython, NotYet, detect
from .offsets import Offsets, offsets_for

__all__ = ['PythonRuntime']

EVAL_FUNCTIONS = frozenset({'_PyEval_EvalFrameDefault', '_PyEval_EvalFrameDefault.cold'})
SEGMENT_END = 1
TRUNCATED_FRAME = Frame(function='[python stack truncated]', address=0, kind=FRAME_ABORT)
UNKNOWN_CODE = '[unknown python code]'
# after registering a process, its code objects are prefetched eagerly for this long (see Runtime.eager)
EAGER_S = 0.5
# Once looks stop finding code objects not read yet (a steady process: its code is cached), the
# prefetch looks at most this often, not at every call of the receiver's thread (0.2 s): each look
# walks the stack maps key by key (one syscall per key), the largest part of the receiver's
# steady CPU with Python frames on (py-spy). A look that reads a new code object, or a process
# registered recently (eager), brings the full cadence back. A code object first seen meanwhile
# is read by the next drain (every second) at the latest.
IDLE_LOOK_S = 1.0
IDLE_AFTER_LOOKS = 3  # looks in a row that read nothing new
MAX_STACKS_KEPT = 8192  # resolved stacks kept across drains (all dropped when full)
# per-process: the ones seen, by pid -> (start time, Interpreter or None, Offsets or None)


class PythonRuntime(Runtime):
    name = 'python'
    kind = FRAME_CPYTHON

    def __init__(self, telemetry: Any = None, log: Any = None, frame_pointers: bool = False,
                 cache_bytes: int = 16 << 20, memory: Optional[ProcessMemory] = None) -> None:
        self.telemetry = telemetry
        self.log = log
        self.frame_pointers = frame_pointers
        self.memory = memory or ProcessMemory()
        self.codes = CodeCache(cache_bytes)
        self._table = None
        self._epoch = None  # py_epoch (bpf/sampler.c): bumped after each change to py_procs
        self._procs: Dict[int, Tuple[int, int, Optional[Interpreter], Optional[Offsets]]] = {}
        # Both caches are indexed by pid first, so that forgetting a process (at each exit of a
        # process ever observed, Python or not) costs its own entries, not a scan of every
        # process's (a scan cost 0.2-2 ms per exit with a few thousand frames cached).
        self._frames: Dict[int, Dict[Tuple[int, int], Frame]] = {}  # pid -> (code, line) -> the same Frame
        self._nframes = 0
        # pid -> (recorded frames, truncated) -> (RuntimeStack, its distinct code addresses, their
        # CodeInfo): a stack seen at an earlier drain is not built again while every code object
        # in it is still the one cached (CodeCache checks each once per drain against reuse)
        self._stacks: Dict[int, Dict[Tuple[tuple, bool], Tuple[RuntimeStack, tuple, tuple]]] = {}
        self._nstacks = 0
        self._counts: Dict[str, int] = {}
        self._errors: Dict[str, int] = {}
        self._unsupported_logged: set = set()
        self._forgotten: Dict[int, int] = {}  # pid -> the drain after which it is dropped
        self._lock = threading.Lock()  # the prefetch thread and the drain share the caches
        self._peeked: Dict[int, int] = {}  # Python stack ids already prefetched -> drain count
        self._registered_at = -1e9  # time.monotonic() of the last process registered in py_procs
        self._empty_looks = 0  # prefetch looks in a row that read no code object
        self._last_look = -1e9
        self._declare()

    def _declare(self) -> None:
        t = self.telemetry
        if t is None:
            return
        for name in ('runtime.python.frames', 'runtime.python.stacks', 'runtime.python.code_objects_read',
                     'runtime.python.truncated_stacks', 'runtime.python.walks', 'runtime.python.walk_time'):
            t.declare(name)
        for r in ('memory', 'bad_object', 'code_object_reused', 'walk_read', 'stack_map_full', 'unknown_stack'):
            t.declare('runtime.python.read_errors', ['reason:' + r])

    # -- the seam
    def attach(self, sampler: Any) -> None:
        self._table = sampler.table('py_procs')
        self._epoch = sampler.table('py_epoch')
        self._procs.clear()  # a new program: its map is empty

    def observe(self, process: Any) -> bool:
        with self._lock:
            try:
                self._observe(process)
            except NotYet:
                return True
            return False

    def _observe(self, process: Any) -> None:
        pid = process.pid
        if self._forgotten.pop(pid, None) is not None:
            self._drop(pid)  # exec'd (or the pid reused): detect afresh
        known = self._procs.get(pid)
        if known is not None and known[0] == process.start_time and (known[2] is not None or
                                                                       known[1] == len(process.mappings)):
            return  # seen with these mappings already
        interp = offsets = None
        try:
            interp = detect(process, opener_for(self.telemetry))  # NotYet goes to observe(): nothing is remembered
            if interp is not None:
                offsets = offsets_for(interp.file.major, interp.file.minor)
                if offsets is None:
                    raise NotPython('unsupported_version', 'CPython {} is not supported (3.8-3.13 are)'.format(
                        interp.version))
        except NotPython as e:
            self._not_profiled(process, e)
            interp = offsets = None
        self._procs[pid] = (process.start_time, len(process.mappings), interp, offsets)
        if len(self._procs) > 65536:  # exits not seen (events lost): start over, detection is cached
            self._procs.clear()
        if interp is None or offsets is None or self._table is None:
            return
        table = self._table
        try:
            table[table.Key(pid)] = table.Leaf.from_buffer_copy(offsets.bpf_state(interp.runtime + offsets.tsd_key))
        except Exception as e:  # noqa: BLE001 - the map is full
            self._not_profiled(process, NotPython('process_map_full', str(e)))
            return
        self._bump_epoch()
        self._registered_at = time.monotonic()
        if self.telemetry is not None:
            self.telemetry.count('runtime.python.processes', 1, ['python_version:' + interp.version])

    def _not_profiled(self, process: Any, e: NotPython) -> None:
        if self.telemetry is not None:
            self.telemetry.count('runtime.python.processes_not_profiled', 1, ['reason:' + e.reason])
        if self.log and e.reason not in self._unsupported_logged:
            self._unsupported_logged.add(e.reason)
            self.log.info('Python frames off for pid %s: %s (its native frames are kept)', process.pid, e)

    def forget(self, pid: int) -> None:
        with self._lock:
            self._forget(pid)

    def _forget(self, pid: int) -> None:
        """The BPF program stops walking it now; what user space knows of it stays until the end
        of the next drain, which still resolves its last samples (from the code objects cached)."""
        if pid not in self._procs:
            return
        self._forgotten[pid] = self.codes.drain + 1
        self._drop_kernel_state(pid)

    def _drop_kernel_state(self, pid: int) -> None:
        super()._drop_kernel_state(pid)
        self._bump_epoch()

    def _bump_epoch(self) -> None:
        """After each change to py_procs: each CPU's copies of its entries (bpf/sampler.c,
        py_cached_t) are read again."""
        epoch = getattr(self, '_epoch', None)
        if epoch is None:
            return
        try:
            k = epoch.Key(0)
            epoch[k] = epoch.Leaf(epoch[k].value + 1)
        except Exception:  # noqa: BLE001 - the program was closed meanwhile
            pass

    def _drop(self, pid: int) -> None:
        self._procs.pop(pid, None)
        self.codes.forget(pid)
        self._nframes -= len(self._frames.pop(pid, ()))
        self._nstacks -= len(self._stacks.pop(pid, ()))

    def prefetch(self, sampler: Any) -> int:
        """Read the code objects of the Python stacks recorded since the last look, while their
        processes run: called every few hundred ms from the receiver's prefetch thread, so neither
        a process that exits before the drain nor a code object freed soon after its run (a
        module's, once imported) loses its names. Returns the code objects read."""
        now = time.monotonic()
        # (a little early counts: the receiver's thread itself waits IDLE_LOOK_S between idle looks)
        if self._empty_looks >= IDLE_AFTER_LOOKS and not self.eager(now) and now - self._last_look < IDLE_LOOK_S - 0.05:
            return 0
        self._last_look = now
        stacks = sampler.peek_python_stacks(self._peeked)
        counts: Dict[str, int] = {}
        for pid, codes in stacks:
            with self._lock:
                known = self._procs.get(pid)
                if known is None or known[3] is None:
                    continue
                for code in codes:
                    try:
                        self.codes.get(self.memory, pid, code, known[3], known[2].code_type, counts)
                    except (MemoryReadError, BadObject, ValueError, UnicodeDecodeError):
                        pass  # counted when the drain resolves it
        if len(self._peeked) > 1 << 16:
            self._peeked.clear()
        with self._lock:
            for k, v in counts.items():
                self._counts[k] = self._counts.get(k, 0) + v
        read = counts.get('code_objects_read', 0)
        self._empty_looks = 0 if read else self._empty_looks + 1
        return read

    def eager(self, now: float) -> bool:
        return now - self._registered_at < EAGER_S

    def resolve(self, pid: int, raw: Any) -> Optional[RuntimeStack]:
        with self._lock:
            return self._resolve(pid, raw)

    def _resolve(self, pid: int, raw: Any) -> Optional[RuntimeStack]:
        known = self._procs.get(pid)
        offsets = known[3] if known is not None else None
        counts = self._counts
        if offsets is None:
            counts['unknown_stack'] = counts.get('unknown_stack', 0) + 1
            return None
        code_type = known[2].code_type
        _, recorded, truncated = raw
        counts['frames'] = counts.get('frames', 0) + len(recorded)
        counts['stacks'] = counts.get('stacks', 0) + 1
        if truncated:
            counts['truncated'] = counts.get('truncated', 0) + 1
        key = (recorded, bool(truncated))
        mine = self._stacks.get(pid)
        hit = mine.get(key) if mine is not None else None
        if hit is not None:
            built, addrs, infos = hit
            if all(self._info(pid, a, offsets, code_type) is i for a, i in zip(addrs, infos)):
                return built
            del mine[key]
            self._nstacks -= 1
            if not mine:
                del self._stacks[pid]
                mine = None
        errors = sum(self._errors.values())
        segments = []
        current = []
        for code, instr, flags in recorded:
            current.append(self._frame(pid, code, instr, offsets, code_type))
            if flags & SEGMENT_END:
                segments.append(tuple(current))
                current = []
        if current:
            segments.append(tuple(current))
        if truncated and segments:
            segments[-1] = segments[-1] + (TRUNCATED_FRAME,)
        built = RuntimeStack(tuple(segments), EVAL_FUNCTIONS, bool(truncated), self.frame_pointers)
        if sum(self._errors.values()) == errors:  # every frame named: kept for the next drains
            addrs = tuple(dict.fromkeys(code for code, _, _ in recorded))
            infos = tuple(self._info(pid, a, offsets, code_type) for a in addrs)
            if None not in infos:
                if self._nstacks >= MAX_STACKS_KEPT:
                    self._stacks.clear()
                    self._nstacks = 0
                    mine = None
                if mine is None:
                    mine = self._stacks[pid] = {}
                mine[key] = (built, addrs, infos)
                self._nstacks += 1
        return built

    def _info(self, pid: int, code: int, offsets: Offsets, code_type: int) -> Any:
        """The cached CodeInfo of a code object (checked against reuse once per drain), or None."""
        try:
            return self.codes.get(self.memory, pid, code, offsets, code_type, self._counts)
        except (MemoryReadError, BadObject, ValueError, UnicodeDecodeError):
            return None

    def _frame(self, pid: int, code: int, instr: int, offsets: Offsets, code_type: int) -> Frame:
        try:
            info = self.codes.get(self.memory, pid, code, offsets, code_type, self._counts)
        except MemoryReadError:
            return self._error(pid, code, 'memory')
        except (BadObject, ValueError, UnicodeDecodeError) as e:
            if self.log:
                self.log.debug('pid %s: code object at 0x%x: %s', pid, code, e)
            return self._error(pid, code, 'bad_object')
        line = line_of(info, offsets, instr)
        key = (code, line)
        mine = self._frames.get(pid)
        if mine is None:
            mine = self._frames[pid] = {}
        f = mine.get(key)
        if f is None or f.function != info.name or f.source_file != info.filename:
            if self._nframes > 200000:
                self._frames.clear()
                self._nframes = 0
                mine = self._frames[pid] = {}
            if key not in mine:
                self._nframes += 1
            f = mine[key] = Frame(info.name, 0, FRAME_CPYTHON, None, info.filename, line)
        return f

    def _error(self, pid: int, code: int, reason: str) -> Frame:
        self._errors[reason] = self._errors.get(reason, 0) + 1
        return Frame(UNKNOWN_CODE, 0, FRAME_CPYTHON)

    def end_drain(self) -> None:
        """Metrics of this drain; the kernel-side counters come from the sampler's stats."""
        with self._lock:
            self._end_drain()

    def _end_drain(self) -> None:
        for pid in [p for p, d in self._forgotten.items() if d <= self.codes.drain]:
            del self._forgotten[pid]
            self._drop(pid)
        self.codes.drain += 1
        c, e = self._counts, self._errors
        self._counts, self._errors = {}, {}
        t = self.telemetry
        if t is None:
            return
        t.count('runtime.python.frames', c.get('frames', 0))
        t.count('runtime.python.stacks', c.get('stacks', 0))
        t.count('runtime.python.code_objects_read', c.get('code_objects_read', 0))
        t.count('runtime.python.truncated_stacks', c.get('truncated', 0))
        for reason in ('memory', 'bad_object'):
            t.count('runtime.python.read_errors', e.get(reason, 0), ['reason:' + reason])
        t.count('runtime.python.read_errors', c.get('code_object_reused', 0), ['reason:code_object_reused'])
        t.count('runtime.python.read_errors', c.get('unknown_stack', 0), ['reason:unknown_stack'])
        t.gauge('runtime.python.cache_bytes', self.codes.nbytes)
        t.gauge('runtime.python.processes_tracked', sum(1 for v in self._procs.values() if v[3] is not None))

    def kernel_counts(self, delta: Dict[str, int]) -> None:
        """The BPF program's Python counters of one drain (sampler stats ``_py_*``)."""
        t = self.telemetry
        if t is None:
            return
        t.count('runtime.python.walks', delta.get('_py_walks', 0))
        t.count('runtime.python.walk_time', delta.get('_py_walk_ns', 0))
        t.count('runtime.python.read_errors', delta.get('_py_read_error', 0), ['reason:walk_read'])
        t.count('runtime.python.read_errors', delta.get('_py_stacks_full', 0), ['reason:stack_map_full'])

    def close(self) -> None:
        self.memory.close()
