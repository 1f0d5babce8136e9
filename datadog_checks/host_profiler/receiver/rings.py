# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Stage 2 of the sampler: ring reading. The BPF ring buffers (process events, stack copies) read
from their mapped pages (``ringbuf.RingReader``), woken through one epoll with an eventfd that
ends a poll early; and the decoding of the process events."""
from __future__ import annotations

import os
import select
import struct
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from .ringbuf import RingReader

EV_EXEC = 1
EV_EXIT = 2
EV_SAMPLED = 3
EVENT_KINDS = {EV_EXEC: 'exec', EV_EXIT: 'exit', EV_SAMPLED: 'sampled'}
EVENT = struct.Struct('<IIIIQ16s')  # struct event_t: type, tgid, pid, pad, ts, comm
EVENT_RECORD_BYTES = EVENT.size + 8  # and the ring's record header


@dataclass(frozen=True)
class ProcessEvent:
    kind: str  # 'exec' | 'exit' | 'sampled' (the first sample of the process since exec or start-up)
    pid: int  # tgid
    tid: int
    comm: str
    ts_ns: int  # CLOCK_MONOTONIC


def decode_comm(raw) -> str:
    b = bytes(raw)
    return b.split(b'\0', 1)[0].decode('utf-8', 'replace')


def decode_event(buf, off: int, size: int) -> Optional[ProcessEvent]:
    """One record of the events ring, or None (too short, or of an unknown kind)."""
    if size < EVENT.size:
        return None
    etype, tgid, pid, _pad, ts, comm = EVENT.unpack_from(buf, off)
    kind = EVENT_KINDS.get(etype)
    if kind is None:
        return None
    return ProcessEvent(kind, tgid, pid, decode_comm(comm), ts)


class Rings:
    """The ring buffers of the loaded program, each with its record handler, and their epoll."""

    def __init__(self) -> None:
        self._rings: List[Tuple[str, RingReader, Callable[..., None]]] = []  # (map name, reader, handler)
        self._epoll = select.epoll()
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)  # wake() ends a poll early
        self._epoll.register(self.wake_fd, select.EPOLLIN)

    def open(self, name: str, map_fd: int, pages: int, handle: Callable[..., None]) -> None:
        reader = RingReader(map_fd, pages * 4096)
        self._rings.append((name, reader, handle))
        self._epoll.register(reader.fd, select.EPOLLIN)

    def split(self, name: str) -> Optional['Rings']:
        """Move ring ``name`` out of this epoll into a new ``Rings`` of its own (its own epoll and
        wake-up fd), for a thread that reads only that ring; None when there is no such ring.
        A ring has one reader: after the split, ``read()`` here no longer sees it."""
        for i, (ring, reader, handle) in enumerate(self._rings):
            if ring == name:
                other = Rings()
                self._epoll.unregister(reader.fd)
                del self._rings[i]
                other._rings.append((ring, reader, handle))
                other._epoll.register(reader.fd, select.EPOLLIN)
                return other
        return None

    def wake(self) -> None:
        """End the current poll (from any thread)."""
        fd = self.wake_fd
        if fd < 0:
            return  # closed
        try:
            os.eventfd_write(fd, 1)
        except OSError:
            pass  # closed meanwhile

    def wait(self, timeout_ms: int) -> None:
        """Wait until a ring wakes us up, ``wake()`` is called, or ``timeout_ms`` passed."""
        for fd, _ in self._epoll.poll(timeout_ms / 1000.0):
            if fd == self.wake_fd:
                try:
                    os.eventfd_read(self.wake_fd)
                except OSError:
                    pass

    def read(self, name: Optional[str] = None) -> None:
        """Hand every pending record of every ring (or of ring ``name`` only) to its handler."""
        for ring, reader, handle in self._rings:
            if name is None or ring == name:
                reader.read(handle)

    def close(self) -> None:
        rings, self._rings = self._rings, []
        for _, reader, _ in rings:
            reader.close()
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        if self.wake_fd >= 0:
            fd, self.wake_fd = self.wake_fd, -1
            os.close(fd)
