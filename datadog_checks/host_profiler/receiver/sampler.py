# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The eBPF sampler: one BCC program on the perf ``cpu-clock`` software event of every online CPU.

Counts are aggregated in the kernel per (tgid, tid, comm, user stack id, kernel stack id), in
one of two sets of (counts, stacks) maps selected by the generation number in ``active``.
``drain()`` flips the generation, waits for programs already running on the old set to finish,
then reads and clears the old set: the BPF program never writes a map that user space reads.

User stacks: ``unwinding='frame_pointers'`` walks them in the kernel (``bpf_get_stackid``);
``'dwarf'``/``'auto'`` copy the user registers and the top of the user stack of each sample to
a ring buffer instead, and ``drain()`` returns them unwound with the binaries' CFI (``unwind/``;
see ``docs/unwinding.md``).

Optional: off-CPU time (``sched:sched_switch``), and process exec/exit events
(``sched:sched_process_exec`` / ``sched:sched_process_exit``) delivered through a BPF ring
buffer to ``on_event``: by ``poll()`` (and every EVENTS_DURING_DRAIN_S within a drain's unwinding
pass), or, after ``start_events_thread()``, by a thread of their own that reads only that ring,
so that a first sample is handled within milliseconds whatever a drain is doing.

``Sampler`` coordinates stages that read in order, each in its own module:

1. ``program.py``: compile-time flags, compile and load, attach, the maps, close;
2. ``rings.py``: ring reading (process events, stack copies) and the process events;
3. ``drains/``: ``on_cpu.py``, ``stack_copies.py`` (unwound by the injected
   ``ProcessWalkers``), ``off_cpu.py``.
