# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Stage 1 of the sampler: the BPF program. Compile-time flags from the configuration, compile and
load (BCC), attach, the maps by role, the kernel-side counters, close.

The source is ``bpf/sampler.c`` with its feature headers pasted in (``bpf_source_text``); every
``-D`` flag comes from ``Program.cflags`` (the ``stats`` indices from ``KERNEL_STATS``).
"""
from __future__ import annotations

import ctypes as ct
import errno
import os
import re
import time
from typing import Dict, Iterable, List, Optional, Tuple

from . import kernel
from .kernel import SamplerError

BPF_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'bpf', 'sampler.c')

# A BPF stack map stores at most PERF_MAX_STACK_DEPTH frames: a stack that deep was cut.
MAX_STACK_DEPTH = 127
EFAULT = 14

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


def stat_flags() -> Dict[str, int]:
    """-D constants of the `stats` indices: ST_<C name> for each of KERNEL_STATS, and N_STATS."""
    flags = {'ST_' + cname: i for i, (cname, _) in enumerate(KERNEL_STATS)}
    flags['N_STATS'] = len(KERNEL_STATS)
    return flags


# Entries of each thread-context record map (tc_records0/1, bpf/thread_ctx.h) when
# `thread_context_records` is 0 (the default): room for twice the samples a generation can hold
# (samples_per_second x online CPUs x drain interval; a drain that runs late makes a longer
# generation), a power of 2 in [TC_RECORDS_MIN, TC_RECORDS_MAX]. A drain's batch read walks every
# bucket of the map whether used or not (4,096 fixed: ~65 us a drain for a few tens of records);
# a record that finds the map full leaves its sample unlinked, counted as
# otel_context.record_errors{reason:record_map_full}.
TC_RECORDS_MIN = 256
TC_RECORDS_MAX = 65536


def thread_records_size(config) -> int:
    """Entries of each ``tc_records`` map: ``config.thread_context_records``, or sized from the rate."""
    n = int(getattr(config, 'thread_context_records', 0) or 0)
    if n > 0:
        return n
    cpus = len(kernel.online_cpus()) or 1
    per_generation = int(config.samples_per_second) * cpus * max(1.0, float(getattr(config, 'drain_interval', 1.0)))
    size = TC_RECORDS_MIN
    while size < 2 * per_generation and size < TC_RECORDS_MAX:
        size *= 2
    return size


def read_stack(table, sid: int) -> Optional[Tuple[int, ...]]:
    """The addresses (leaf first) of one entry of a BPF stack map, or None if it is not there."""
    try:
        leaf = table[table.Key(sid)]
    except KeyError:
        return None
    ips = leaf.ip[:MAX_STACK_DEPTH]  # one copy in C
    try:
        return tuple(ips[: ips.index(0)])
    except ValueError:
        return tuple(ips)  # full depth: the stack was probably cut


def clear_stacks(table, known: Iterable[int]) -> int:
    """Delete every entry of a stack map; returns how many there were: the known ids, then the
    entries no count refers to (the count insert failed), found by iteration."""
    n = _delete_ids(table, known)
    return n + _delete_ids(table, [k.value for k in table.keys()])


def _delete_ids(table, ids: Iterable[int]) -> int:
    n = 0
    for sid in ids:
        try:
            del table[table.Key(sid)]
            n += 1
        except KeyError:
            pass
    return n


def fsbase_offset() -> int:
    from ..host.btf import BtfError, task_fsbase_offset

    try:
        return task_fsbase_offset()
    except (OSError, BtfError, ValueError) as e:
        raise SamplerError(
            'reading task_struct.thread.fsbase from the kernel BTF (/sys/kernel/btf/vmlinux) failed ({}): '
            'Python frames and span links need a kernel with CONFIG_DEBUG_INFO_BTF; remove python from receiver '
            'interpreters and set receiver span_links to false'.format(e))


class Counters:
    """A per-CPU array of counters (``stats``, ``tc_stats``): cumulative values and deltas.

    Read with one BPF_MAP_LOOKUP_BATCH call into arrays allocated once (BCC's ``table[i]`` is one
    syscall and one per-CPU array allocated per counter: 8 counters cost ~30 us a drain, 40 ~150 us);
    a kernel that refuses the batch call is read BCC's way from then on."""

    def __init__(self, table, names: Tuple[str, ...]) -> None:
        self.table = table
        self.names = names
        self._prev = [0] * len(names)
        self._batch = None
        try:
            from bcc.libbcc import lib

            n = len(names)
            cpus = int(getattr(table, 'total_cpu', 0) or 0)
            if n and cpus and ct.sizeof(table.sLeaf) == 8:
                # (lib, fd, keys, values, out batch, count, n, cpus): a per-CPU value is one u64 per
                # possible CPU
                self._batch = (lib, table.map_fd, (ct.c_uint32 * n)(), (ct.c_uint64 * (n * cpus))(),
                               ct.c_uint32(0), ct.c_uint32(0), n, cpus)
        except Exception:  # noqa: BLE001 - BCC without the batch call, or another table type
            self._batch = None

    def read(self) -> List[int]:
        batch = self._batch
        if batch is not None:
            lib, fd, keys, values, out, count, n, cpus = batch
            count.value = n
            res = lib.bpf_lookup_batch(fd, None, ct.byref(out), ct.byref(keys), ct.byref(values), ct.byref(count))
            err = ct.get_errno() if res != 0 else 0
            if (res == 0 or err == errno.ENOENT) and count.value >= n:
                got = [0] * n
                for j in range(n):  # keys come in index order for an array
                    k = keys[j]
                    if k < n:
                        got[k] = sum(values[j * cpus:(j + 1) * cpus])
                return got
            self._batch = None  # refused (an old kernel): BCC's way from now on
        return [int(sum(self.table[ct.c_int(i)])) for i in range(len(self.names))]

    def delta(self) -> List[int]:
        cur = self.read()
        delta = [c - p for c, p in zip(cur, self._prev)]
        self._prev = cur
        return delta


