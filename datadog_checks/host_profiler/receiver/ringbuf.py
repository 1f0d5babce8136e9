# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Reads BPF ring buffers (``BPF_MAP_TYPE_RINGBUF``) from their mmap'd pages.

Why not BCC's reader: it goes through libbpf's ``ring_buffer`` and calls back into Python
through ctypes for every record, two Python frames deep. With stack copies at 99 Hz on every
CPU that was about 8 us per record, the largest part of the sampler thread's CPU. Here a
read is one Python loop over the mapped pages; each record is handed to ``handle(buffer,
offset, size)`` and copied out only by the handler, only what it keeps.

The layout is the kernel's ABI (kernel/bpf/ringbuf.c), mapped as libbpf maps it: page 0 holds
the consumer position (read-write); page 1 the producer position, followed by the data pages
mapped twice in a row, so that a record that wraps around is contiguous. A record is a u32
length (bit 31: not committed yet; bit 30: discarded), a u32 page offset, then its data,
padded to 8 bytes. Positions and lengths are read and written with native aligned loads and
stores (``struct`` native formats copy with one ``memcpy`` of the whole word, never byte by
byte, which could tear a position being updated); x86-64's ordering of loads and stores is what
the kernel's acquire/release pairs ask of a consumer.
"""
from __future__ import annotations

import mmap
import struct
from typing import Callable

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HEADER_BYTES = 8
_POS = struct.Struct('@Q')  # native: one aligned 8-byte access
_LEN = struct.Struct('@I')

# handle(buffer, offset of the record's data, size of the data)
Handler = Callable[[mmap.mmap, int, int], None]


class RingReader:
    def __init__(self, map_fd: int, size_bytes: int) -> None:
        """``map_fd``: the ring buffer map; ``size_bytes``: its size (a power-of-2 number of pages)."""
        page = mmap.PAGESIZE
        if size_bytes <= 0 or size_bytes & (size_bytes - 1) or size_bytes % page:
            raise ValueError('ring buffer size must be a power-of-2 number of pages: {}'.format(size_bytes))
        self.fd = map_fd
        self.size = size_bytes
        self._mask = size_bytes - 1
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        try:
            self._data = mmap.mmap(map_fd, page + 2 * size_bytes, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        except BaseException:
            self._consumer.close()
            raise
        self._base = page  # the data pages start after the producer page
        self.handler_errors = 0

    def pending_bytes(self) -> int:
        return _POS.unpack_from(self._data, 0)[0] - _POS.unpack_from(self._consumer, 0)[0]

    def read(self, handle: Handler) -> int:
        """Hand every committed record to ``handle``, oldest first, then release their space.
        Returns how many records were read. A record not committed yet ends the read (the
        next one resumes there)."""
        data, base, mask = self._data, self._base, self._mask
        cons = _POS.unpack_from(self._consumer, 0)[0]
        n = 0
        try:
            while True:
                prod = _POS.unpack_from(data, 0)[0]
                if cons >= prod:
                    break
                while cons < prod:
                    off = base + (cons & mask)
                    length = _LEN.unpack_from(data, off)[0]
                    if length & BUSY_BIT:
                        return n
                    size = length & ~(BUSY_BIT | DISCARD_BIT)
                    cons += (size + HEADER_BYTES + 7) & ~7
                    if not length & DISCARD_BIT:
                        n += 1
                        try:
                            handle(data, off + HEADER_BYTES, size)
                        except Exception:  # noqa: BLE001 - a bad record must not stall the ring
                            self.handler_errors += 1
        finally:
            # released once per read: the producer only needs the space back before it fills
            _POS.pack_into(self._consumer, 0, cons)
        return n

    def close(self) -> None:
        for m in (self._data, self._consumer):
            try:
                m.close()
            except (BufferError, ValueError):
                pass
