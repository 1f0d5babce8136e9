# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The long-lived sampler thread.

``Receiver.start()`` takes the host-wide lock, starts the ``Sampler`` (synchronously: start-up
errors raise ``SamplerError`` in the caller) and a daemon thread that drains the kernel maps every
``drain_interval`` seconds and accumulates raw samples until the check calls ``collect()``.
Process events (first sample of a process, exec, exit) are handled on a thread of their own (the
sampler's events thread), so that a process is read and registered with the runtimes within
milliseconds of its first sample, whatever the drain is doing (a drain unwinding stack copies
or compiling CFI tables takes hundreds of ms on a busy host; a process may live 50 ms). Both
threads write the registry and the runtimes, which lock their own state; ``_events_lock``
guards the receiver's re-read schedule. ``stop()`` only signals; the thread detaches everything and exits.
The thread also stops itself when no ``heartbeat()`` came for 3 check intervals.
"""
from __future__ import annotations

import collections
import errno
import fcntl
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..profile.merge import add_samples, merged_samples
from ..profile.model import CPU_SAMPLES, RawSample, with_fields
from ..runtime.telemetry import Telemetry
from ..runtimes.otel_process_context import ProcessContextReader
from ..runtimes.otel_thread_context import RecordLinks, ThreadContextDecoder
from .kernel import SamplerError
from .processes import ProcessRegistry
from .sampler import LOSS_REASONS, PARTIAL_REASONS, ProcessEvent, Sampler, SamplerConfig

__all__ = ['Receiver', 'ReceiverConfig', 'Collected', 'DEFAULT_LOCK_PATH', 'acquire_host_lock']

DEFAULT_LOCK_PATH = '/run/host_profiler.lock'
MAP_NAMES = ('counts', 'stacks', 'off_cpu_counts', 'off_cpu_stacks')
# A process first sampled this young may be in its dynamic loader, before its libraries are
# mapped: read its maps again EXEC_REREAD_DELAY_S later (a 50 ms process then still gets its
# libc), and when the pid first shows up in a drain.
YOUNG_PROCESS_S = 0.5
EXEC_REREAD_DELAY_S = 0.015
# A runtime whose library the loader has not mapped yet asks for the maps again this soon
RUNTIME_REREAD_DELAY_S = 0.02
# Re-read the maps of a process whose leaf address falls outside every known mapping (dlopen),
# at most this often per process.
MAPS_REFRESH_MIN_S = 2.0
FIRST_DRAIN_S = 0.2
OWN_LOCK_WAIT_S = 3.0
# dwarf/auto: share of each drain interval that may go to compiling CFI tables (see unwind/tables.py)
UNWIND_BUILD_BUDGET = 0.5
# Runtimes read what the recorded frames point to (Python code objects) this often, from their own
# thread: the drain may come late (CFI builds on a busy host), by when a process may have exited.
PREFETCH_INTERVAL_S = 0.2
# ... and this often while a runtime registered a process recently (Runtime.eager): a process that
# lives 0.3 s would otherwise often exit before its first look. A look costs about 1 ms per few
# hundred recorded stacks (the BPF map is walked key by key), and on a host that starts Python
# processes all the time the runtime is always eager: eager looks are spaced so that they take at
# most PREFETCH_EAGER_SHARE of a core.
PREFETCH_EAGER_S = 0.05
PREFETCH_EAGER_SHARE = 0.02
# ... and this often once PREFETCH_IDLE_AFTER looks in a row read nothing (the runtimes' caches
# hold what the running processes execute): each wake-up of an idle thread costs ~50-80 us of CPU
# on this 2-core machine (GIL, the runtimes' own checks), a few hundredths of a percent of a core
# at 5 a second. A process registered (Runtime.eager) wakes the thread at once.
PREFETCH_IDLE_S = 1.0
PREFETCH_IDLE_AFTER = 3
# the observer thread blocks on its queue this long at most (stop() wakes it with a None)
OBSERVER_WAIT_S = 5.0


@dataclass
class ReceiverConfig(SamplerConfig):
    drain_interval: float = 1.0  # seconds between kernel drains
    process_exit_ttl: float = 60.0  # seconds metadata of an exited process is kept
    include_env_vars: Sequence[str] = ()
    lock_path: str = DEFAULT_LOCK_PATH
    check_interval: float = 15.0  # the check's interval; no heartbeat for 3x this stops the thread (0: never)
    # longest wait for events between drains. Stack copies wake the thread early when their ring
    # fills, first samples of processes at once (see bpf/sampler.c), and stop() through the
    # sampler's wake-up fd, so nothing needs a shorter one; each wake-up costs ~40 us of CPU.
    poll_timeout_ms: int = 1000
    unwinding: str = 'auto'  # the spec's default (SamplerConfig keeps frame_pointers for the bare sampler)
    # the instance's receiver.symbolizer section: without the symbolizer's cache (Receiver(memory_cache=)),
    # the CFI tables take their share of memory_budget_mb (host.budget.split_memory_budget)
    symbolizer: Dict[str, Any] = field(default_factory=dict)
    # runtimes named in every stack (runtimes.RUNTIMES names); Python frames need 'python' here
    interpreters: Sequence[str] = ('python',)
    span_links: bool = True  # OTel thread contexts -> span links (SamplerConfig keeps it off for the bare sampler)


@dataclass
class Collected:
    samples: List[RawSample]  # identical keys merged
    lost: Dict[str, int]
    processes: ProcessRegistry  # a snapshot
    start_ns: int  # wall clock (time.time_ns) of the previous collect (or start)
    end_ns: int
    filtered: int = 0
    unique_stacks: int = 0
    drains: int = 0


# ---------------------------------------------------------------------------- host-wide lock


def _lock_holder(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip() or '?'
    except OSError:
        return '?'


# Lock paths whose holder in this process was asked to stop and will release them shortly.
_releasing: set = set()


def acquire_host_lock(path: str) -> int:
    """flock(LOCK_EX|LOCK_NB) on `path`; returns the fd (close it to release)."""
    try:
        d = os.path.dirname(path)
        if d:
            os.makedirs(d, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise SamplerError(
            'cannot open the sampler lock file {} ({}): run as root or set receiver lock_path to a '
            'writable file'.format(path, e.strerror)
        )
    deadline = time.monotonic() + OWN_LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as e:
            busy = e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
            # A sampler of this process that was told to stop (a check re-created right after
            # cancel()) releases the lock within a fraction of a second: wait for it, not refuse.
            if busy and path in _releasing and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            os.close(fd)
            if busy:
                raise SamplerError(
                    'another host_profiler sampler already runs on this host (pid {} holds {}): run one '
                    'host_profiler instance per host, or stop the other one'.format(_lock_holder(path), path)
                )
            raise SamplerError('cannot lock {} ({}): check the file system'.format(path, e.strerror))
    os.ftruncate(fd, 0)
    os.write(fd, '{}\n'.format(os.getpid()).encode())
    return fd


# ---------------------------------------------------------------------------- receiver


class Receiver:
    def __init__(self, config: Optional[ReceiverConfig] = None, telemetry: Optional[Telemetry] = None, log=None,
                 memory_cache: Any = None):
        """``memory_cache``: the symbolizer's ``host.budget.ByteLRU``, which the CFI tables share
        (else they get their share of ``receiver.symbolizer.memory_budget_mb`` on their own)."""
        self.config = config or ReceiverConfig()
        self.telemetry = telemetry if telemetry is not None else Telemetry()
        self.log = log
        self.registry = ProcessRegistry(
            include_env_vars=self.config.include_env_vars,
            exit_ttl=self.config.process_exit_ttl,
            max_entries=self.config.max_processes,
        )
        self._pid_filter = frozenset(int(p) for p in self.config.pids)
        self._lock = threading.Lock()  # accumulator + lifecycle
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._sampler: Optional[Sampler] = None
        self._lock_fd: Optional[int] = None
        self._reread: Dict[int, float] = {}  # pid -> when to re-read its maps after exec (under _events_lock)
        self._events_lock = threading.Lock()
        # the runtimes' look at the processes the events thread read (see _observe_soon)
        self._observe_q: 'queue.Queue[Any]' = queue.Queue()
        self._observer: Optional[threading.Thread] = None
        self._observer_stop = threading.Event()
        self._prefetch_wake = threading.Event()  # a process registered (eager looks) or stop()
        # seconds from each first sample (the kernel's timestamp) to its process read and registered
        # with the runtimes (benchmarks, tests): the last 4096
        self.first_sample_delays: 'collections.deque[float]' = collections.deque(maxlen=4096)
        self._acc: Dict[tuple, int] = {}
        self._lost: Dict[str, int] = {}
        self._filtered = 0
        self._drains = 0
        self._since_ns = time.time_ns()
        self._last_heartbeat = time.monotonic()
        self.error: Optional[BaseException] = None  # what stopped the thread, if it failed
        self.unwinder: Any = None
        if self.config.unwinding in ('dwarf', 'auto'):
            from ..host.budget import split_memory_budget
            from ..unwind.unwinder import Unwinder

            budget_mb = (self.config.symbolizer or {}).get('memory_budget_mb')
            self.unwinder = Unwinder(self.telemetry,
                                     memory_budget_bytes=split_memory_budget(budget_mb, self.config.unwinding)[1],
                                     mode=self.config.unwinding, cache=memory_cache)
        # OTel process contexts (OTEP 4719) of the processes of each drain
        self.contexts = ProcessContextReader(self.telemetry, log=log)
        # OTel thread contexts (OTEP 4947): a sampled thread's copied record -> RawSample.link and
        # .context_attributes, with the key map of ProcessInfo.otel_context (the copy itself is BPF's)
        self.thread_contexts = ThreadContextDecoder(self.telemetry)
        # decoded once per distinct record, not per drain: the drain builds linked samples directly
        self.record_links = RecordLinks(self.thread_contexts, self._otel_context)
        from ..runtimes import Runtimes, runtime_classes

        fp = self.config.unwinding == 'frame_pointers'
        runtimes = [cls(self.telemetry, log, frame_pointers=fp) for cls in runtime_classes(self.config.interpreters)]
        self.thread_tls = None
        if self.config.span_links:  # registers the processes that export otel_thread_ctx_v1 (tc_procs)
            from ..runtimes.otel_thread_tls import ThreadTlsRuntime

            self.thread_tls = ThreadTlsRuntime(self.telemetry, log)
            runtimes.append(self.thread_tls)
        self.runtimes = Runtimes(runtimes)
        self.stopped_reason = ''
        self.on_stopped: Optional[Callable[[], None]] = None  # called by the thread once it has stopped
        self.startup_seconds = 0.0
        self.compile_seconds = 0.0
        self.compile_cpu_seconds = 0.0
        self._declare()

    def _declare(self) -> None:
        t = self.telemetry
        for name in (
            'sampler.samples',
            'sampler.filtered',
            'sampler.drains',
            'processes.exec_events',
            'processes.exit_events',
            'processes.gone_before_metadata',
        ):
            t.declare(name)
        for r in LOSS_REASONS:
            t.declare('sampler.lost', ['reason:' + r])
        for r in PARTIAL_REASONS:
            t.declare('sampler.stacks.partial', ['reason:' + r])
        t.gauge('sampler.running', 0)

    # -- lifecycle
    @property
    def running(self) -> bool:
        th = self._thread
        return th is not None and th.is_alive() and not self._stop.is_set()

    def start(self) -> None:
        """Start the sampler and its thread; raises SamplerError if start-up fails."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            t0 = time.monotonic()
            self._stop.clear()
            self.error = None
            self.stopped_reason = ''
            self._lock_fd = acquire_host_lock(self.config.lock_path)
            walkers = None
            if self.unwinder is not None:
                from .drains.stack_copies import RegistryWalkers

                walkers = RegistryWalkers(self.registry, self.unwinder, self.telemetry)
            sampler = Sampler(self.config, on_event=self._on_event, log=self.log, walkers=walkers,
                              telemetry=self.telemetry)
            try:
                sampler.start()
            except BaseException:
                sampler.close()
                self._release_lock()
                raise
            self._sampler = sampler
            if self.thread_tls is not None:
                sampler.on_cpu.link_record = self.record_links
            self.runtimes.attach(sampler)
            for info in list(self.registry):  # processes known before a restart
                if info.exited_at is None:
                    self.runtimes.observe(info)
            self.compile_seconds = sampler.compile_seconds
            self.compile_cpu_seconds = sampler.compile_cpu_seconds
            self.startup_seconds = time.monotonic() - t0
            self._last_heartbeat = time.monotonic()
            self._since_ns = time.time_ns()
            self.telemetry.gauge('sampler.running', 1)
            # process events on their own thread (falls back to the drain thread's polls without one),
            # the runtimes' look at each new process on another
            self._observe_q = queue.Queue()
            # (exit and exec events come without a wake-up: read at least every drain interval, even
            # while a drain takes longer)
            events_timeout_ms = max(1, int(min(self.config.poll_timeout_ms, 1000 * self.config.drain_interval)))
            if sampler.start_events_thread(self._reread_due, events_timeout_ms) and self.runtimes:
                self._observer_stop = threading.Event()
                self._observer = threading.Thread(target=self._observe_loop, args=(self._observer_stop,),
                                                  name='host_profiler-observe', daemon=True)
                self._observer.start()
            self._thread = threading.Thread(target=self._run, name='host_profiler-sampler', daemon=True)
            self._thread.start()
            if self.runtimes:
                threading.Thread(target=self._prefetch, args=(sampler,), name='host_profiler-runtimes',
                                 daemon=True).start()

    def program_ids(self) -> Dict[int, str]:
        """Kernel ids of the sampler's BPF programs -> name ({} when not running)."""
        sampler = self._sampler
        if sampler is None or not self.running:
            return {}
        return sampler.program_ids()

    def heartbeat(self) -> None:
        self._last_heartbeat = time.monotonic()

    def stop(self, block: bool = False, timeout: Optional[float] = None) -> None:
        """Signal the thread to detach everything and exit. Non-blocking unless block=True."""
        if not self.stopped_reason:
            self.stopped_reason = 'stopped'
        if self._lock_fd is not None:
            _releasing.add(self.config.lock_path)
        self._stop.set()
        self._prefetch_wake.set()
        sampler = self._sampler
        if sampler is not None:
            sampler.wake()  # out of its poll now, not at the timeout
        if block:
            self.join(timeout)

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the thread; True when it is gone (or never started)."""
        th = self._thread
        if th is None or th is threading.current_thread():
            return True
        th.join(timeout)
        return not th.is_alive()

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            try:
                os.close(fd)  # releases the flock
            except OSError:
                pass
            _releasing.discard(self.config.lock_path)

    # -- thread
    def _run(self) -> None:
        cfg = self.config
        sampler = self._sampler
        # The first drain comes early, so that the first samples (and the metadata of their
        # processes) are there a fraction of a second after start-up.
        next_drain = time.monotonic() + min(cfg.drain_interval, FIRST_DRAIN_S)
        try:
            while not self._stop.is_set():
                if cfg.check_interval > 0 and time.monotonic() - self._last_heartbeat > 3 * cfg.check_interval:
                    self.stopped_reason = 'no heartbeat for {:.0f}s'.format(3 * cfg.check_interval)
                    if self.log:
                        self.log.warning('host_profiler sampler stops itself: %s', self.stopped_reason)
                    break
                threaded = sampler.events_threaded
                with self._events_lock:
                    due = min(self._reread.values()) if self._reread and not threaded else next_drain
                wait = min(cfg.poll_timeout_ms / 1000.0, next_drain - time.monotonic(), due - time.monotonic())
                sampler.poll(max(1, int(max(0.0, wait) * 1000)))
                now = time.monotonic()
                if not threaded:
                    self._reread_due()
                if now >= next_drain:
                    self._drain_once(sampler)
                    next_drain += cfg.drain_interval
                    if next_drain < now:
                        next_drain = now + cfg.drain_interval
            # what was counted since the last drain is not lost on a clean stop: stop the
            # perf events, then drain both sets
            sampler.stop_sampling()
            self._drain_once(sampler)
            self._drain_once(sampler)
        except BaseException as e:  # noqa: BLE001 - the thread must always clean up
            self.error = e
            self.stopped_reason = 'error: {}'.format(e)
            if self.log:
                self.log.error('host_profiler sampler thread failed: %s', e, exc_info=True)
        finally:
            sampler.close()
            self._stop_observer()
            self.runtimes.close()
            self._release_lock()
            self._stop.set()
            self.telemetry.gauge('sampler.running', 0)
            if self.on_stopped is not None:  # whatever stops the thread (stop(), no heartbeat, an error)
                try:
                    self.on_stopped()
                except Exception as e:  # noqa: BLE001
                    if self.log:
                        self.log.warning('host_profiler sampler stop hook failed: %s', e)

    def _stop_observer(self) -> None:
        """Stop the observer thread (after the events thread: nothing more is queued)."""
        th, self._observer = self._observer, None
        if th is not None:
            self._observer_stop.set()
            self._observe_q.put(None)  # out of its wait now
            th.join(5.0)

    def _prefetch(self, sampler: Sampler) -> None:
        took = 0.0
        empty = 0  # looks in a row that read nothing
        wake = self._prefetch_wake
        while not self._stop.is_set():
            if self.runtimes.eager(time.monotonic()):
                wait = min(PREFETCH_INTERVAL_S, max(PREFETCH_EAGER_S, took / PREFETCH_EAGER_SHARE))
            else:
                wait = PREFETCH_IDLE_S if empty >= PREFETCH_IDLE_AFTER else PREFETCH_INTERVAL_S
            if wake.wait(wait):
                wake.clear()
            if self._stop.is_set():
                break
            try:
                t0 = time.thread_time()
                read = self.runtimes.prefetch(sampler)
                took = time.thread_time() - t0
                empty = 0 if read else empty + 1
            except Exception:  # noqa: BLE001 - a failed look is retried at the next one
                if self.log:
                    self.log.debug('runtime prefetch failed', exc_info=True)

    def _observe_soon(self, info) -> None:
        """The runtimes' look at a process (tens to hundreds of ms: module files opened and parsed,
        memory read, their locks shared with the drain): on the observer thread when the events
        have a thread of their own, so that the next first sample's /proc read never waits for it;
        else now."""
        if info is None:
            return
        if self._observer is not None:
            self._observe_q.put(info)
        else:
            self._observe(info)

    def _observe_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                info = self._observe_q.get(timeout=OBSERVER_WAIT_S)
            except queue.Empty:
                continue
            if info is None:  # stop
                continue
            if self.registry.get(info.pid) is info:  # not exec'd or re-read meanwhile
                self._observe(info)
                if info.exited_at is not None or self.registry.get(info.pid) is not info:
                    # it exited or exec'd while the runtimes looked at it: the events thread's
                    # forget may have come first
                    self.runtimes.forget(info.pid)

    def _reread_due(self) -> Optional[float]:
        """Re-read the maps of the young processes whose time came (the loader maps libraries
        after exec); returns the seconds until the next one (None: none scheduled). Runs on the
        events thread (on the drain thread when there is none)."""
        now = time.monotonic()
        with self._events_lock:
            if not self._reread:
                return None
            pids = [p for p, t in self._reread.items() if t <= now]
            for pid in pids:
                del self._reread[pid]
        for pid in pids:
            self.registry.refresh_mappings(pid, fresh=True)
            self._observe_soon(self.registry.get(pid))
        with self._events_lock:
            return max(0.0, min(self._reread.values()) - time.monotonic()) if self._reread else None

    def _schedule_reread(self, pid: int, delay: float, replace: bool = True) -> None:
        with self._events_lock:
            if len(self._reread) >= self.config.max_processes and pid not in self._reread:
                return
            if not replace and pid in self._reread:
                return
            self._reread[pid] = time.monotonic() + delay
        sampler = self._sampler
        if sampler is not None:
            sampler.wake_events()  # its wait may be longer than this delay

    def _on_event(self, ev: ProcessEvent) -> None:
        if self._pid_filter and ev.pid not in self._pid_filter:
            return
        if ev.kind == 'sampled':
            # The first sample of a process since its exec (or since start-up): read its metadata
            # now, while it runs. Processes never sampled are never read (see bpf/sampler.c).
            if not ev.pid:
                return
            known = self.registry.get(ev.pid)
            # Known and not exited, yet announced again: the kernel forgot it (its LRU of announced
            # processes is twice the registry), so its exit may have gone unseen and the pid may
            # belong to another process now: compare start times.
            info, gone = self.registry.ensure(ev.pid, check_start=True)
            if ev.ts_ns:
                self.first_sample_delays.append(time.monotonic() - ev.ts_ns / 1e9)
            self._observe_soon(info)
            if gone:
                self.telemetry.count('processes.gone_before_metadata', 1)
            elif info is not None and info is not known and info.age_s() < YOUNG_PROCESS_S:
                # young: the loader may still be mapping its libraries
                self._schedule_reread(ev.pid, EXEC_REREAD_DELAY_S)
        elif ev.kind == 'exec':  # of a process sampled before (see bpf/sampler.c)
            with self._events_lock:
                self._reread.pop(ev.pid, None)
            self.registry.on_exec(ev.pid)  # (before forget: see _observe_loop)
            self.runtimes.forget(ev.pid)
        else:
            with self._events_lock:
                self._reread.pop(ev.pid, None)
            self.registry.on_exit(ev.pid)
            self.runtimes.forget(ev.pid)

    def _observe(self, info) -> None:
        """Runtimes detect their processes at first sight (and after a re-read of the mappings).
        Called from the events thread and the drain thread: the runtimes lock their own state."""
        if info is not None and info.exited_at is None and self.runtimes:
            try:
                if self.runtimes.observe(info) and info.age_s() < YOUNG_PROCESS_S:
                    # its interpreter library is not mapped yet: read its maps again shortly
                    self._schedule_reread(info.pid, RUNTIME_REREAD_DELAY_S, replace=False)
                if self.runtimes.eager(time.monotonic()):
                    self._prefetch_wake.set()  # a process registered: the prefetch's eager looks now
            except Exception:  # noqa: BLE001 - a runtime must not stop the sampler thread
                if self.log:
                    self.log.debug('runtime detection failed for pid %s', info.pid, exc_info=True)

    def _drain_once(self, sampler: Sampler) -> None:
        if self.unwinder is not None:
            # compile CFI tables for at most about half a drain interval per drain (none at the final
            # drains of a stop): a busy host's first drains would otherwise take seconds
            self.unwinder.tables.set_build_budget(
                0.0 if self._stop.is_set() else max(0.05, UNWIND_BUILD_BUDGET * self.config.drain_interval))
        drain_start = time.monotonic()
        res = sampler.drain(final=self._stop.is_set())
        t = self.telemetry
        if self.unwinder is not None:
            self.unwinder.flush()
        # metadata of pids seen for the first time, right away (short-lived processes)
        leaves: Dict[int, set] = {}
        for s in res.samples:
            if s.pid:
                ls = leaves.setdefault(s.pid, set())
                if s.user_stack:
                    ls.add(s.user_stack[0])
        now = time.monotonic()
        for pid, ls in leaves.items():
            info, gone = self.registry.ensure(pid)
            if gone:
                t.count('processes.gone_before_metadata', 1)
            if info is None or info.exited_at is not None:
                continue
            if not info.drained:
                info.drained = True
                # Read before this drain (at exec): read again, the loader may have mapped more
                # since. Read during this drain (the unwinder met the pid first): the maps are
                # newer than every sample of this drain already.
                if info.read_at < drain_start and now - info.read_at > EXEC_REREAD_DELAY_S:
                    self.registry.refresh_mappings(pid)
            elif now - info.read_at > MAPS_REFRESH_MIN_S and any(info.find_mapping(a) is None for a in ls):
                self.registry.refresh_mappings(pid)
            self._observe(info)  # with the mappings just re-read (a libpython the loader mapped late)
        self.contexts.update(self.registry, leaves, now)
        self.registry.expire()
        samples = self._resolve_runtime_stacks(res) if self.runtimes else res.samples
        if self.thread_tls is not None:
            samples = self._link_samples(samples, res.thread_context_stats)
        with self._lock:
            add_samples(self._acc, samples)  # the only merge of sample keys (profile/merge.py)
            for r, n in res.lost.items():
                self._lost[r] = self._lost.get(r, 0) + n
            self._filtered += res.filtered
            self._drains += 1
        t.count('sampler.samples', sum(s.count for s in res.samples if s.value_type == CPU_SAMPLES))
        for r, n in res.lost.items():
            t.count('sampler.lost', n, ['reason:' + r])
        for r, n in res.partial.items():
            t.count('sampler.stacks.partial', n, ['reason:' + r])
        t.count('sampler.filtered', res.filtered)
        t.count('sampler.drains', 1)
        t.count('processes.exec_events', res.execs)
        t.count('processes.exit_events', res.exits)
        t.gauge('sampler.drain_duration', res.duration_s)
        for m, v in res.map_fill.items():
            t.gauge('sampler.map_fill_ratio', v, ['map:' + m])
        t.gauge('processes.tracked', len(self.registry))

    def _resolve_runtime_stacks(self, res) -> List[RawSample]:
        """What the BPF program recorded of runtime frames -> RuntimeStacks, now, while the
        processes still run (their code objects are read from their memory)."""
        memo: Dict[Tuple[int, int], Any] = {}
        out = []
        for s in res.samples:
            raw = s.runtime_stack
            if raw is not None:
                k = (s.pid, id(raw))
                if k not in memo:
                    try:
                        memo[k] = self.runtimes.resolve(s.pid, raw)
                    except Exception:  # noqa: BLE001 - the sample keeps its native frames
                        memo[k] = None
                        if self.log:
                            self.log.debug('runtime frames of pid %s failed', s.pid, exc_info=True)
                s = with_fields(s, runtime_stack=memo[k])
            out.append(s)
        for r in self.runtimes.runtimes:
            kernel_counts = getattr(r, 'kernel_counts', None)
            if kernel_counts is not None:
                kernel_counts(res.runtime_stats)
        self.runtimes.end_drain()
        return out

    def _otel_context(self, pid: int):
        info = self.registry.get(pid)
        return info.otel_context if info is not None else None

    def _link_samples(self, samples: List[RawSample], kernel: Dict[str, int]) -> List[RawSample]:
        """Counts the linked samples (the drain decoded their records through ``record_links``; a
        sample whose ``link`` still holds the copied record's bytes is decoded here); kernel counters
        -> metrics."""
        t = self.telemetry
        out = samples
        sampler = self._sampler
        if sampler is not None and not sampler.on_cpu.undecoded:  # the drain decoded every record
            linked = sum([s.count for s in samples if s.link is not None])
        else:
            linked = 0
            for i, s in enumerate(samples):
                link = s.link
                if link is None:
                    continue
                if isinstance(link, bytes):
                    if out is samples:
                        out = list(samples)
                    link, attributes = self.record_links(s.pid, link)
                    out[i] = s = with_fields(s, link=link, context_attributes=attributes)
                    if link is None:
                        continue
                linked += s.count
        self.record_links.end_drain()
        t.count('otel_context.samples_linked', linked)
        t.count('otel_context.thread_context_reads', kernel.get('reads', 0))
        # (declared: a zero need not be added)
        for reason in ('torn', 'read_error', 'oversized', 'record_map_full', 'not_valid'):
            n = kernel.get(reason, 0)
            if n:  # not_valid: a record being written when sampled is skipped in the kernel
                t.count('otel_context.record_errors', n, ['reason:' + reason])
        t.gauge('otel_context.thread_context_processes', self.thread_tls.processes)
        return out

    # -- check side
    def collect(self) -> Collected:
        """What accumulated since the previous collect (then reset). Thread-safe."""
        with self._lock:
            acc, self._acc = self._acc, {}
            lost, self._lost = self._lost, {}
            filtered, self._filtered = self._filtered, 0
            drains, self._drains = self._drains, 0
            start_ns, end_ns = self._since_ns, time.time_ns()
            self._since_ns = end_ns
        samples = merged_samples(acc)
        unique = len({(k[3], k[4]) for k in acc})
        self.telemetry.gauge('sampler.unique_stacks', unique)
        self.telemetry.gauge('processes.tracked', len(self.registry))
        return Collected(
            samples=samples,
            lost=lost,
            processes=self.registry.snapshot(),
            start_ns=start_ns,
            end_ns=end_ns,
            filtered=filtered,
            unique_stacks=unique,
            drains=drains,
        )