class Program:
    """The compiled and loaded BPF program (BCC's ``BPF`` object is ``bpf``, None until loaded)."""

    def __init__(self, config, kernel_unwind=None, log=None) -> None:
        self.config = config
        self.kernel_unwind = kernel_unwind
        self.log = log
        self.bpf = None
        self.bcc = None
        self.ring_pages: Dict[str, int] = {}  # ring buffer map -> pages (set with the compile flags)
        self.compile_seconds = 0.0
        self.compile_cpu_seconds = 0.0

    # -- what the configuration turns on
    @property
    def copy_stacks(self) -> bool:
        return self.config.unwinding in ('dwarf', 'auto')

    @property
    def python(self) -> bool:
        return 'python' in self.config.interpreters

    @property
    def off_cpu(self) -> bool:
        return float(self.config.off_cpu_threshold) > 0

    def copy_size(self) -> int:
        return (int(self.config.stack_copy_size) + 4095) // 4096 * 4096

    def copy_ring(self) -> Tuple[int, int]:
        """(ring pages, records of a CPU between forced wake-ups) of the stack copies."""
        from ..unwind.copies import ring_pages, wakeup_every

        cpus = len(kernel.online_cpus()) or 1
        pages = int(self.config.stack_copy_ring_pages) or ring_pages(
            self.copy_size(), cpus, int(self.config.samples_per_second))
        return pages, wakeup_every(pages, self.copy_size(), cpus)

    def cflags(self) -> List[str]:
        from .rings import EVENT_RECORD_BYTES

        c = self.config
        copy_pages, copy_wakeup_every = self.copy_ring() if self.copy_stacks else (1, 1)
        self.ring_pages = {'events': int(c.events_ring_pages), 'stack_copies': copy_pages}
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
            'STACK_COPY_SIZE': self.copy_size(),
            'COPY_PAGES': copy_pages,
            'COPY_CPUS': max(kernel.possible_cpus() or [0]) + 1,
            'COPY_WAKEUP_EVERY': copy_wakeup_every,
            'PYTHON': int(self.python),
            'PY_PROCS': max(1, int(c.python_processes)),
            'PY_STACKS': max(1, int(c.python_stacks_size)),
            'PY_MAX_FRAMES': int(c.python_max_frames),
            'TASK_FSBASE_OFF': fsbase_offset() if self.python or c.span_links else 0,
            'THREAD_CTX': int(bool(c.span_links)),
            'TC_PROCS': max(1, int(c.thread_context_processes)),
            'TC_RECORDS': thread_records_size(c),
        }
        flags.update(stat_flags())
        flags['UNWIND_KERNEL'] = int(self.kernel_unwind is not None)
        flags['KU_VERIFY'] = int(bool(c.kernel_unwind_verify))
        if self.kernel_unwind is not None:
            flags.update(self.kernel_unwind.cflags())
        # no -I: the feature headers beside sampler.c are pasted in by bpf_source_text()
        # -g0: no debug info, so no BTF of the program (BCC asks clang for -g to make it). Nothing here
        # uses it (map types come from BCC's own descriptions, the kernel BTF is read by host/btf.py):
        # 0.1-0.25 s less LLVM CPU per compile, the same instructions (only the map fd numbers shift)
        return ['-D{}={}'.format(k, v) for k, v in flags.items()] + ['-w', '-g0']

    # -- compile and load
    def load(self):
        """Start-up checks, compile and load; returns BCC's ``BPF`` object. Raises SamplerError (one
        line: cause and fix)."""
        kernel.check_privileges()
        bcc = kernel.import_bcc()
        kernel.check_headers()
        kernel.ensure_tracefs()
        text = bpf_source_text()
        cflags = self.cflags()  # before the clocks: the BTF offsets are not the compile
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
        self.bcc = bcc
        self.bpf = b
        return b

    def set_generation(self, gen: int) -> None:
        """The set of (counts, stacks) maps the programs write from now on (``active``)."""
        active = self.bpf['active']
        active[active.Key(0)] = active.Leaf(gen & 0xFFFFFFFF)

    def fill_pid_filter(self) -> None:
        if self.config.pids:
            pf = self.bpf['pid_filter']
            for p in self.config.pids:
                pf[pf.Key(int(p))] = pf.Leaf(1)

    def pair(self, prefix: str) -> tuple:
        """The two maps ``<prefix>0``, ``<prefix>1`` of a double-buffered role."""
        return (self.bpf[prefix + '0'], self.bpf[prefix + '1'])

    def attach(self) -> None:
        """Attach the CPU sampler to the perf ``cpu-clock`` event of every online CPU (and the
        in-kernel unwinder's programs)."""
        b, bcc = self.bpf, self.bcc
        if self.kernel_unwind is not None:
            self.kernel_unwind.attach(b, bcc.BPF.PERF_EVENT)
        b.attach_perf_event(
            ev_type=bcc.PerfType.SOFTWARE,
            ev_config=bcc.PerfSWConfig.CPU_CLOCK,
            fn_name=b'on_cpu_sample',
            sample_freq=int(self.config.samples_per_second),
            cpu=-1,
        )

    def table(self, name: str):
        if self.bpf is None:
            return None
        try:
            return self.bpf[name]
        except KeyError:
            return None

    def program_ids(self) -> Dict[int, str]:
        """Kernel ids of our loaded BPF programs -> function name (for BPF run-time stats)."""
        from ..runtime.bpf_stats import prog_id_of_fd

        out: Dict[int, str] = {}
        if self.bpf is None:
            return out
        for name, fn in list(self.bpf.funcs.items()):
            try:
                out[prog_id_of_fd(fn.fd)] = name.decode() if isinstance(name, bytes) else str(name)
            except Exception:
                continue
        return out

    def detach_perf_events(self) -> None:
        if self.bpf is None:
            return
        for key in list(self.bpf.open_perf_events.keys()):
            try:
                self.bpf.detach_perf_event(*key)
            except Exception:
                if self.log:
                    self.log.debug('detach_perf_event failed', exc_info=True)
