# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""JIT symbols from ``/tmp/perf-PID.map`` (Node ``--perf-basic-prof``, the JVM perf-map agent,
Python 3.12 ``-X perf``, ...). One line per code region: ``START SIZE name`` (hex numbers,
``0x`` optional). Files are append-only: ``refresh()`` parses only the new tail, keeping the
byte offset of the last complete line; a file that shrank or was replaced is read again.
When regions overlap, the later line wins (code re-compiled at the same place).

The file is read through ``host.files.FileOpener`` inside the process's root, only when the
process's user or root owns it (as perf does), and only up to ``MAX_PERF_MAP_BYTES``.
"""
from __future__ import annotations

import os
from array import array
from bisect import bisect_right
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

from ..host.files import MAX_PERF_MAP_BYTES, FileOpener, FileRefused, join_root, opener_for

MAX_LINE = 8192
MAX_NAME = 2048
READ_CHUNK = 4 << 20


def nspid_of(pid: int, proc: str = '/proc') -> int:
    """The pid of ``pid`` in its innermost pid namespace (``NSpid`` of /proc/PID/status)."""
    try:
        with open('{}/{}/status'.format(proc, pid), 'rb') as f:
            for line in f:
                if line.startswith(b'NSpid:'):
                    parts = line.split()
                    return int(parts[-1])
    except (OSError, ValueError, IndexError):
        pass
    return pid


def perf_map_paths(pid: int, proc: str = '/proc') -> List[str]:
    """Paths to try, as the process sees them: the namespaced pid first, then the host pid."""
    ns = nspid_of(pid, proc)
    out = ['/tmp/perf-{}.map'.format(ns)]
    if ns != pid:
        out.append('/tmp/perf-{}.map'.format(pid))
    return out


def perf_map_candidates(pid: int, root: str, proc: str = '/proc') -> List[str]:
    """``perf_map_paths`` prefixed with the process's root (for messages and ``os.stat``)."""
    return [join_root(root, p) for p in perf_map_paths(pid, proc)]


def parse_line(line: bytes) -> Optional[Tuple[int, int, str]]:
    """(start, size, name) or None for a garbage line."""
    if len(line) > MAX_LINE:
        return None
    parts = line.strip().split(None, 2)
    if len(parts) != 3:
        return None
    try:
        start = int(parts[0], 16)
        size = int(parts[1], 16)
    except ValueError:
        return None
    if start < 0 or size <= 0 or start + size > 0xFFFFFFFFFFFFFFFF:
        return None
    name = parts[2][:MAX_NAME].decode('utf-8', 'replace')
    if not name:
        return None
    return start, size, name


class PerfMap:
    """Symbols of one process's perf map file, refreshed incrementally.

    ``path`` is the file as seen from this host (``root`` + ``path_in_root``): a ``stat`` of it
    only tells whether anything changed; the file is read through the opener, as ``path_in_root``
    inside ``root``, when ``owners`` (uids) own it (``None``: no owner rule, for tests and tools)."""

    def __init__(self, path: str, telemetry: Any = None, root: str = '/', path_in_root: Optional[str] = None,
                 owners: Optional[FrozenSet[int]] = None, pid: int = 0, opener: Optional[FileOpener] = None) -> None:
        self.path = path
        self.telemetry = telemetry
        self.root = root or '/'
        self.path_in_root = path if path_in_root is None else path_in_root
        self.owners = owners
        self.pid = pid
        self.opener = opener or opener_for(telemetry)
        self.offset = 0
        self.ident: Optional[Tuple[int, int]] = None
        self.refused = ''  # the reason the current file was refused ('' when read)
        self._seen: Any = None  # stat of the last attempt (change detector)
        self.entries: Dict[int, Tuple[int, str]] = {}  # start -> (size, name)
        self.bad_lines = 0
        self._bytes = 0
        self._starts: Optional[array] = None
        self._ends: Optional[array] = None
        self._names: List[str] = []

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def nbytes(self) -> int:
        return 300 + self._bytes + len(self.entries) * 120

    def refresh(self) -> bool:
        """Parse what was appended since the last call. Returns True if anything changed.
        Never raises."""
        try:
            # one stat per call (this runs for every stack with JIT frames); it may follow a
            # link out of the root, but it only decides whether to open (through the opener)
            seen = os.stat(self.path)
        except OSError:
            return False
        seen_key = (seen.st_dev, seen.st_ino, seen.st_size, seen.st_mtime_ns)
        if seen_key == self._seen:
            return False
        try:
            f, st = self.opener.open_in_root(self.root, self.path_in_root, kind='perfmap', pid=self.pid,
                                             max_bytes=MAX_PERF_MAP_BYTES, owners=self.owners)
        except FileRefused as e:
            self._seen, self.refused = seen_key, e.reason  # retried once the file changes
            self._reset(None)
            return False
        except OSError:
            return False
        self._seen, self.refused = seen_key, ''
        with f:
            ident = (st.st_dev, st.st_ino)
            if ident != self.ident or st.st_size < self.offset:
                self._reset(ident)
            if st.st_size == self.offset:
                return False
            try:
                f.seek(self.offset)
                data = f.read(st.st_size - self.offset)
            except OSError:
                return False
        self.feed(data)
        return True

    def _reset(self, ident: Optional[Tuple[int, int]]) -> None:
        self.ident = ident
        self.offset = 0
        self.entries = {}
        self._bytes = 0
        self._starts = None

    def feed(self, data: bytes) -> None:
        """Parse complete lines of ``data`` (the bytes after ``self.offset``)."""
        last_nl = data.rfind(b'\n')
        if last_nl < 0:
            if len(data) > MAX_LINE:  # an endless garbage line: skip it
                self.offset += len(data)
                self._bad(1)
            return
        bad = 0
        entries = self.entries
        for line in data[:last_nl].split(b'\n'):
            if not line.strip():
                continue
            row = parse_line(line)
            if row is None:
                bad += 1
                continue
            start, size, name = row
            old = entries.get(start)
            if old is not None:
                self._bytes -= len(old[1])
            entries[start] = (size, name)
            self._bytes += len(name)
        self.offset += last_nl + 1
        self._starts = None
        if bad:
            self._bad(bad)

    def _bad(self, n: int) -> None:
        self.bad_lines += n
        if self.telemetry is not None:
            self.telemetry.count('symbols.bad_input', n, ('kind:perfmap',))

    def _index(self) -> None:
        starts = array('Q')
        ends = array('Q')
        names: List[str] = []
        for start in sorted(self.entries):
            size, name = self.entries[start]
            # A later region that overlaps an earlier one cuts it short.
            if ends and ends[-1] > start:
                ends[-1] = start
            starts.append(start)
            ends.append(start + size)
            names.append(name)
        self._starts, self._ends, self._names = starts, ends, names

    def lookup(self, addr: int) -> Optional[str]:
        if self._starts is None:
            self._index()
        i = bisect_right(self._starts, addr) - 1
        if i < 0 or addr >= self._ends[i]:
            return None
        return self._names[i]
