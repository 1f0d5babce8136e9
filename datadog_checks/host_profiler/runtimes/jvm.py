# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""HotSpot JVMs (JDK 17+): Java frames named with no JVM flag.

A JVM's compiled methods, and its template interpreter, live in its code cache: anonymous
executable memory, which no file names. Since JDK 17 a running JVM writes the perf map of that code
(``/tmp/perf-<pid>.map``, ``0x<start> 0x<size> <name>``) on the ``Compiler.perfmap`` diagnostic
command, which the profiler sends through the attach mechanism (``hotspot_attach``); the symbolizer
then reads the map as any perf map. Interpreted frames are named ``Interpreter`` (the code blob
they run in).

- Detection: a process that maps ``libjvm.so`` (and not OpenJ9's ``libj9vm``), from its mappings.
- When: once a JVM is ``WARMUP_S`` old (its hot methods compiled, its signal handlers installed),
  then again while samples keep landing on code the map does not name (methods compiled since):
  15 s, 30 s, then at most once a minute per JVM; when an attach brings no change the interval
  doubles, up to 16 minutes. At most ``MAX_ATTACHES_PER_RUN`` attaches start per check run, one
  at a time on a worker thread (never on the check's thread); each is bounded by socket timeouts.
- Failures are counted by reason; a JVM that cannot be attached (attach disabled, JDK < 17, another
  user while not root, no listener after SIGQUIT) is not tried again.
- The maps the profiler made the JVMs write are removed when the JVM exits (host /tmp only), so
  that a later process with the same pid never gets a stale map.
"""
from __future__ import annotations

import functools
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..host.proc import DELETED_SUFFIX
from ..profile.model import FRAME_JVM
from ..symbols.perfmap import perf_map_candidates
from . import hotspot_attach
from .hotspot_attach import AttachError, CredentialsError

LOG = logging.getLogger(__name__)

MODES = ('auto', 'off')
WARMUP_S = 5.0
RAMP_S = (15.0, 30.0)  # the intervals after the first and second attach while new code shows up
MIN_INTERVAL_S = 60.0
MAX_INTERVAL_S = 960.0
MAX_ATTACHES_PER_RUN = 4
MAX_QUEUED = 16
MAX_TRACKED = 1024
# a re-attach needs this many samples on unnamed JIT code in one run, and that share of the JVM's
# samples (a few stray addresses from a broken unwind are no reason to attach)
MIN_UNKNOWN_SAMPLES = 3
MIN_UNKNOWN_SHARE = 0.01
# reasons after which the same JVM is not tried again (what would change its answer is a restart)
GIVE_UP = frozenset((hotspot_attach.ATTACH_DISABLED, hotspot_attach.UNSUPPORTED, hotspot_attach.PERMISSION,
                     hotspot_attach.UNSAFE_PATH, hotspot_attach.TIMEOUT))
HOW_TO_FIX = {
    hotspot_attach.UNSUPPORTED: 'JDK < 17 has no Compiler.perfmap: load perf-map-agent into the JVM (or, where the '
                                'JDK has it, -XX:+UnlockDiagnosticVMOptions -XX:+DumpPerfMapAtExit: names at exit only)',
    hotspot_attach.ATTACH_DISABLED: 'remove -XX:+DisableAttachMechanism to have Java frames named',
    hotspot_attach.PERMISSION: 'run the profiler as root to attach to JVMs of other users',
}


def is_hotspot(mappings: Sequence[Any]) -> bool:
    """A HotSpot JVM maps its ``libjvm.so``; OpenJ9 also maps ``libj9vm*.so`` (another attach protocol)."""
    jvm = False
    for m in mappings:
        name = (m.path or '').rsplit('/', 1)[-1]
        if name.endswith(DELETED_SUFFIX):
            name = name[:-len(DELETED_SUFFIX)]
        if name == 'libjvm.so':
            jvm = True
        elif name.startswith('libj9vm'):
            return False
    return jvm


@functools.lru_cache(maxsize=1 << 16)
def frame_name(raw: str) -> str:
    """A method as people read it: HotSpot writes ``long Split.burnA(long)``; the return type goes,
    the parameters stay (they tell overloads apart). Stubs (``Interpreter``, ``StubRoutines (1)``,
    ``I2C/C2I adapters``) keep their names."""
    paren = raw.find('(')
    if paren <= 0 or not raw.endswith(')'):
        return raw
    ret, sep, qualified = raw[:paren].rpartition(' ')
    if not sep or not ret or not qualified or ' ' in ret or '.' not in qualified:
        return raw
    return qualified + raw[paren:]


@dataclass
class _Jvm:
    pid: int
    start_time: int
    container_id: str = ''
    root: str = ''
    attaches: int = 0
    failures: int = 0
    next_at: float = 0.0  # monotonic time before which no attach starts
    interval: float = 0.0
    queued: bool = False
    gave_up: bool = False
    map_size: int = -1
    map_path: str = ''  # what the last attach wrote (removed at exit when it is in our /tmp)
    map_ident: tuple = ()
    last_error: str = ''
    last_reason: str = ''
    seen_at: float = 0.0


class JvmPerfMaps:
    """Decides when each JVM writes its perf map, and has it written on a worker thread.

    ``observe(profile, processes)`` runs on the check thread after symbolization; ``on_written(pid,
    start_time)`` is called (worker thread) after each map written, to have the symbolizer read it
    again from the start (the JVM rewrites the whole file)."""

    def __init__(self, telemetry: Any, on_written: Optional[Callable[[int, int], None]] = None, mode: str = 'auto',
                 proc: str = '/proc', log: Optional[logging.Logger] = None, warmup_s: float = WARMUP_S,
                 clock: Callable[[], float] = time.monotonic,
                 attach: Callable[..., Any] = hotspot_attach.write_perf_map) -> None:
        if mode not in MODES:
            raise ValueError('receiver.jvm.perf_map must be one of {}, not {!r}'.format('|'.join(MODES), mode))
        self.enabled = mode == 'auto'
        self.telemetry = telemetry
        self.on_written = on_written
        self.proc = proc
        self.log = log or LOG
        self.warmup_s = float(warmup_s)
        self._clock = clock
        self._attach = attach
        self._jvms: Dict[Tuple[int, int], _Jvm] = {}
        self._detected: Dict[int, Tuple[Any, bool]] = {}  # id(mappings) -> (mappings, is_hotspot)
        self._lock = threading.Lock()
        self._queue: 'queue.Queue[Optional[_Jvm]]' = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._broken = ''  # the worker could not restore its credentials: no more attaches
        if self.enabled:
            telemetry.declare('jvm.attach.count')
            telemetry.declare('jvm.perf_map.bytes')
            for reason in hotspot_attach.REASONS:
                telemetry.declare('jvm.attach.errors', ('reason:' + reason,))
            telemetry.gauge('jvm.processes', 0)

    # ------------------------------------------------------------------------ check thread
    def is_jvm(self, process: Any) -> bool:
        mappings = process.mappings
        hit = self._detected.get(id(mappings))
        if hit is None or hit[0] is not mappings:
            if len(self._detected) >= MAX_TRACKED:
                self._detected.clear()
            hit = self._detected[id(mappings)] = (mappings, is_hotspot(mappings))
        return hit[1]

    def observe(self, profile: Any, processes: Any) -> None:
        """Schedule the attaches this run calls for. Never raises, never blocks."""
        if not self.enabled:
            return
        now = self._clock()
        started = 0
        seen = 0
        for resource in profile.resources:
            process = processes.get(resource.pid)
            if process is None or process.exited_at is not None or not self.is_jvm(process):
                continue
            seen += 1
            key = (process.pid, process.start_time)
            with self._lock:
                jvm = self._jvms.get(key)
                if jvm is None:
                    if len(self._jvms) >= MAX_TRACKED:
                        continue
                    jvm = self._jvms[key] = _Jvm(process.pid, process.start_time, process.container_id,
                                                 process.root)
                    if self._has_perf_map(process.pid):
                        # someone else's map (perf-map-agent, jcmd): not overwritten unless it
                        # leaves this JVM's samples unnamed
                        jvm.attaches, jvm.next_at = -1, now + RAMP_S[0]
                jvm.seen_at = now
                if jvm.queued or jvm.gave_up or self._broken or now < jvm.next_at or started >= MAX_ATTACHES_PER_RUN:
                    continue
                if jvm.attaches or jvm.failures:
                    unknown, total = unnamed_jit_samples(resource)
                    if unknown < MIN_UNKNOWN_SAMPLES or unknown < MIN_UNKNOWN_SHARE * total:
                        continue
                elif process.age_s() < self.warmup_s:
                    continue
                if self._queue.qsize() >= MAX_QUEUED:
                    continue
                jvm.queued = True
            started += 1
            self._queue.put(jvm)
            self._ensure_worker()
        self.telemetry.gauge('jvm.processes', seen)
        self._forget_exited(processes)

    def _forget_exited(self, processes: Any) -> None:
        with self._lock:
            gone = []
            for key, jvm in self._jvms.items():
                p = processes.get(jvm.pid)
                if jvm.queued:
                    continue
                if p is None or p.start_time != jvm.start_time or p.exited_at is not None:
                    gone.append(key)
            for key in gone:
                jvm = self._jvms.pop(key)
                self._remove_map(jvm)

    def _has_perf_map(self, pid: int) -> bool:
        root = '{}/{}/root'.format(self.proc, pid)
        return any(os.path.exists(p) for p in perf_map_candidates(pid, root, self.proc))

    def _remove_map(self, jvm: _Jvm) -> None:
        """The JVM exited: remove the map it wrote for us when it is in our own /tmp (a container's
        /tmp goes with the container), so that a process reusing its pid never reads it."""
        if not jvm.map_ident or jvm.root not in ('', '/'):
            return
        path = '/tmp/' + jvm.map_path.rsplit('/', 1)[-1]
        try:
            st = os.stat(path, follow_symlinks=False)
            if (st.st_dev, st.st_ino) == jvm.map_ident:  # the very file it wrote, not a namesake
                os.unlink(path)
                self.log.debug('removed %s: JVM %s exited', path, jvm.pid)
        except OSError:
            pass

    def diagnostics(self) -> List[Dict[str, Any]]:
        with self._lock:
            jvms = sorted(self._jvms.values(), key=lambda j: -j.seen_at)[:50]
            out = []
            for j in jvms:
                entry: Dict[str, Any] = {'pid': j.pid, 'perf_map_writes': max(0, j.attaches), 'failures': j.failures}
                if j.attaches < 0:
                    entry['perf_map'] = 'written by another tool'
                if j.container_id:
                    entry['container_id'] = j.container_id
                if j.last_error:
                    entry['last_error'] = j.last_error
                    fix = HOW_TO_FIX.get(j.last_reason)
                    if fix:
                        entry['how_to_fix'] = fix
                if j.gave_up:
                    entry['state'] = 'not attached again'
                out.append(entry)
            if self._broken:
                out.append({'error': self._broken})
            return out

    # ------------------------------------------------------------------------ worker thread
    def _ensure_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name='host_profiler-jvm-attach', daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            jvm = self._queue.get()
            if jvm is None:
                break
            try:
                self.attach_now(jvm)
            except CredentialsError as e:  # this thread is not root any more: it must stop
                self._broken = str(e)
                self.log.error('JVM perf maps: %s; no more JVM attaches until restart', e)
                break
            except Exception as e:  # noqa: BLE001 - a bug here must not stop later attaches
                self.log.warning('JVM perf map of process %s: %s', jvm.pid, e)
            finally:
                with self._lock:
                    jvm.queued = False

    def attach_now(self, jvm: _Jvm) -> bool:
        """One attach (blocking, bounded by its timeouts). Returns True when the map was written."""
        t = self.telemetry
        t.count('jvm.attach.count', 1)
        try:
            written = self._attach(jvm.pid, jvm.start_time, proc=self.proc)
        except AttachError as e:
            t.count('jvm.attach.errors', 1, ('reason:' + e.reason,))
            now = self._clock()
            with self._lock:
                jvm.failures += 1
                jvm.last_error, jvm.last_reason = str(e), e.reason
                jvm.gave_up = e.reason in GIVE_UP or e.reason == hotspot_attach.GONE
                jvm.interval = min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, jvm.interval * 2))
                jvm.next_at = now + jvm.interval
            if e.reason != hotspot_attach.GONE and jvm.failures == 1:
                fix = HOW_TO_FIX.get(e.reason)
                self.log.info('no Java method names for process %s: %s%s', jvm.pid, e, '; ' + fix if fix else '')
            return False
        t.count('jvm.perf_map.bytes', written.size)
        now = self._clock()
        with self._lock:
            changed = written.size != jvm.map_size
            n = max(0, jvm.attaches)
            jvm.attaches = n + 1
            jvm.map_size, jvm.map_path, jvm.map_ident = written.size, written.path, written.ident
            jvm.last_error = jvm.last_reason = ''
            if changed:
                jvm.interval = RAMP_S[n] if n < len(RAMP_S) else MIN_INTERVAL_S
            else:
                jvm.interval = min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, jvm.interval * 2))
            jvm.next_at = now + jvm.interval
        if self.on_written is not None:
            self.on_written(jvm.pid, jvm.start_time)
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no attach is queued or running (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not any(j.queued for j in self._jvms.values()):
                    return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        """Non-blocking: the worker finishes the attach it runs (bounded) and exits."""
        self._stop.set()
        self._queue.put(None)


def unnamed_jit_samples(resource: Any) -> Tuple[int, int]:
    """(samples whose leaf-most Java frame has no name, all samples) of one resource. Only that
    frame counts: the unwinder cannot follow compiled Java frames (no frame pointers), so what lies
    past them may be any address."""
    unknown = total = 0
    for sample in resource.samples:
        total += sample.value
        for frame in sample.frames:
            if frame.kind == FRAME_JVM:
                if not frame.function:
                    unknown += sample.value
                break
    return unknown, total