"""
from __future__ import annotations

import atexit
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..profile.model import RawSample
from ..runtime.malloc_trim import release_freed_memory
from .drains import PARTIAL_DEPTH_LIMIT, PARTIAL_REASONS, PARTIAL_UNWIND, CommFilter, DrainPass
from .drains.off_cpu import OffCpuDrain
from .drains.on_cpu import TC_RECORD_MAX, OnCpuDrain
from .kernel import SamplerError
from .program import (BPF_SOURCE, KERNEL_STATS, MAX_STACK_DEPTH, PY_STATS, STATS, TC_STATS, Counters, Program,
                      bpf_source_text, stat_flags)
from .rings import (EVENT, EVENT_KINDS, EVENT_RECORD_BYTES, EV_EXEC, EV_EXIT, EV_SAMPLED, ProcessEvent, Rings,
                    decode_event)

__all__ = ['Sampler', 'SamplerConfig', 'SamplerError', 'DrainResult', 'ProcessEvent', 'LOSS_REASONS']

# names kept importable from here (tests, benchmarks, docs)
_REEXPORTED = (BPF_SOURCE, KERNEL_STATS, MAX_STACK_DEPTH, TC_STATS, TC_RECORD_MAX, bpf_source_text, stat_flags,
               PARTIAL_DEPTH_LIMIT, PARTIAL_UNWIND, EVENT, EVENT_KINDS, EVENT_RECORD_BYTES, EV_EXEC, EV_EXIT,
               EV_SAMPLED, PARTIAL_REASONS)

# Why waiting this long after a flip is enough: a BPF program reads `active` once at its start
# and then runs to completion without sleeping (perf-event programs run in hard-irq/NMI
# context, tracepoint programs with preemption or migration disabled); a run lasts
# microseconds. After a few milliseconds every program that read the old generation has
# returned, so the old set is quiescent. (This is the same argument as an RCU grace period,
# with a wide margin.)
FLIP_GRACE_S = 0.004
# During a drain's unwinding pass (which can last a few hundred ms on a busy host), the process
# events are read at least this often: a new process's first-sample event is what registers it
# with the runtimes (Python frames), and a process that lives 0.3 s cannot wait for the pass.
EVENTS_DURING_DRAIN_S = 0.02

# Loss reasons reported by drain() (the `reason:` tag of sampler.lost).
LOSS_REASONS = tuple(s for s in STATS if not s.startswith('_')) + (
    'off_cpu_stack_expired',  # off-CPU record whose stacks user space no longer holds
)
CPU_LOSS_REASONS = LOSS_REASONS[:7] + ('events_lost', 'user_stack_copy_lost')


@dataclass
class SamplerConfig:
    samples_per_second: int = 20
    stack_storage_size: int = 16384  # entries of each stack map (there are two)
    counts_map_size: int = 16384  # distinct keys per drain interval (each of two maps)
    pids: Sequence[int] = ()  # only these tgids (empty: all)
    comm_include: Optional[str] = None  # regex on comm (user space, at drain)
    comm_exclude: Optional[str] = None
    send_idle_frames: bool = False
    off_cpu_threshold: float = 0.0  # probability to record a switch-out, 0 = off
    off_cpu_stack_storage_size: int = 8192
    off_cpu_start_size: int = 16384  # threads off CPU tracked at once (LRU)
    events_ring_pages: int = 64  # exec/exit ring buffer (power of 2)
    events: bool = True  # attach exec/exit tracepoints and announce each process's first sample
    max_processes: int = 16384  # processes whose first sample is remembered (LRU; also the registry's size)
    # User stacks: 'frame_pointers' (walked in the kernel by bpf_get_stackid), or 'dwarf'/'auto': the
    # program copies the user registers and the top of the user stack to user space, which unwinds
    # them with the binaries' .eh_frame (auto: frame pointers for code without CFI). See unwind/.
    unwinding: str = 'frame_pointers'
    stack_copy_size: int = 16384  # bytes of user stack copied per sample (8192..32768)
    stack_copy_ring_pages: int = 0  # ring buffer of the copies in pages (power of 2); 0: from CPUs x rate
    # CPython frames walked in the kernel for the processes user space registers in `py_procs`
    # (see runtimes/python)
    # runtimes walked in the kernel ('python': Python frames for the processes registered in py_procs)
    interpreters: Sequence[str] = ()
    python_max_frames: int = 128  # power of 2
    python_stacks_size: int = 4096  # distinct Python stacks per drain interval (each of two maps)
    python_processes: int = 4096
    # OTel thread contexts (OTEP 4947, bpf/thread_ctx.h): the record of each sampled thread of the
    # processes runtimes/otel_thread_tls.py registers in `tc_procs`, copied with the sample
    span_links: bool = False
    thread_context_processes: int = 4096
    thread_context_records: int = 0  # distinct records per generation (each of two maps); 0: program.thread_records_size
    # auto: user stacks unwound in the kernel with stack-delta tables in BPF maps of at most this
    # many MiB (receiver/kernel_unwind.py); 0: every sample copied and unwound in user space
    kernel_unwind_memory_mb: int = 64
    kernel_unwind_verify: bool = False  # tests: also copy each kernel-unwound sample (verify_pairs)



@dataclass
class DrainResult:
    samples: List[RawSample]
    lost: Dict[str, int]  # reason -> samples (or stack ids) lost since the previous drain
    partial: Dict[str, int] = field(default_factory=dict)  # reason -> kept samples with a partial user stack
    filtered: int = 0  # samples dropped by the pid filter (kernel) or comm filters (user space)
    unique_stacks: int = 0
    duration_s: float = 0.0
    map_fill: Dict[str, float] = field(default_factory=dict)  # map -> fill ratio before clearing
    kernel_samples: int = 0  # samples the CPU program counted (after idle/pid filtering)
    execs: int = 0  # execs on the host since the previous drain (counted in the kernel)
    exits: int = 0  # thread-group exits on the host since the previous drain
    runtime_stats: Dict[str, int] = field(default_factory=dict)  # the kernel's _py_* counters of the drain
    thread_context_stats: Dict[str, int] = field(default_factory=dict)  # the kernel's tc_stats of the drain



class Sampler:
    def __init__(
        self,
        config: Optional[SamplerConfig] = None,
        on_event: Optional[Callable[[ProcessEvent], None]] = None,
        log=None,
        walkers=None,
        telemetry=None,
    ):
        """``walkers``: a ``drains.stack_copies.ProcessWalkers`` that unwinds the stack copies in
        dwarf/auto (the receiver's knows its processes; without one, a sampler reads /proc)."""
        self.config = config or SamplerConfig()
        self._on_event = on_event
        self.log = log
        self._lock = threading.RLock()
        self._closed = False
        self._rings: Optional[Rings] = None
        # start_events_thread(): the events ring moved to its own Rings, read by its own thread
        self._event_rings: Optional[Rings] = None
        self._events_thread: Optional[threading.Thread] = None
        self._events_stop = threading.Event()
        self._gen = 0
        self._events_due = 0.0
        self._stats = None  # the per-CPU `stats` map (KERNEL_STATS)
        self._counters: Optional[Counters] = None  # ... its values at the previous drain
        self._tc_stats: Optional[Counters] = None  # the `tc_stats` map (TC_STATS)
        self.cpus: List[int] = []
        self.attach_seconds = 0.0
        self._validate()
        self._comm_filter = CommFilter(self.config.comm_include, self.config.comm_exclude)
        # auto: native unwinding in the kernel (bpf/kernel_unwind.h), tables loaded by kernel_unwind.py
        self.kernel_unwind = None
        if self.config.unwinding == 'auto' and int(self.config.kernel_unwind_memory_mb) > 0:
            from .kernel_unwind import KernelUnwind

            self.kernel_unwind = KernelUnwind(int(self.config.kernel_unwind_memory_mb), telemetry, log,
                                              max_processes=int(self.config.max_processes),
                                              stacks_size=int(self.config.stack_storage_size))
        self.program = Program(self.config, self.kernel_unwind, log)
        self.on_cpu = OnCpuDrain(self.config, self._comm_filter, self.kernel_unwind)
        # dwarf/auto: stack copies arrive through a ring buffer and are unwound at drain time
        self.stack_copies = None
        if self.copy_stacks:
            from .drains.stack_copies import ProcWalkers, StackCopyDrain

            self.stack_copies = StackCopyDrain(walkers or ProcWalkers(self.config.unwinding), self.on_cpu,
                                               self._comm_filter, verify=bool(self.config.kernel_unwind_verify))
        self.off_cpu_drain = OffCpuDrain(self.config, self._comm_filter) if self.off_cpu else None

    # ---------------------------------------------------------------- start-up
    def _validate(self) -> None:
        c = self.config
        if int(c.samples_per_second) < 1:
            raise SamplerError('samples_per_second must be >= 1: set receiver samples_per_second to 1 or more')
        if not 0.0 <= float(c.off_cpu_threshold) <= 1.0:
            raise SamplerError('off_cpu_threshold must be in [0, 1]: set it between 0 (off) and 1')
        if c.events_ring_pages & (c.events_ring_pages - 1):
            raise SamplerError('events_ring_pages must be a power of 2')
        if c.unwinding not in ('frame_pointers', 'dwarf', 'auto'):
            raise SamplerError('unwinding must be auto, frame_pointers or dwarf: fix receiver unwinding')
        if not 8192 <= int(c.stack_copy_size) <= 32768:
            raise SamplerError('stack_copy_size must be between 8192 and 32768 bytes: fix receiver stack_copy_size')
        pages = int(c.stack_copy_ring_pages)
        if pages < 0 or pages & (pages - 1):
            raise SamplerError('stack_copy_ring_pages must be 0 (automatic) or a power of 2')
        n = int(c.python_max_frames)
        if n < 8 or n > 512 or n & (n - 1):
            raise SamplerError('python_max_frames must be a power of 2 between 8 and 512')

    # what the configuration turns on (the program's compile flags follow the same)
    copy_stacks = property(lambda self: self.program.copy_stacks)
    python = property(lambda self: self.program.python)
    off_cpu = property(lambda self: self.program.off_cpu)

    @property
    def _bpf(self):
        """BCC's ``BPF`` object of the loaded program (None before start and after close)."""
        return self.program.bpf

    @property
    def compile_seconds(self) -> float:
        return self.program.compile_seconds

    @property
    def compile_cpu_seconds(self) -> float:
        return self.program.compile_cpu_seconds

    @property
    def verify_pairs(self) -> List[tuple]:
        """kernel_unwind_verify: (tgid, kernel stack, partial, user-space stack, truncated, count)."""
        return self.on_cpu.verify_pairs

    def table(self, name: str):
        """A map of the loaded program by name (runtimes fill their per-process maps), or None."""
        with self._lock:
            return self.program.table(name)

    def start(self) -> None:
        """Compile, load and attach. Raises SamplerError (one line: cause and fix)."""
        b = self.program.load()
        # BCC registers b.cleanup with atexit. Ours instead: close() takes the lock that the
        # sampler thread's poll/drain hold, so an exit while the thread is running (or already
        # closing) never cleans up twice (BCC's "Failed to detach" noise at exit).
        atexit.unregister(b.cleanup)
        atexit.register(self.close)
        release_freed_memory()  # what the LLVM compile freed
        t1 = time.monotonic()
        try:
            program = self.program
            self._stats = b['stats']
            self._counters = Counters(self._stats, STATS)
            self.on_cpu.bind(program)
            self._tc_stats = Counters(b['tc_stats'], TC_STATS) if self.config.span_links else None
            if self.off_cpu_drain is not None:
                self.off_cpu_drain.bind(program)
            program.fill_pid_filter()
            program.set_generation(self._gen)
            # ring buffers are read from their mapped pages (see ringbuf.py), woken through epoll
            self._rings = Rings()
            if self.config.events:
                self._rings.open('events', b['events'].map_fd, program.ring_pages['events'], self._on_event_record)
            if self.stack_copies is not None:
                self._rings.open('stack_copies', b['stack_copies'].map_fd, program.ring_pages['stack_copies'],
                                 self.stack_copies.add_record)
            from . import kernel

            self.cpus = kernel.online_cpus()
            program.attach()
        except SamplerError:
            self.close()
            raise
        except Exception as e:
            self.close()
            raise SamplerError(
                'attaching the eBPF sampler to the perf cpu-clock event failed ({}): run as root '
                '(or with CAP_PERFMON) and check kernel.perf_event_paranoid'.format(str(e).splitlines()[0][:200])
            )
        self.attach_seconds = time.monotonic() - t1

    # ---------------------------------------------------------------- events
    def wake(self) -> None:
        """End the current poll (from any thread)."""
        rings = self._rings
        if rings is not None:  # not started, or closed
            rings.wake()

    def start_events_thread(self, on_idle: Optional[Callable[[], Optional[float]]] = None,
                            timeout_ms: int = 1000) -> bool:
        """Read the process events ring on a thread of its own from now on (``poll()`` and
        ``drain()`` no longer read it): a first-sample event is handed to ``on_event`` within
        milliseconds, not after the drain in progress. ``on_idle()`` is called after each wake-up
        and may return the seconds until it wants to be called again (at most ``timeout_ms``:
        exit events are submitted without a wake-up, see bpf/sampler.c). ``on_event`` then runs on
        that thread: the caller guards what it shares with the drain. False when there is no
        events ring (events off, not started, closed) or the thread already runs."""
        with self._lock:
            if self._closed or self._rings is None or self._events_thread is not None:
                return False
            rings = self._rings.split('events')
            if rings is None:
                return False
            self._event_rings = rings
            th = threading.Thread(target=self._events_loop, args=(rings, on_idle, max(1, int(timeout_ms))),
                                  name='host_profiler-events', daemon=True)
            self._events_thread = th
            th.start()
            return True

    def wake_events(self) -> None:
        """End the events thread's wait now (its ``on_idle`` has something due sooner), or the
        current poll without one. From any thread."""
        rings = self._event_rings if self._event_rings is not None else self._rings
        if rings is not None:
            rings.wake()

    @property
    def events_threaded(self) -> bool:
        return self._events_thread is not None

    def _events_loop(self, rings: Rings, on_idle: Optional[Callable[[], Optional[float]]], timeout_ms: int) -> None:
        wait_ms = timeout_ms
        while not self._events_stop.is_set():
            rings.wait(wait_ms)
            if self._events_stop.is_set():
                break
            try:
                rings.read()
            except Exception:  # noqa: BLE001 - the thread must keep reading
                if self.log:
                    self.log.debug('reading the process events ring failed', exc_info=True)
            wait_ms = timeout_ms
            if on_idle is not None:
                try:
                    nxt = on_idle()
                except Exception:  # noqa: BLE001
                    nxt = None
                    if self.log:
                        self.log.debug('process events idle hook failed', exc_info=True)
                if nxt is not None:
                    wait_ms = max(1, min(timeout_ms, int(nxt * 1000.0 + 0.999)))

    def _stop_events_thread(self) -> bool:
        """Stop and join the events thread; False when it did not end in time (its ring is then
        left mapped: unmapping it under a reader would crash)."""
        th = self._events_thread
        if th is None:
            return True
        self._events_stop.set()
        rings = self._event_rings
        if rings is not None:
            rings.wake()
        if th is threading.current_thread():
            return False
        th.join(5.0)
        return not th.is_alive()

    def _events_tick(self) -> None:
        """Within a drain: read the process events ring (only that one: the stack copies ring is
        being unwound) if EVENTS_DURING_DRAIN_S passed since the last look (not when the events
        have a thread of their own)."""
        if self._event_rings is not None:
            return
        now = time.monotonic()
        if now < self._events_due:
            return
        self._events_due = now + EVENTS_DURING_DRAIN_S
        self._rings.read('events')

    def _on_event_record(self, buf, off: int, size: int) -> None:
        if self._on_event is None and self.kernel_unwind is None:
            return
        ev = decode_event(buf, off, size)
        if ev is None:
            return
        if ev.kind == 'sampled' and not self._comm_filter.keep(ev.comm):
            return  # its samples are filtered out at the drain: no metadata needed
        ku = self.kernel_unwind
        if ku is not None:
            if ev.kind == 'sampled':
                ku.request(ev.pid)
            else:
                ku.forget(ev.pid)
        if self._on_event is None:
            return
        try:
            self._on_event(ev)
        except Exception:  # noqa: BLE001 - one event must not stop the others
            if self.log:
                self.log.debug('process event handler failed', exc_info=True)

    def poll(self, timeout_ms: int = 50) -> None:
        """Deliver pending exec/exit events to on_event (waits at most timeout_ms); in dwarf/auto,
        also take the stack copies out of their ring buffer (they are unwound at the next drain)."""
        with self._lock:
            if self._closed or self._bpf is None:
                return
            self._rings.wait(timeout_ms)
            # every ring, woken or not: exit events and most stack copies are submitted without
            # a wake-up (see bpf/sampler.c)
            self._rings.read()

    # ---------------------------------------------------------------- drain
    def kernel_stats(self) -> Dict[str, int]:
        """Cumulative kernel-side counters (summed over CPUs) since start."""
        with self._lock:
            if self._bpf is None:
                return {}
            return dict(zip(STATS, self._counters.read()))

    def drain(self, final: bool = False) -> DrainResult:
        """Flip, wait for in-flight programs, read and clear the inactive set."""
        with self._lock:
            if self._closed or self._bpf is None:
                return DrainResult([], {})
            t0 = time.monotonic()
            if self._event_rings is not None:
                # exec and exit events are submitted without a wake-up: the events thread reads
                # them at each drain (as poll() did), not only at its timeout
                self._event_rings.wake()
            old = self._gen
            self._gen = old + 1
            self.program.set_generation(self._gen)
            time.sleep(FLIP_GRACE_S)
            if self.stack_copies is not None:
                # every copy of the old generation is in the ring buffer now: unwind them all
                self._rings.read()
            p = DrainPass(old, {r: 0 for r in (LOSS_REASONS if self.off_cpu else CPU_LOSS_REASONS)})
            entries = self.on_cpu.begin(old)
            self.on_cpu.drain(entries, p)
            if self.stack_copies is not None:
                self.stack_copies.drain(p, self._gen, final, self._events_tick)
            n_stacks = self.on_cpu.end()
            p.map_fill['counts'] = len(entries) / float(max(1, self.config.counts_map_size))
            p.map_fill['stacks'] = n_stacks / float(max(1, self.config.stack_storage_size))
            if self.off_cpu_drain is not None:
                self.off_cpu_drain.drain(p)

            delta = self._counters.delta()
            for i, name in enumerate(STATS):
                if not name.startswith('_') and name in p.lost:
                    p.lost[name] += delta[i]
            p.filtered += delta[STATS.index('_pid_filtered')]
            return DrainResult(
                samples=p.samples,
                lost=p.lost,
                partial=p.partial,
                filtered=p.filtered,
                unique_stacks=len(p.pairs),
                duration_s=time.monotonic() - t0,
                map_fill=p.map_fill,
                kernel_samples=delta[STATS.index('_samples')],
                execs=delta[STATS.index('_execs')],
                exits=delta[STATS.index('_exits')],
                runtime_stats={name: delta[STATS.index(name)] for name in PY_STATS},
                thread_context_stats=self._tc_stats_delta(),
            )

    def _tc_stats_delta(self) -> Dict[str, int]:
        if self._tc_stats is None:
            return {}
        return dict(zip(TC_STATS, self._tc_stats.delta()))

    def peek_python_stacks(self, seen: Dict[int, int]) -> List[Tuple[int, tuple]]:
        """(tgid, frames) of the Python stacks recorded since the last drain and not in ``seen``
        (id -> drain count, updated here): the runtime reads their code objects while the processes
        still run, from another thread than the drain's. Takes no lock: BPF map reads are atomic per
        element and a drain running meanwhile only removes elements. Never raises."""
        return self.on_cpu.peek_python_stacks(seen, self._gen)

    def program_ids(self) -> Dict[int, str]:
        """Kernel ids of our loaded BPF programs -> function name (for BPF run-time stats)."""
        with self._lock:
            return self.program.program_ids()

    def stop_sampling(self) -> None:
        """Detach the perf events (no new CPU samples) but keep the maps, so that two more
        drains read everything that was counted: a clean, exact end."""
        with self._lock:
            self.program.detach_perf_events()

    # ---------------------------------------------------------------- close
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def running(self) -> bool:
        return self._bpf is not None and not self._closed

    def close(self) -> None:
        """Detach every program and close every fd. Idempotent; safe from any thread."""
        events_done = self._stop_events_thread()  # (it never takes self._lock)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            b, self.program.bpf = self.program.bpf, None
            self.on_cpu.close()
            self._tc_stats = None
            if self.off_cpu_drain is not None:
                self.off_cpu_drain.close()
            if self.kernel_unwind is not None:
                self.kernel_unwind.close()
            rings, self._rings = self._rings, None
            if rings is not None:
                rings.close()
            event_rings, self._event_rings = self._event_rings, None
            if event_rings is not None and events_done:
                event_rings.close()
        if b is not None:
            try:
                b.cleanup()
            except Exception:
                if self.log:
                    self.log.warning('BPF cleanup failed', exc_info=True)
        atexit.unregister(self.close)  # no reference kept to a closed sampler
