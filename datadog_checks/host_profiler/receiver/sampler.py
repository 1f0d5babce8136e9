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
buffer to ``on_event``.
"""
from __future__ import annotations

import atexit

import ctypes as ct
import os
import re
import select
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..profile.model import CPU_SAMPLES, OFF_CPU_TIME, RawSample
from ..runtime.malloc_trim import release_freed_memory
from . import kernel
from .kernel import SamplerError
from .ringbuf import RingReader

__all__ = ['Sampler', 'SamplerConfig', 'SamplerError', 'DrainResult', 'ProcessEvent', 'LOSS_REASONS']

BPF_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'bpf', 'sampler.c')

# A BPF stack map stores at most PERF_MAX_STACK_DEPTH frames: a stack that deep was cut.
MAX_STACK_DEPTH = 127

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

EFAULT = 14
EEXIST = 17
ENOMEM = 12

# Kernel-side per-CPU counters of the `stats` map: (C name, metric name), by index. This is the
# only list: the BPF program gets each index as -DST_<C name>=<index> (and N_STATS), so the two
# cannot drift (tests/receiver/test_sampler_source.py fails if sampler.c defines an ST_ itself).
# Names starting with '_' are not sample losses.
KERNEL_STATS = (
    ('USER_EEXIST', 'user_stack_collision'),
    ('USER_ENOMEM', 'user_stack_nomem'),
    ('USER_OTHER', 'user_stack_error'),
    ('KERN_EEXIST', 'kernel_stack_collision'),
    ('KERN_ENOMEM', 'kernel_stack_nomem'),
    ('KERN_OTHER', 'kernel_stack_error'),
    ('COUNTS_FULL', 'counts_map_full'),
    ('PID_FILTERED', '_pid_filtered'),
    ('OFF_USER_EEXIST', 'off_cpu_user_stack_collision'),
    ('OFF_USER_ENOMEM', 'off_cpu_user_stack_nomem'),
    ('OFF_USER_OTHER', 'off_cpu_user_stack_error'),
    ('OFF_KERN_EEXIST', 'off_cpu_kernel_stack_collision'),
    ('OFF_KERN_ENOMEM', 'off_cpu_kernel_stack_nomem'),
    ('OFF_KERN_OTHER', 'off_cpu_kernel_stack_error'),
    ('OFF_COUNTS_FULL', 'off_cpu_counts_map_full'),
    ('OFF_START_FULL', 'off_cpu_start_map_full'),
    ('EVENTS_LOST', 'events_lost'),
    ('SAMPLES', '_samples'),
    ('OFF_EVENTS', '_off_cpu_events'),
    ('COPY_LOST', 'user_stack_copy_lost'),  # dwarf/auto: ring buffer full, the sample fell back to frame pointers
    ('COPIES', '_stack_copies'),
    ('EVENTS', '_events'),  # exec/exit events sent (paces their forced wake-ups)
    ('EXECS', '_execs'),  # every exec on the host
    ('EXITS', '_exits'),  # every thread-group exit on the host
    # CPython frame walks (runtimes/python): reported by the Python runtime, not as sample losses
    ('PY_WALKS', '_py_walks'),  # samples of a thread of a known CPython process
    ('PY_NO_THREAD', '_py_no_thread_state'),  # ... of a thread without a Python frame (never ran Python, or idle)
    ('PY_READ_ERROR', '_py_read_error'),  # a read of the thread state or of a frame failed
    ('PY_TRUNCATED', '_py_truncated'),  # deeper than the frame bound: the outermost frames are cut
    ('PY_STACKS_FULL', '_py_stacks_full'),  # the Python stack map was full: the sample has native frames only
    ('PY_FRAMES', '_py_frames'),  # frames recorded
    ('PY_WALK_NS', '_py_walk_ns'),  # nanoseconds spent in the walks (the in-kernel cost of Python frames)
)
STATS = tuple(name for _, name in KERNEL_STATS)
PY_STATS = tuple(s for s in STATS if s.startswith('_py_'))
# Kernel-side per-CPU counters of the thread-context reads, by index in `tc_stats` (bpf/thread_ctx.h)
TC_STATS = ('lookups', 'reads', 'no_context', 'not_valid', 'torn', 'read_error', 'oversized', 'record_map_full')
TC_RECORD_MAX = 640
# Loss reasons reported by drain() (the `reason:` tag of sampler.lost).
LOSS_REASONS = tuple(s for s in STATS if not s.startswith('_')) + (
    'off_cpu_stack_expired',  # off-CPU record whose stacks user space no longer holds
)
CPU_LOSS_REASONS = LOSS_REASONS[:7] + ('events_lost', 'user_stack_copy_lost')
# Partial stacks: the sample is kept (and exported, ending in a [truncated] frame) but its user
# stack does not reach the outermost frame. Not a loss: counted apart (sampler.stacks.partial).
PARTIAL_DEPTH_LIMIT = 'depth_limit'  # the in-kernel frame-pointer walk stopped at MAX_STACK_DEPTH
PARTIAL_UNWIND = 'unwind_incomplete'  # the user-space unwinder stopped early (unwind.samples{result})
PARTIAL_REASONS = (PARTIAL_DEPTH_LIMIT, PARTIAL_UNWIND)

EV_EXEC = 1
EV_EXIT = 2
EV_SAMPLED = 3
EVENT_KINDS = {EV_EXEC: 'exec', EV_EXIT: 'exit', EV_SAMPLED: 'sampled'}
EVENT = struct.Struct('<IIIIQ16s')  # struct event_t: type, tgid, pid, pad, ts, comm
EVENT_RECORD_BYTES = EVENT.size + 8  # and the ring's record header


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
    thread_context_records: int = 4096  # distinct records per drain interval (each of two maps)
    # auto: user stacks unwound in the kernel with stack-delta tables in BPF maps of at most this
    # many MiB (receiver/kernel_unwind.py); 0: every sample copied and unwound in user space
    kernel_unwind_memory_mb: int = 64
    kernel_unwind_verify: bool = False  # tests: also copy each kernel-unwound sample (verify_pairs)


@dataclass(frozen=True)
class ProcessEvent:
    kind: str  # 'exec' | 'exit' | 'sampled' (the first sample of the process since exec or start-up)
    pid: int  # tgid
    tid: int
    comm: str
    ts_ns: int  # CLOCK_MONOTONIC


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


_LOCAL_INCLUDE = re.compile(r'^#include "([A-Za-z0-9_]+\.h)"[ \t]*$', re.M)


def bpf_source_text() -> str:
    """sampler.c with its local headers (``#include "<feature>.h"``) pasted in: BCC rewrites map
    calls (``m.lookup()``) and loads programs only in the main file."""
    d = os.path.dirname(BPF_SOURCE)
    with open(BPF_SOURCE) as f:
        text = f.read()

    def paste(m):
        path = os.path.join(d, m.group(1))
        if not os.path.exists(path):
            return m.group(0)
        with open(path) as h:
            return '// ---- {} ----\n{}\n'.format(m.group(1), h.read())

    return _LOCAL_INCLUDE.sub(paste, text)


def _comm(raw) -> str:
    b = bytes(raw)
    return b.split(b'\0', 1)[0].decode('utf-8', 'replace')


def stat_flags() -> Dict[str, int]:
    """-D constants of the `stats` indices: ST_<C name> for each of KERNEL_STATS, and N_STATS."""
    flags = {'ST_' + cname: i for i, (cname, _) in enumerate(KERNEL_STATS)}
    flags['N_STATS'] = len(KERNEL_STATS)
    return flags


class _StandaloneUnwind:
    """``walker_for`` for a sampler used without the receiver: process mappings from /proc."""

    def __init__(self, mode: str) -> None:
        from ..runtime.telemetry import Telemetry
        from ..unwind.unwinder import Unwinder

        self.unwinder = Unwinder(Telemetry(), mode=mode)
        self._procs: Dict[int, object] = {}

    def __call__(self, tgid: int):
        from .processes import read_process

        proc = self._procs.get(tgid)
        if proc is None:
            proc = read_process(tgid)
            if proc is None:
                return None
            if len(self._procs) > 4096:
                self._procs.clear()
            self._procs[tgid] = proc
        return self.unwinder.walker(proc)


class Sampler:
    def __init__(
        self,
        config: Optional[SamplerConfig] = None,
        on_event: Optional[Callable[[ProcessEvent], None]] = None,
        log=None,
        walker_for: Optional[Callable[[int], Optional[Callable[..., Tuple[Sequence[int], bool, bool]]]]] = None,
        telemetry=None,
    ):
        self._py_cache: Dict[int, Tuple[tuple, int]] = {}  # Python stack id -> (stack, last generation)
        self._tc_cache: Dict[int, Tuple[bytes, int]] = {}  # thread-context record id -> (record, generation)
        self._tc_records: tuple = ()
        self._tc_stats = None
        self._tc_prev: List[int] = []
        self.config = config or SamplerConfig()
        self._on_event = on_event
        self.log = log
        self._lock = threading.RLock()
        self._bpf = None
        self._closed = False
        self._rings: List[Tuple[RingReader, Callable[..., None]]] = []  # (reader, record handler)
        self._ring_pages: Dict[str, int] = {}  # ring buffer map -> pages (set with the compile flags)
        self._epoll = None
        self._wake_fd = -1  # eventfd: wake() ends a poll early
        self._gen = 0
        self._events_due = 0.0
        self._prev_stats = [0] * len(STATS)
        self._include = re.compile(self.config.comm_include) if self.config.comm_include else None
        self._exclude = re.compile(self.config.comm_exclude) if self.config.comm_exclude else None
        self.compile_seconds = 0.0
        self.compile_cpu_seconds = 0.0
        self.attach_seconds = 0.0
        self.cpus: List[int] = []
        # off-CPU: stacks of past generations still referenced by pending switch-out records
        self._off_cache: Dict[Tuple[int, int], Tuple[int, ...]] = {}
        self._off_pending_prev: set = set()
        self._validate()
        # dwarf/auto: stack copies arrive through a ring buffer and are unwound at drain time by
        # `walker_for(tgid)((ip, sp, bp), stack, sp, may_defer) -> (addresses leaf first, truncated,
        # retry_later)` (the receiver's, which knows the processes; a standalone sampler reads /proc).
        self._copies = None
        if self.copy_stacks:
            from ..unwind.copies import StackCopies

            self._copies = StackCopies(walker_for or _StandaloneUnwind(self.config.unwinding))
        # auto: native unwinding in the kernel (bpf/kernel_unwind.h), tables loaded by kernel_unwind.py
        self.kernel_unwind = None
        self._ku_stacks: Dict[int, Tuple[Tuple[int, ...], bool]] = {}
        # kernel_unwind_verify: (tgid, kernel stack, partial, user-space stack, truncated, count)
        self.verify_pairs: List[tuple] = []
        if self.config.unwinding == 'auto' and int(self.config.kernel_unwind_memory_mb) > 0:
            from .kernel_unwind import KernelUnwind

            self.kernel_unwind = KernelUnwind(int(self.config.kernel_unwind_memory_mb), telemetry, log,
                                              max_processes=int(self.config.max_processes),
                                              stacks_size=int(self.config.stack_storage_size))

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

    @property
    def copy_stacks(self) -> bool:
        return self.config.unwinding in ('dwarf', 'auto')

    def _copy_ring(self) -> Tuple[int, int]:
        """(ring pages, records of a CPU between forced wake-ups) of the stack copies."""
        from ..unwind.copies import ring_pages, wakeup_every

        cpus = len(kernel.online_cpus()) or 1
        pages = int(self.config.stack_copy_ring_pages) or ring_pages(
            self._copy_size(), cpus, int(self.config.samples_per_second))
        return pages, wakeup_every(pages, self._copy_size(), cpus)

    def _copy_size(self) -> int:
        return (int(self.config.stack_copy_size) + 4095) // 4096 * 4096

    def _cflags(self) -> List[str]:
        c = self.config
        copy_pages, copy_wakeup_every = self._copy_ring() if self.copy_stacks else (1, 1)
        self._ring_pages = {'events': int(c.events_ring_pages), 'stack_copies': copy_pages}
        thr = int(round(float(c.off_cpu_threshold) * (1 << 32)))
        flags = {
            'STACK_STORAGE_SIZE': max(1, int(c.stack_storage_size)),
            'COUNTS_SIZE': max(1, int(c.counts_map_size)),
            'SEND_IDLE': int(bool(c.send_idle_frames)),
            'FILTER_PIDS': int(bool(c.pids)),
            'PID_FILTER_SIZE': max(1, len(c.pids)),
            'OFF_CPU': int(thr > 0),
            'OFF_CPU_THRESHOLD': '{}ULL'.format(thr),
            'OFF_CPU_STACK_SIZE': max(1, int(c.off_cpu_stack_storage_size)),
            'OFF_CPU_START_SIZE': max(1, int(c.off_cpu_start_size)),
            'EVENTS': int(bool(c.events)),
            'EVENTS_PAGES': int(c.events_ring_pages),
            # a quarter of the ring from every CPU between two forced wake-ups
            'EVENTS_WAKEUP_EVERY': max(1, int(c.events_ring_pages) * 4096 // 4 // EVENT_RECORD_BYTES
                                       // (len(kernel.online_cpus()) or 1)),
            # twice the registry: the kernel forgets an announced process after user space does
            'SAMPLED_TGIDS': 2 * max(1, int(c.max_processes)),
            'UNWIND_COPY': int(self.copy_stacks),
            'STACK_COPY_SIZE': self._copy_size(),
            'COPY_PAGES': copy_pages,
            'COPY_CPUS': max(kernel.possible_cpus() or [0]) + 1,
            'COPY_WAKEUP_EVERY': copy_wakeup_every,
            'PYTHON': int(self.python),
            'PY_PROCS': max(1, int(c.python_processes)),
            'PY_STACKS': max(1, int(c.python_stacks_size)),
            'PY_MAX_FRAMES': int(c.python_max_frames),
            'TASK_FSBASE_OFF': self._fsbase_offset() if self.python or c.span_links else 0,
            'THREAD_CTX': int(bool(c.span_links)),
            'TC_PROCS': max(1, int(c.thread_context_processes)),
            'TC_RECORDS': max(1, int(c.thread_context_records)),
        }
        flags.update(stat_flags())
        flags['UNWIND_KERNEL'] = int(self.kernel_unwind is not None)
        flags['KU_VERIFY'] = int(bool(c.kernel_unwind_verify))
        if self.kernel_unwind is not None:
            flags.update(self.kernel_unwind.cflags())
        # -I: each optional feature keeps its BPF code in its own header beside sampler.c
        # (receiver/bpf/<feature>.h), included under its #if.
        return ['-D{}={}'.format(k, v) for k, v in flags.items()] + ['-w', '-I' + os.path.dirname(BPF_SOURCE)]

    @property
    def python(self) -> bool:
        return 'python' in self.config.interpreters

    @staticmethod
    def _fsbase_offset() -> int:
        from ..host.btf import BtfError, task_fsbase_offset

        try:
            return task_fsbase_offset()
        except (OSError, BtfError, ValueError) as e:
            raise SamplerError(
                'reading task_struct.thread.fsbase from the kernel BTF (/sys/kernel/btf/vmlinux) failed ({}): '
                'Python frames and span links need a kernel with CONFIG_DEBUG_INFO_BTF; remove python from receiver '
                'interpreters and set receiver span_links to false'.format(e))

    def table(self, name: str):
        """A map of the loaded program by name (runtimes fill their per-process maps), or None."""
        with self._lock:
            if self._bpf is None:
                return None
            try:
                return self._bpf[name]
            except KeyError:
                return None

    @property
    def off_cpu(self) -> bool:
        return float(self.config.off_cpu_threshold) > 0

    def start(self) -> None:
        """Compile, load and attach. Raises SamplerError (one line: cause and fix)."""
        kernel.check_privileges()
        bcc = kernel.import_bcc()
        kernel.check_headers()
        kernel.ensure_tracefs()
        text = bpf_source_text()
        cflags = self._cflags()  # before the clocks: the BTF offsets are not the compile
        t0, c0 = time.monotonic(), time.process_time()
        try:
            b = bcc.BPF(text=text, cflags=cflags)
        except Exception as e:  # BCC raises a bare Exception on compile/load failure
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            if 'compile' in msg.lower():
                raise kernel.headers_error('BCC failed to compile the sampler')
            raise SamplerError(
                'loading the eBPF sampler failed ({}): check that the kernel has CONFIG_BPF_SYSCALL and '
                'that memlock/BPF limits allow it (run as root)'.format(msg[:200])
            )
        self.compile_seconds = time.monotonic() - t0
        self.compile_cpu_seconds = time.process_time() - c0  # clang + the verifier (every thread of the process)
        # BCC registers b.cleanup with atexit. Ours instead: close() takes the lock that the
        # sampler thread's poll/drain hold, so an exit while the thread is running (or already
        # closing) never cleans up twice (BCC's "Failed to detach" noise at exit).
        atexit.unregister(b.cleanup)
        atexit.register(self.close)
        release_freed_memory()  # what the LLVM compile freed
        t1 = time.monotonic()
        try:
            self._bpf = b
            self._active = b['active']
            self._stats = b['stats']
            self._counts = (b['counts0'], b['counts1'])
            self._stacks = (b['stacks0'], b['stacks1'])
            self._pystacks = (b['pystacks0'], b['pystacks1']) if self.python else ()
            self._tc_records = (b['tc_records0'], b['tc_records1']) if self.config.span_links else ()
            self._tc_stats = b['tc_stats'] if self.config.span_links else None
            if self.off_cpu:
                self._off_counts = (b['offcpu_counts0'], b['offcpu_counts1'])
                self._off_stacks = (b['offcpu_stacks0'], b['offcpu_stacks1'])
                self._off_start = b['offcpu_start']
            if self.config.pids:
                pf = b['pid_filter']
                for p in self.config.pids:
                    pf[pf.Key(int(p))] = pf.Leaf(1)
            self._active[self._active.Key(0)] = self._active.Leaf(self._gen)
            self._epoll = select.epoll()
            self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._epoll.register(self._wake_fd, select.EPOLLIN)
            # ring buffers are read from their mapped pages (see ringbuf.py), woken through epoll
            if self.config.events:
                self._open_ring('events', self._on_event_record)
            if self._copies is not None:
                self._open_ring('stack_copies', self._copies.add_record)
            self.cpus = kernel.online_cpus()
            if self.kernel_unwind is not None:
                self._ku_maps = (b['ku_stacks0'], b['ku_stacks1'])
                self.kernel_unwind.attach(b, bcc.BPF.PERF_EVENT)
            b.attach_perf_event(
                ev_type=bcc.PerfType.SOFTWARE,
                ev_config=bcc.PerfSWConfig.CPU_CLOCK,
                fn_name=b'on_cpu_sample',
                sample_freq=int(self.config.samples_per_second),
                cpu=-1,
            )
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
    def _open_ring(self, name: str, handle: Callable[..., None]) -> None:
        reader = RingReader(self._bpf[name].map_fd, self._ring_pages[name] * 4096)
        self._rings.append((reader, handle))
        self._epoll.register(reader.fd, select.EPOLLIN)

    def wake(self) -> None:
        """End the current poll (from any thread)."""
        fd = self._wake_fd
        if fd < 0:
            return  # not started, or closed
        try:
            os.eventfd_write(fd, 1)
        except OSError:
            pass  # closed meanwhile

    def _read_rings(self) -> None:
        for reader, handle in self._rings:
            reader.read(handle)

    def _events_tick(self) -> None:
        """Within a drain: read the process events ring (only that one: the stack copies ring is
        being unwound) if EVENTS_DURING_DRAIN_S passed since the last look."""
        now = time.monotonic()
        if now < self._events_due:
            return
        self._events_due = now + EVENTS_DURING_DRAIN_S
        for reader, handle in self._rings:
            if handle == self._on_event_record:
                reader.read(handle)

    def _on_event_record(self, buf, off: int, size: int) -> None:
        if (self._on_event is None and self.kernel_unwind is None) or size < EVENT.size:
            return
        etype, tgid, pid, _pad, ts, comm = EVENT.unpack_from(buf, off)
        kind = EVENT_KINDS.get(etype)
        if kind is None:
            return
        comm = _comm(comm)
        if kind == 'sampled' and not self._keep_comm(comm):
            return  # its samples are filtered out at the drain: no metadata needed
        ku = self.kernel_unwind
        if ku is not None:
            if kind == 'sampled':
                ku.request(tgid)
            else:
                ku.forget(tgid)
        if self._on_event is None:
            return
        try:
            self._on_event(ProcessEvent(kind, tgid, pid, comm, ts))
        except Exception:  # noqa: BLE001 - one event must not stop the others
            if self.log:
                self.log.debug('process event handler failed', exc_info=True)

    def poll(self, timeout_ms: int = 50) -> None:
        """Deliver pending exec/exit events to on_event (waits at most timeout_ms); in dwarf/auto,
        also take the stack copies out of their ring buffer (they are unwound at the next drain)."""
        with self._lock:
            if self._closed or self._bpf is None:
                return
            for fd, _ in self._epoll.poll(timeout_ms / 1000.0):
                if fd == self._wake_fd:
                    try:
                        os.eventfd_read(self._wake_fd)
                    except OSError:
                        pass
            # every ring, woken or not: exit events and most stack copies are submitted without
            # a wake-up (see bpf/sampler.c)
            self._read_rings()

    # ---------------------------------------------------------------- drain
    def kernel_stats(self) -> Dict[str, int]:
        """Cumulative kernel-side counters (summed over CPUs) since start."""
        with self._lock:
            if self._bpf is None:
                return {}
            return {name: int(sum(self._stats[ct.c_int(i)])) for i, name in enumerate(STATS)}

    def _stats_delta(self) -> List[int]:
        cur = [int(sum(self._stats[ct.c_int(i)])) for i in range(len(STATS))]
        delta = [c - p for c, p in zip(cur, self._prev_stats)]
        self._prev_stats = cur
        return delta

    @staticmethod
    def _read_stack(table, sid: int) -> Optional[Tuple[int, ...]]:
        try:
            leaf = table[table.Key(sid)]
        except KeyError:
            return None
        ips = leaf.ip[:MAX_STACK_DEPTH]  # one copy in C
        try:
            return tuple(ips[: ips.index(0)])
        except ValueError:
            return tuple(ips)  # full depth: the stack was probably cut

    @staticmethod
    def _clear_stacks(table, known: Iterable[int]) -> int:
        """Delete every entry of a stack map; returns how many there were."""
        n = 0
        for sid in known:
            try:
                del table[table.Key(sid)]
                n += 1
            except KeyError:
                pass
        # Entries not referenced by any count (the count insert failed): find them by iteration.
        rest = [k.value for k in table.keys()]
        for sid in rest:
            try:
                del table[table.Key(sid)]
                n += 1
            except KeyError:
                pass
        return n

    def _keep_comm(self, comm: str) -> bool:
        if self._include is not None and not self._include.search(comm):
            return False
        if self._exclude is not None and self._exclude.search(comm):
            return False
        return True

    def drain(self, final: bool = False) -> DrainResult:
        """Flip, wait for in-flight programs, read and clear the inactive set."""
        with self._lock:
            if self._closed or self._bpf is None:
                return DrainResult([], {})
            t0 = time.monotonic()
            old = self._gen
            self._gen = old + 1
            self._active[self._active.Key(0)] = self._active.Leaf(self._gen & 0xFFFFFFFF)
            time.sleep(FLIP_GRACE_S)
            if self._copies is not None:
                # every copy of the old generation is in the ring buffer now: unwind them all
                self._read_rings()
            buf = old & 1
            counts, stacks = self._counts[buf], self._stacks[buf]

            entries = []
            for k, v in counts.items_lookup_and_delete_batch():
                entries.append((k.tgid, k.tid, bytes(k.comm), k.ustack, k.kstack, int(v), k.pystack, k.ustack_hash,
                                k.tctx))
            if self.kernel_unwind is not None:
                self._read_kernel_unwound(old)
            if self._pystacks:
                self._read_python_stacks(old)
            if self._tc_records:
                self._read_thread_records(old)
            n_counts = len(entries)

            samples: List[RawSample] = []
            lost: Dict[str, int] = {r: 0 for r in (LOSS_REASONS if self.off_cpu else CPU_LOSS_REASONS)}
            partial: Dict[str, int] = {r: 0 for r in PARTIAL_REASONS}
            filtered = 0
            cache: Dict[int, Optional[Tuple[int, ...]]] = {}
            pairs = set()
            for tgid, tid, rawcomm, us, ks, cnt, py, kh, tc in entries:
                comm = rawcomm.split(b'\0', 1)[0].decode('utf-8', 'replace')
                if not self._keep_comm(comm):
                    filtered += cnt
                    continue
                kstack, _ = self._resolve(stacks, cache, ks)
                if kh:  # unwound in the kernel (bpf/kernel_unwind.h)
                    ustack, truncated = self._ku_stacks.get(kh, ((), True))
                    ulost = kh not in self._ku_stacks
                    if truncated:
                        partial[PARTIAL_UNWIND] += cnt
                    us = ('ku', kh)
                else:
                    ustack, ulost = self._resolve(stacks, cache, us)
                    truncated = len(ustack) >= MAX_STACK_DEPTH
                    if truncated:
                        partial[PARTIAL_DEPTH_LIMIT] += cnt
                pairs.add((us, ks))
                samples.append(RawSample(tgid, tid, comm, ustack, kstack, cnt, CPU_SAMPLES, truncated, ulost,
                                         self._python_stack(py), link=self._thread_record(tc)))
            if self._copies is not None:
                filtered += self._drain_copies(old, stacks, cache, samples, partial, pairs, final)
            n_stacks = self._clear_stacks(stacks, [s for s in cache if s >= 0])
            if self.kernel_unwind is not None:
                self.kernel_unwind.report()
                if not self.config.kernel_unwind_verify:
                    self._ku_stacks.clear()

            map_fill = {
                'counts': n_counts / float(max(1, self.config.counts_map_size)),
                'stacks': n_stacks / float(max(1, self.config.stack_storage_size)),
            }
            if self.off_cpu:
                filtered += self._drain_off_cpu(old, samples, lost, map_fill, pairs)

            delta = self._stats_delta()
            for i, name in enumerate(STATS):
                if not name.startswith('_') and name in lost:
                    lost[name] += delta[i]
            filtered += delta[STATS.index('_pid_filtered')]
            return DrainResult(
                samples=samples,
                lost=lost,
                partial=partial,
                filtered=filtered,
                unique_stacks=len(pairs),
                duration_s=time.monotonic() - t0,
                map_fill=map_fill,
                kernel_samples=delta[STATS.index('_samples')],
                execs=delta[STATS.index('_execs')],
                exits=delta[STATS.index('_exits')],
                runtime_stats={name: delta[STATS.index(name)] for name in PY_STATS},
                thread_context_stats=self._tc_stats_delta(),
            )

    def _drain_copies(self, old: int, stacks, cache, samples, partial, pairs, final: bool) -> int:
        """Samples unwound from stack copies of every generation but the active one; their kernel
        stack ids are resolved from the old generation's map before it is cleared (copies that
        wait for a CFI table until the next drain get theirs resolved now, see unwind/copies.py)."""
        filtered = 0
        old32 = old & 0xFFFFFFFF

        def resolve_kstack(gen: int, ks: int) -> Tuple[int, ...]:
            return self._resolve(stacks, cache, ks)[0] if gen == old32 else ()

        for (gen, tgid, tid, rawcomm, ustack, ks, truncated, py, tc), cnt in self._copies.take(
                self._gen & 0xFFFFFFFF, resolve_kstack, final, self._events_tick):
            comm = rawcomm.split(b'\0', 1)[0].decode('utf-8', 'replace')
            if not self._keep_comm(comm):
                filtered += cnt
                continue
            if isinstance(ks, tuple):  # ('resolved', addresses)
                kstack = ks[1]
            elif gen == old32:
                kstack, _ = self._resolve(stacks, cache, ks)
            else:  # a generation whose maps were cleared (not expected: each drain takes them all)
                kstack = ()
            if self.config.kernel_unwind_verify and py and py in self._ku_stacks:
                self.verify_pairs.append((tgid,) + self._ku_stacks[py] + (tuple(ustack), bool(truncated), cnt))
                continue  # already counted by the kernel
            if truncated:
                partial[PARTIAL_UNWIND] += cnt
            pairs.add(('copy', ustack, ks))
            samples.append(RawSample(tgid, tid, comm, ustack, kstack, cnt, CPU_SAMPLES, truncated, False,
                                     self._python_stack(py), link=self._thread_record(tc)))
        return filtered

    # -- OTel thread contexts (bpf/thread_ctx.h)
    def _read_thread_records(self, old: int) -> None:
        """Move the thread-context records of the generation that ended into the cache (content-
        addressed, like the Python stacks: a stack copy that waits across drains still finds its
        record)."""
        from ..unwind.copies import MAX_RETRIES

        cache = self._tc_cache
        for k, v in self._tc_records[old & 1].items_lookup_and_delete_batch():
            n = min(int(v.len), TC_RECORD_MAX)
            cache[k if isinstance(k, int) else int(k.value)] = bytes(bytearray(v.data)[:n]), old
        if len(cache) > 4 * int(self.config.thread_context_records):
            horizon = old - MAX_RETRIES - 2
            for rid in [r for r, (_, g) in cache.items() if g < horizon]:
                del cache[rid]

    def _thread_record(self, rid: int) -> Optional[bytes]:
        """The copied record of a sample (bytes; the receiver decodes it into ``RawSample.link`` and
        ``.context_attributes``), or None."""
        if not rid:
            return None
        hit = self._tc_cache.get(rid)
        return hit[0] if hit is not None else None

    def _tc_stats_delta(self) -> Dict[str, int]:
        if self._tc_stats is None:
            return {}
        cur = [int(sum(self._tc_stats[ct.c_int(i)])) for i in range(len(TC_STATS))]
        prev = self._tc_prev or [0] * len(TC_STATS)
        self._tc_prev = cur
        return {name: c - p for name, c, p in zip(TC_STATS, cur, prev)}

    def _read_kernel_unwound(self, old: int) -> None:
        """The user stacks the kernel unwound in the generation that ended: id -> (addresses, partial)."""
        table = self._ku_maps[old & 1]
        out = self._ku_stacks
        # one key at a time: a batch call allocates arrays for the whole map (16 MiB of 1 KiB
        # values) at every drain, and a drain holds a few hundred distinct stacks at most
        for k in list(table.keys()):
            try:
                v = table[k]
                del table[k]
            except KeyError:
                continue
            n = min(int(v.n), MAX_STACK_DEPTH)
            out[int(k.value)] = (tuple(v.ips[:n]), bool(v.partial))

    def _read_python_stacks(self, old: int) -> None:
        """Move the Python stacks of the generation that ended into the cache. Content-addressed
        (the id is a hash of the stack), so a stack copy that waits across drains still finds its
        stack here: entries live a few generations."""
        from ..unwind.copies import MAX_RETRIES

        table = self._pystacks[old & 1]
        cache = self._py_cache
        for k, v in table.items_lookup_and_delete_batch():
            n = min(int(v.n), int(self.config.python_max_frames))
            fr = v.frames
            frames = tuple((fr[i].code, fr[i].instr, fr[i].flags) for i in range(n))
            cache[k if isinstance(k, int) else int(k.value)] = ('cpython', frames, bool(v.truncated)), old
        horizon = old - MAX_RETRIES - 2
        if len(cache) > 4 * int(self.config.python_stacks_size):
            for sid in [s for s, (_, g) in cache.items() if g < horizon]:
                del cache[sid]

    def peek_python_stacks(self, seen: Dict[int, int]) -> List[Tuple[int, tuple]]:
        """(tgid, frames) of the Python stacks recorded since the last drain and not in ``seen``
        (id -> drain count, updated here): the runtime reads their code objects while the processes
        still run, from another thread than the drain's. Takes no lock: BPF map reads are atomic per
        element and a drain running meanwhile only removes elements. Never raises."""
        out: List[Tuple[int, tuple]] = []
        tables = self._pystacks
        gen = self._gen
        try:
            for table in tables:
                for k in table.keys():
                    sid = k.value
                    if sid in seen:
                        continue
                    try:
                        v = table[k]
                    except KeyError:
                        continue  # drained meanwhile
                    seen[sid] = gen
                    n = min(int(v.n), int(self.config.python_max_frames))
                    fr = v.frames
                    out.append((int(v.tgid), tuple(fr[i].code for i in range(n))))
        except Exception:  # noqa: BLE001 - the sampler was closed meanwhile
            pass
        return out

    def _python_stack(self, sid: int):
        """('cpython', frames (code, instr, flags) leaf first, truncated) of a Python stack id, or None."""
        if not sid:
            return None
        hit = self._py_cache.get(sid)
        return hit[0] if hit is not None else None

    def _resolve(self, stacks, cache, sid: int) -> Tuple[Tuple[int, ...], bool]:
        """(addresses, lost). A negative id is an error code from bpf_get_stackid."""
        if sid < 0:
            return (), sid != -EFAULT
        if sid not in cache:
            cache[sid] = self._read_stack(stacks, sid)
        st = cache[sid]
        if st is None:
            return (), True
        return st, False

    def _drain_off_cpu(self, old: int, samples, lost, map_fill, pairs) -> int:
        buf = old & 1
        counts, stacks = self._off_counts[buf], self._off_stacks[buf]
        # 1. snapshot (then clear) the stack map of the generation that just ended
        ids = [k.value for k in stacks.keys()]
        for sid in ids:
            st = self._read_stack(stacks, sid)
            if st is not None:
                self._off_cache[(old, sid)] = st
            try:
                del stacks[stacks.Key(sid)]
            except KeyError:
                pass
        entries = [
            (k.tgid, k.tid, bytes(k.comm), k.ustack, k.kstack, k.gen, int(v))
            for k, v in counts.items_lookup_and_delete_batch()
        ]
        map_fill['off_cpu_counts'] = len(entries) / float(max(1, self.config.counts_map_size))
        map_fill['off_cpu_stacks'] = len(ids) / float(max(1, self.config.off_cpu_stack_storage_size))
        filtered = 0
        for tgid, tid, rawcomm, us, ks, gen, ns in entries:
            comm = rawcomm.split(b'\0', 1)[0].decode('utf-8', 'replace')
            if not self._keep_comm(comm):
                filtered += 1
                continue
            ustack, ulost = self._off_resolve(gen, us)
            kstack, klost = self._off_resolve(gen, ks)
            if (ulost and us >= 0) or (klost and ks >= 0):
                lost['off_cpu_stack_expired'] += 1
            pairs.add(('off', gen, us, ks))
            samples.append(
                RawSample(tgid, tid, comm, ustack, kstack, ns, OFF_CPU_TIME, len(ustack) >= MAX_STACK_DEPTH, ulost)
            )
        # 2. keep only what pending records (now or at the previous drain) and the last two
        #    generations may still refer to: a record consumed between the flip and the read
        #    of offcpu_start below was pending at the previous drain.
        pending = set()
        try:
            for _, v in self._off_start.items_lookup_batch():
                if v.ustack >= 0:
                    pending.add((v.gen, v.ustack))
                if v.kstack >= 0:
                    pending.add((v.gen, v.kstack))
        except Exception:
            pending = set(self._off_cache)  # keep everything rather than lose
        keep = pending | self._off_pending_prev
        self._off_cache = {k: s for k, s in self._off_cache.items() if k in keep or k[0] >= old - 1}
        self._off_pending_prev = pending
        return filtered

    def _off_resolve(self, gen: int, sid: int) -> Tuple[Tuple[int, ...], bool]:
        if sid < 0:
            return (), sid != -EFAULT
        st = self._off_cache.get((gen, sid))
        if st is None:
            return (), True
        return st, False

    def program_ids(self) -> Dict[int, str]:
        """Kernel ids of our loaded BPF programs -> function name (for BPF run-time stats)."""
        from ..runtime.bpf_stats import prog_id_of_fd

        out: Dict[int, str] = {}
        with self._lock:
            if self._bpf is None:
                return out
            for name, fn in list(self._bpf.funcs.items()):
                try:
                    out[prog_id_of_fd(fn.fd)] = name.decode() if isinstance(name, bytes) else str(name)
                except Exception:
                    continue
        return out

    def stop_sampling(self) -> None:
        """Detach the perf events (no new CPU samples) but keep the maps, so that two more
        drains read everything that was counted: a clean, exact end."""
        with self._lock:
            if self._bpf is None:
                return
            for key in list(self._bpf.open_perf_events.keys()):
                try:
                    self._bpf.detach_perf_event(*key)
                except Exception:
                    if self.log:
                        self.log.debug('detach_perf_event failed', exc_info=True)

    # ---------------------------------------------------------------- close
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def running(self) -> bool:
        return self._bpf is not None and not self._closed

    def close(self) -> None:
        """Detach every program and close every fd. Idempotent; safe from any thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            b, self._bpf = self._bpf, None
            self._counts = self._stacks = self._tc_records = ()
            self._tc_stats = None
            self._off_cache = {}
            rings, self._rings = self._rings, []
            if self.kernel_unwind is not None:
                self.kernel_unwind.close()
            for reader, _ in rings:
                reader.close()
            if self._epoll is not None:
                self._epoll.close()
                self._epoll = None
            if self._wake_fd >= 0:
                fd, self._wake_fd = self._wake_fd, -1
                os.close(fd)
        if b is not None:
            try:
                b.cleanup()
            except Exception:
                if self.log:
                    self.log.warning('BPF cleanup failed', exc_info=True)
        atexit.unregister(self.close)  # no reference kept to a closed sampler
