# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The seam every runtime implements, and what they share (reading a process's memory)."""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Optional

from ..profile.model import RuntimeStack


class Runtime:
    """One interpreted runtime. Called from the receiver's thread only.

    - ``attach(sampler)``: the BPF program is loaded; take its maps (``sampler.table(name)``).
    - ``observe(process) -> bool``: a process was first sampled (or its mappings re-read): detect
      it from its mappings and, if it is ours, give the BPF program its state. True asks for its
      mappings to be read again soon (a library the loader has not mapped yet).
    - ``forget(pid)``: the process exited or exec'd: remove its state.
    - ``resolve(pid, raw)``: what the BPF program recorded for one sample (``raw[0] == kind``)
      -> a ``RuntimeStack``, or None (the sample keeps its native frames).
    - ``end_drain()``: once per drain, after the samples were resolved: report metrics.
    """

    name = ''
    kind = ''  # profile.frame.type of its frames, also the tag of what its BPF part records

    def attach(self, sampler: Any) -> None:
        raise NotImplementedError

    def observe(self, process: Any) -> bool:
        raise NotImplementedError

    def forget(self, pid: int) -> None:
        raise NotImplementedError

    def resolve(self, pid: int, raw: Any) -> Optional[RuntimeStack]:
        raise NotImplementedError

    def end_drain(self) -> None:
        pass

    def prefetch(self, sampler: Any) -> int:
        """Optional, from the receiver's prefetch thread every PREFETCH_INTERVAL_S: read what the
        recorded frames point to while the processes run. Returns how much was read."""
        return 0

    def eager(self, now: float) -> bool:
        """True while a process was registered recently (``now``: time.monotonic()): the prefetch
        thread then looks every PREFETCH_EAGER_S, so that a process living a fraction of a second
        has its frames read before it exits."""
        return False

    def close(self) -> None:
        pass

    def _drop_kernel_state(self, pid: int) -> None:
        """Remove the process from this runtime's per-process BPF map (``self._table``) and its
        memory reader (``self.memory``)."""
        table = getattr(self, '_table', None)
        if table is not None:
            try:
                del table[table.Key(pid)]
            except KeyError:
                pass
        memory = getattr(self, 'memory', None)
        if memory is not None:
            memory.forget(pid)


class Runtimes:
    """The enabled runtimes, dispatched by kind."""

    def __init__(self, runtimes: Iterable[Runtime]) -> None:
        self.runtimes: List[Runtime] = list(runtimes)
        self._by_kind: Dict[str, Runtime] = {r.kind: r for r in self.runtimes}

    def __bool__(self) -> bool:
        return bool(self.runtimes)

    def attach(self, sampler: Any) -> None:
        for r in self.runtimes:
            r.attach(sampler)

    def observe(self, process: Any) -> bool:
        again = False
        for r in self.runtimes:
            again = bool(r.observe(process)) or again
        return again

    def forget(self, pid: int) -> None:
        for r in self.runtimes:
            r.forget(pid)

    def resolve(self, pid: int, raw: Any) -> Optional[RuntimeStack]:
        r = self._by_kind.get(raw[0]) if isinstance(raw, tuple) and raw else None
        return r.resolve(pid, raw) if r is not None else None

    def end_drain(self) -> None:
        for r in self.runtimes:
            r.end_drain()

    def prefetch(self, sampler: Any) -> int:
        return sum(r.prefetch(sampler) for r in self.runtimes)

    def eager(self, now: float) -> bool:
        return any(r.eager(now) for r in self.runtimes)

    def close(self) -> None:
        for r in self.runtimes:
            r.close()


class MemoryReadError(OSError):
    pass


class ProcessMemory:
    """Reads other processes' memory through /proc/PID/mem (pread: one syscall per read), with
    a bounded set of open files. Reads need the same rights as ptrace (root here)."""

    def __init__(self, proc: str = '/proc', max_open: int = 64) -> None:
        self.proc = proc
        self.max_open = max_open
        self._fds: 'OrderedDict[int, int]' = OrderedDict()

    def _fd(self, pid: int) -> int:
        fd = self._fds.get(pid)
        if fd is not None:
            self._fds.move_to_end(pid)
            return fd
        try:
            fd = os.open('{}/{}/mem'.format(self.proc, pid), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise MemoryReadError(e.errno, 'process gone or unreadable')
        self._fds[pid] = fd
        while len(self._fds) > self.max_open:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def read(self, pid: int, address: int, size: int) -> bytes:
        """Exactly ``size`` bytes at ``address``; raises MemoryReadError."""
        if address <= 0 or address >= 1 << 47 or size <= 0:
            raise MemoryReadError(14, 'bad address')
        try:
            data = os.pread(self._fd(pid), size, address)
        except OSError as e:
            raise MemoryReadError(e.errno, 'unreadable memory')
        if len(data) != size:
            raise MemoryReadError(14, 'short read')
        return data

    def forget(self, pid: int) -> None:
        fd = self._fds.pop(pid, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
