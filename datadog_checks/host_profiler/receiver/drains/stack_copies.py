# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The stack-copy drain (``unwinding: dwarf | auto``): the user registers and the top of the user
stack of each sample arrive through the ``stack_copies`` ring buffer (``add_record``) and are
unwound at drain time by ``unwind.copies.StackCopies`` with the walks of a ``ProcessWalkers``
object, injected by whoever builds the sampler:

- ``RegistryWalkers``: the receiver's (processes from its registry, the receiver's ``Unwinder``);
- ``ProcWalkers``: a sampler used alone (processes read from /proc, its own ``Unwinder``).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

from ...profile.model import CPU_SAMPLES, RawSample
from ...unwind.copies import StackCopies, Walk
from . import PARTIAL_UNWIND, CommFilter, DrainPass
from .on_cpu import OnCpuDrain


class ProcessWalkers:
    """What the stack-copy drain needs of an unwinder: ``walker_for(tgid)`` -> the walk of that
    process's copies, ``walk((ip, sp, bp), stack, sp, may_defer) -> (addresses leaf first,
    truncated, retry_later)``, or None when the process is unknown. Called on the drain's thread,
    once per process and pass."""

    def walker_for(self, tgid: int) -> Optional[Walk]:
        raise NotImplementedError


class RegistryWalkers(ProcessWalkers):
    """The processes of a ``ProcessRegistry`` (read on first sight), walked by ``unwinder``."""

    def __init__(self, registry, unwinder, telemetry) -> None:
        self.registry = registry
        self.unwinder = unwinder
        self.telemetry = telemetry

    def walker_for(self, tgid: int) -> Optional[Walk]:
        info, gone = self.registry.ensure(tgid)
        if gone:
            self.telemetry.count('processes.gone_before_metadata', 1)
        if info is None:
            return None
        return self.unwinder.walker(info)


class ProcWalkers(ProcessWalkers):
    """For a sampler used without the receiver: process mappings from /proc."""

    def __init__(self, mode: str) -> None:
        from ...runtime.telemetry import Telemetry
        from ...unwind.unwinder import Unwinder

        self.unwinder = Unwinder(Telemetry(), mode=mode)
        self._procs: Dict[int, object] = {}

    def walker_for(self, tgid: int) -> Optional[Walk]:
        from ..processes import read_process

        proc = self._procs.get(tgid)
        if proc is None:
            proc = read_process(tgid)
            if proc is None:
                return None
            if len(self._procs) > 4096:
                self._procs.clear()
            self._procs[tgid] = proc
        return self.unwinder.walker(proc)


class StackCopyDrain:
    def __init__(self, walkers: ProcessWalkers, on_cpu: OnCpuDrain, comm_filter: CommFilter,
                 verify: bool = False) -> None:
        self.walkers = walkers
        self.on_cpu = on_cpu  # its pass resolves the copies' kernel stacks, Python stacks and records
        self.comm_filter = comm_filter
        self.verify = verify
        self.copies = StackCopies(walkers.walker_for)

    def add_record(self, buf, off: int, size: int) -> None:
        """Handler of the ``stack_copies`` ring."""
        self.copies.add_record(buf, off, size)

    def drain(self, p: DrainPass, active: int, final: bool, tick: Callable[[], None]) -> None:
        """Samples unwound from stack copies of every generation but the active one; their kernel
        stack ids are resolved from the old generation's map before it is cleared (copies that
        wait for a CFI table until the next drain get theirs resolved now, see unwind/copies.py)."""
        on_cpu = self.on_cpu
        old32 = p.old & 0xFFFFFFFF

        def resolve_kstack(gen: int, ks: int) -> Tuple[int, ...]:
            return on_cpu.resolve(ks)[0] if gen == old32 else ()

        for (gen, tgid, tid, rawcomm, ustack, ks, truncated, py, tc), cnt in self.copies.take(
                active & 0xFFFFFFFF, resolve_kstack, final, tick):
            comm = rawcomm.split(b'\0', 1)[0].decode('utf-8', 'replace')
            if not self.comm_filter.keep(comm):
                p.filtered += cnt
                continue
            if isinstance(ks, tuple):  # ('resolved', addresses)
                kstack = ks[1]
            elif gen == old32:
                kstack, _ = on_cpu.resolve(ks)
            else:  # a generation whose maps were cleared (not expected: each drain takes them all)
                kstack = ()
            if self.verify and py and py in on_cpu.ku_stacks:
                on_cpu.verify_pairs.append((tgid,) + on_cpu.ku_stacks[py] + (tuple(ustack), bool(truncated), cnt))
                continue  # already counted by the kernel
            if truncated:
                p.partial[PARTIAL_UNWIND] += cnt
            p.pairs.add(('copy', ustack, ks))
            link, attributes = on_cpu.thread_link(tgid, tc) if tc else (None, ())
            p.samples.append(RawSample(tgid, tid, comm, ustack, kstack, cnt, CPU_SAMPLES, truncated, False,
                                       on_cpu.python_stack(py), link, attributes))
