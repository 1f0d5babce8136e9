# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Process metadata read from /proc: executable, executable mappings, container, env.

``ProcessRegistry`` is filled by the receiver thread (on exec events and when a pid first
appears in a drain) and read by the check thread through ``snapshot()``. Entries are keyed by
pid with the process start time kept to detect pid reuse; exited processes are kept for
``exit_ttl`` seconds so late samples still symbolize, then dropped. The registry is bounded.
"""
from __future__ import annotations

import bisect
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from ..host.proc import MAX_VDSO_BYTES, maps_dev  # noqa: F401  (re-exported)
from ..runtimes.otel_process_context import find_mapping as find_context_mapping

CLK_TCK = os.sysconf('SC_CLK_TCK')
PF_EXITING = 0x4  # task flag (/proc/PID/stat field 9): the task is in do_exit

__all__ = ['ProcMapping', 'ProcessInfo', 'ProcessRegistry', 'parse_container_id', 'read_process', 'parse_maps']


class ProcMapping(NamedTuple):
    start: int
    end: int
    offset: int
    path: str  # file path as seen by the process (open it under ProcessInfo.root), or '[vdso]'
    dev: str = ''  # 'major:minor' (hex, as in /proc/PID/maps)
    inode: int = 0
    perms: str = ''


@dataclass
class ProcessInfo:
    pid: int
    start_time: int  # /proc/PID/stat field 22 (clock ticks after boot)
    comm: str = ''
    exe: str = ''
    mappings: List[ProcMapping] = field(default_factory=list)  # executable mappings only
    container_id: str = ''
    pod_uid: str = ''
    env: Dict[str, str] = field(default_factory=dict)
    root: str = ''  # '/' when the process shares our root, else '/proc/PID/root'
    exited_at: Optional[float] = None  # time.monotonic() of the exit event
    read_at: float = 0.0  # time.monotonic() when /proc/PID/maps was last read
    drained: bool = False  # samples of this process were seen in a drain already
    # OTel process context (runtimes/otel_process_context.py): where its mapping starts (0: none
    # seen in the last maps read), the decoded context, and when to look for one again
    otel_context_address: int = 0
    otel_context: Optional[Any] = None
    otel_context_scan_at: float = 0.0

    @property
    def key(self) -> Tuple[int, int]:
        return (self.pid, self.start_time)

    def age_s(self) -> float:
        """Seconds since the process started (CLOCK_BOOTTIME is the clock of start_time)."""
        return time.clock_gettime(time.CLOCK_BOOTTIME) - self.start_time / CLK_TCK

    def find_mapping(self, address: int) -> Optional[ProcMapping]:
        maps = self.mappings
        i = bisect.bisect_right([m.start for m in maps], address) - 1
        if i >= 0 and address < maps[i].end:
            return maps[i]
        for m in maps:  # not sorted (should not happen): linear scan
            if m.start <= address < m.end:
                return m
        return None


# ---------------------------------------------------------------------------- parsing (pure)

_HEX64 = r'[0-9a-f]{64}'
# Innermost path component naming a container, by runtime:
#   docker:      /docker/<id>, docker-<id>.scope
#   containerd:  cri-containerd-<id>.scope, /kubepods/.../<id>, containerd-<id>.scope
#   cri-o:       crio-<id>.scope, crio-<id> (v1)
#   podman:      libpod-<id>.scope (its conmon is libpod-conmon-<id>.scope: not the container)
#   ECS/Fargate: /ecs/<task>/<32 hex>-<digits>
_CONTAINER_RE = re.compile(
    r'^(?:(?:docker|cri-containerd|containerd|crio|libpod)-)?(' + _HEX64 + r')(?:\.scope)?$'
    r'|^([0-9a-f]{32}-\d{6,})$'
)
_POD_RE = re.compile(
    r'pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?$'
)


def parse_container_id(cgroup_text: str) -> Tuple[str, str]:
    """(container_id, pod_uid) from the text of /proc/PID/cgroup (v1 or v2); '' when absent."""
    container_id = ''
    pod_uid = ''
    for line in cgroup_text.splitlines():
        parts = line.strip().split(':', 2)
        if len(parts) != 3:
            continue
        path = parts[2]
        comps = [c for c in re.split(r'[/:]', path) if c]  # ':' in containerd's systemd paths
        cid = ''
        for comp in reversed(comps):
            if comp.startswith('libpod-conmon-'):
                break
            m = _CONTAINER_RE.match(comp)
            if m:
                cid = m.group(1) or m.group(2)
                break
        pod = ''
        for comp in comps:
            m = _POD_RE.search(comp)
            if m:
                pod = m.group(1).replace('_', '-')
        if cid and not container_id:
            container_id = cid
        if pod and not pod_uid:
            pod_uid = pod
        if container_id and pod_uid:
            break
    return container_id, pod_uid


def _stat_fields(text: str) -> Tuple[str, List[str]]:
    """(comm, the fields after it) of /proc/PID/stat: the list starts with field 3 (state)."""
    lp = text.index('(')
    rp = text.rindex(')')
    return text[lp + 1 : rp], text[rp + 2 :].split()


def parse_stat(text: str) -> Tuple[str, int]:
    """(comm, start_time) from /proc/PID/stat (comm may contain spaces and parentheses)."""
    comm, rest = _stat_fields(text)
    return comm, int(rest[19])  # field 22


def parse_maps(text: str, executable_only: bool = True) -> List[ProcMapping]:
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        perms = parts[1]
        if executable_only and 'x' not in perms:
            continue
        a, _, b = parts[0].partition('-')
        path = parts[5].strip() if len(parts) > 5 else ''
        try:
            out.append(ProcMapping(int(a, 16), int(b, 16), int(parts[2], 16), path, parts[3], int(parts[4]), perms))
        except ValueError:
            continue
    return out


# The executable lines of /proc/PID/maps ('start-end perms offset dev inode [path]').
_EXEC_LINE_RE = re.compile(r'^[0-9a-f]+-[0-9a-f]+ \S{2}x\S* .*$', re.M)


class MapsCache:
    """Parsed executable mappings shared by processes whose executable mappings are identical.

    Children forked from one parent (pre-fork servers, worker pools, shells) have the same
    layout: they get the same ``mappings`` list object, parsed once, which also lets the
    unwinder and the symbolizer share their per-layout work. The key is the text of the
    executable lines only (the heap and stacks differ between such processes). The lists are
    never mutated (``refresh_mappings`` assigns a new list). A ``fresh`` parse (a process just
    exec'd) is never served from the cache but replaces what it holds for that text, so that a
    layout seen again after a binary was replaced in place (same inode, ASLR off) is the new one.
    """

    def __init__(self, max_entries: int = 512) -> None:
        self.max_entries = max(1, int(max_entries))
        self._lists: Dict[str, List[ProcMapping]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._lists)

    def parse(self, text: str, fresh: bool = False) -> List[ProcMapping]:
        key = '\n'.join(_EXEC_LINE_RE.findall(text))
        cache = self._lists
        if not fresh:
            hit = cache.get(key)
            if hit is not None:
                self.hits += 1
                return hit
        self.misses += 1
        out = parse_maps(key)
        if key not in cache and len(cache) >= self.max_entries:
            # dicts keep insertion order: drop the oldest quarter
            for k in list(cache)[: max(1, self.max_entries // 4)]:
                del cache[k]
        cache.pop(key, None)
        cache[key] = out
        return out


def parse_environ(data: bytes, names: Iterable[str]) -> Dict[str, str]:
    wanted = set(names)
    out: Dict[str, str] = {}
    if not wanted:
        return out
    for item in data.split(b'\0'):
        k, sep, v = item.partition(b'=')
        if not sep:
            continue
        ks = k.decode('utf-8', 'replace')
        if ks in wanted:
            out[ks] = v.decode('utf-8', 'replace')
    return out


# ---------------------------------------------------------------------------- /proc I/O


_READ_CHUNK = 65536


def _read_bytes(path: str, single: bool = False) -> bytes:
    """The whole content of a /proc file with os.open/os.read: a third of the syscalls of
    ``open()`` (no fstat, isatty, lseek), which matters because the check thread and this
    one trade the GIL at every syscall. ``single``: a single_open() seq file (stat, cgroup),
    which returns everything in one read when the buffer is large enough."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, _READ_CHUNK)
        if single and len(data) < _READ_CHUNK:
            return data
        chunks = [data]
        while data:
            data = os.read(fd, _READ_CHUNK)
            chunks.append(data)
        return b''.join(chunks)
    finally:
        os.close(fd)


def _read_text(path: str, single: bool = False) -> str:
    # 'replace': a non-UTF-8 path or comm must not fail the read (nor, later, the encoders);
    # files are opened through /proc/PID/map_files first, which does not need the path
    return _read_bytes(path, single).decode('utf-8', 'replace')


def read_start_time(pid: int, proc: str = '/proc') -> Optional[int]:
    try:
        return parse_stat(_read_text('{}/{}/stat'.format(proc, pid), True))[1]
    except (OSError, ValueError, IndexError):
        return None


_OUR_ROOT: List = [None, 0.0]  # [(st_dev, st_ino) of '/', when it was read]
_OUR_ROOT_TTL_S = 10.0


def _our_root() -> Optional[Tuple[int, int]]:
    now = time.monotonic()
    if _OUR_ROOT[0] is None or now - _OUR_ROOT[1] > _OUR_ROOT_TTL_S:
        try:
            st = os.stat('/')
            _OUR_ROOT[0], _OUR_ROOT[1] = (st.st_dev, st.st_ino), now
        except OSError:
            return None
    return _OUR_ROOT[0]


def _root_of(base: str) -> str:
    """'/' when the process shares our root (so its files stay reachable by path after it
    exits, for short-lived processes), else '/proc/PID/root' (containers)."""
    try:
        theirs = os.stat(base + '/root')
        if (theirs.st_dev, theirs.st_ino) == _our_root():
            return '/'
    except OSError:
        pass
    return base + '/root'


_CGROUP_CACHE: Dict[str, Tuple[str, str]] = {}


def _container_of(cgroup_text: str) -> Tuple[str, str]:
    """parse_container_id, memoized: most processes of a host share a handful of cgroups."""
    hit = _CGROUP_CACHE.get(cgroup_text)
    if hit is None:
        hit = parse_container_id(cgroup_text)
        if len(_CGROUP_CACHE) >= 4096:
            _CGROUP_CACHE.clear()
        _CGROUP_CACHE[cgroup_text] = hit
    return hit


def read_process(pid: int, include_env_vars: Sequence[str] = (), proc: str = '/proc',
                 maps_cache: Optional[MapsCache] = None, fresh: bool = True) -> Optional[ProcessInfo]:
    """Read one process's metadata; None when it is gone (or was never there).
    ``maps_cache``: share the mappings list with processes of the same layout (see
    ``MapsCache``; ``fresh`` for a process that just exec'd)."""
    base = '{}/{}'.format(proc, pid)
    try:
        comm, fields = _stat_fields(_read_text(base + '/stat', True))
        # fields 3 (state), 9 (flags) and 22 (start time)
        state, exiting, start = fields[0], int(fields[6]) & PF_EXITING, int(fields[19])
    except (OSError, ValueError, IndexError):
        return None
    context_address = 0
    try:
        text = _read_text(base + '/maps')
        mappings = maps_cache.parse(text, fresh) if maps_cache is not None else parse_maps(text)
        context_address = find_context_mapping(text)
    except OSError:
        mappings = []
    try:
        exe = os.readlink(base + '/exe')
    except OSError:
        exe = ''
    try:
        cid, pod = _container_of(_read_text(base + '/cgroup', True))
    except OSError:
        cid, pod = '', ''
    env: Dict[str, str] = {}
    if include_env_vars:
        try:
            env = parse_environ(_read_bytes(base + '/environ'), include_env_vars)
        except OSError:
            pass  # unreadable: skipped silently
    # A zombie, a process past its exit tracepoint (sampled in the rest of its exit: PF_EXITING)
    # or one that exited while we read has empty maps and no exe: it is gone. (Kernel threads
    # have neither either, but are none of these.)
    if not mappings and not exe and (state in ('Z', 'X') or exiting or start_changed(pid, start, proc)):
        return None
    return ProcessInfo(
        pid=pid,
        start_time=start,
        comm=comm,
        exe=exe,
        mappings=mappings,
        container_id=cid,
        pod_uid=pod,
        env=env,
        root=_root_of(base),
        read_at=time.monotonic(),
        otel_context_address=context_address,
    )


def start_changed(pid: int, start: int, proc: str = '/proc') -> bool:
    return read_start_time(pid, proc) != start


# ---------------------------------------------------------------------------- registry


class ProcessRegistry:
    def __init__(
        self,
        include_env_vars: Sequence[str] = (),
        exit_ttl: float = 60.0,
        max_entries: int = 16384,
        proc: str = '/proc',
        clock: Callable[[], float] = time.monotonic,
    ):
        self.include_env_vars = tuple(include_env_vars)
        self.exit_ttl = float(exit_ttl)
        self.max_entries = max(1, int(max_entries))
        self.proc = proc
        self._clock = clock
        self._lock = threading.Lock()
        self._by_pid: Dict[int, ProcessInfo] = {}
        self._gone: Dict[int, float] = {}  # pids found gone (counted once), bounded
        self._execed: set = set()  # pids that exec'd since they were last read (bounded)
        self.maps_cache = MapsCache()  # mappings lists shared by processes of one layout
        self.evicted = 0
        self.gone_before_metadata = 0  # lifetime total
        self.reads = 0  # processes read from /proc (lifetime total)

    # -- reads (any thread)
    def get(self, pid: int) -> Optional[ProcessInfo]:
        return self._by_pid.get(pid)

    def __contains__(self, pid: int) -> bool:
        return pid in self._by_pid

    def __len__(self) -> int:
        return len(self._by_pid)

    def __iter__(self) -> Iterator[ProcessInfo]:
        return iter(list(self._by_pid.values()))

    def pids(self) -> List[int]:
        return list(self._by_pid)

    def snapshot(self) -> 'ProcessRegistry':
        """A frozen copy (same ProcessInfo objects) for the check thread."""
        snap = ProcessRegistry(self.include_env_vars, self.exit_ttl, self.max_entries, self.proc, self._clock)
        with self._lock:
            snap._by_pid = dict(self._by_pid)
        return snap

    # -- writes (receiver thread)
    def _insert(self, info: ProcessInfo) -> None:
        with self._lock:
            if info.pid not in self._by_pid and len(self._by_pid) >= self.max_entries:
                self._evict_locked(max(1, self.max_entries // 10))
            self._by_pid[info.pid] = info
            self._gone.pop(info.pid, None)

    def _evict_locked(self, n: int) -> None:
        exited = sorted((p for p in self._by_pid.values() if p.exited_at is not None), key=lambda p: p.exited_at)
        victims = [p.pid for p in exited[:n]]
        if len(victims) < n:
            live = sorted((p for p in self._by_pid.values() if p.exited_at is None), key=lambda p: p.read_at)
            victims += [p.pid for p in live[: n - len(victims)]]
        for pid in victims:
            del self._by_pid[pid]
        self.evicted += len(victims)

    def _mark_gone(self, pid: int) -> bool:
        """Count a pid gone before its metadata was read, once. Returns True if newly counted."""
        if pid in self._gone:
            return False
        if len(self._gone) >= self.max_entries:
            self._gone.clear()
        self._gone[pid] = self._clock()
        self.gone_before_metadata += 1
        return True

    def refresh(self, pid: int, fresh: bool = False) -> Tuple[Optional[ProcessInfo], bool]:
        """Read (or re-read) a pid now, replacing what was known (exec, pid reuse).
        Returns (info, gone) where gone means the process vanished before it could be read
        and this is the first time it is counted. ``fresh``: the process just exec'd (its
        mappings are parsed, not taken from ``maps_cache``)."""
        self.reads += 1
        info = read_process(pid, self.include_env_vars, self.proc, self.maps_cache, fresh)
        if info is None:
            return self.get(pid), self._mark_gone(pid)
        self._insert(info)
        return info, False

    def refresh_mappings(self, pid: int, fresh: bool = False) -> bool:
        """Re-read /proc/PID/maps of a known process (libraries mapped after exec, dlopen).
        Keeps what was known when the process is gone or the pid was reused. Returns True
        when the maps were read (an unchanged layout keeps its list object, so the
        per-process state of the unwinder and the symbolizer stays valid)."""
        info = self._by_pid.get(pid)
        if info is None:
            return False
        try:
            text = _read_text('{}/{}/maps'.format(self.proc, pid))
        except OSError:
            return False
        mappings = self.maps_cache.parse(text, fresh)
        if not mappings or read_start_time(pid, self.proc) != info.start_time:
            return False
        if mappings != info.mappings:
            info.mappings = mappings  # one attribute assignment: readers see the old or the new list
        info.otel_context_address = find_context_mapping(text)
        info.read_at = self._clock()
        return True

    def on_exec(self, pid: int) -> None:
        """The pid runs a new image: what was read is stale. Nothing is read now (most processes
        are never sampled): the next ``ensure`` reads the new image, fresh."""
        with self._lock:
            self._by_pid.pop(pid, None)
            self._gone.pop(pid, None)
            if len(self._execed) >= self.max_entries:
                self._execed.clear()
            self._execed.add(pid)

    def ensure(self, pid: int, check_start: bool = False) -> Tuple[Optional[ProcessInfo], bool]:
        """Make sure a pid seen in samples has metadata. Reads /proc only when the pid is
        unknown (or exec'd since), or when it was marked exited (or ``check_start``) and a new
        process may have reused the pid."""
        if pid in self._execed:
            self._execed.discard(pid)
            return self.refresh(pid, fresh=True)
        info = self._by_pid.get(pid)
        if info is not None:
            if info.exited_at is not None or check_start:
                start = read_start_time(pid, self.proc)
                if start is not None and start != info.start_time:
                    return self.refresh(pid)
            return info, False
        if pid in self._gone:
            return None, False
        return self.refresh(pid)

    def on_exit(self, pid: int) -> None:
        info = self._by_pid.get(pid)
        if info is not None and info.exited_at is None:
            info.exited_at = self._clock()

    def expire(self) -> int:
        """Drop exited processes older than exit_ttl. Returns how many were dropped."""
        now = self._clock()
        with self._lock:
            dead = [p for p, i in self._by_pid.items() if i.exited_at is not None and now - i.exited_at >= self.exit_ttl]
            for p in dead:
                del self._by_pid[p]
            if dead:
                # rebuild so the dict's memory returns to its baseline after churn
                self._by_pid = dict(self._by_pid)
            old = [p for p, t in self._gone.items() if now - t >= self.exit_ttl]
            for p in old:
                del self._gone[p]
            if old:
                self._gone = dict(self._gone)
        return len(dead)
