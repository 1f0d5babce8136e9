# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Stage 3 of the sampler: the drains, one module per source of samples. Each reads and clears
the maps of the generation that just ended and appends ``RawSample``s:

- ``on_cpu``: the CPU samples counted in the kernel (stack maps, Python stacks, kernel-unwound
  user stacks, thread-context records);
- ``stack_copies``: dwarf/auto, the CPU samples whose user stack was copied, unwound by the
  injected ``ProcessWalkers``;
- ``off_cpu``: the off-CPU time of the threads switched out.
"""
from __future__ import annotations

import ctypes as ct
import errno
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from ...profile.model import RawSample

# Partial stacks: the sample is kept (and exported, ending in a [truncated] frame) but its user
# stack does not reach the outermost frame. Not a loss: counted apart (sampler.stacks.partial).
PARTIAL_DEPTH_LIMIT = 'depth_limit'  # the in-kernel frame-pointer walk stopped at MAX_STACK_DEPTH
PARTIAL_UNWIND = 'unwind_incomplete'  # the user-space unwinder stopped early (unwind.samples{result})
PARTIAL_REASONS = (PARTIAL_DEPTH_LIMIT, PARTIAL_UNWIND)


class CommFilter:
    """The user-space filters on the thread name (``comm_include`` / ``comm_exclude`` regexes)."""

    def __init__(self, include: Optional[str], exclude: Optional[str]) -> None:
        self._include = re.compile(include) if include else None
        self._exclude = re.compile(exclude) if exclude else None

    def keep(self, comm: str) -> bool:
        if self._include is not None and not self._include.search(comm):
            return False
        if self._exclude is not None and self._exclude.search(comm):
            return False
        return True


@dataclass
class DrainPass:
    """What the drains of one generation add up: the samples and their accounting."""

    old: int  # the generation drained
    lost: Dict[str, int]
    samples: List[RawSample] = field(default_factory=list)
    partial: Dict[str, int] = field(default_factory=lambda: {r: 0 for r in PARTIAL_REASONS})
    filtered: int = 0
    pairs: Set[tuple] = field(default_factory=set)  # distinct stacks
    map_fill: Dict[str, float] = field(default_factory=dict)


class BatchReader:
    """Reads and deletes every entry of a BPF hash map with BPF_MAP_LOOKUP_AND_DELETE_BATCH, ``chunk``
    entries per call, into key and value arrays allocated once.

    BCC's ``items_lookup_and_delete_batch`` allocates arrays for the whole map at every call (4,096
    thread-context records of 648 bytes: 2.7 MB per drain, most of the cost of reading the 30-odd
    records a drain holds). ``take()`` yields ``(keys, values, n)`` per chunk; the arrays are
    overwritten by the next chunk, so the caller copies what it keeps before asking for more."""

    def __init__(self, table, chunk: int = 256) -> None:
        from bcc.libbcc import lib

        self._lib = lib
        self.table = table
        self.n = max(1, min(int(chunk), int(table.max_entries)))
        self.keys = (table.Key * self.n)()
        self.values = (table.Leaf * self.n)()
        self._in = ct.c_uint32(0)
        self._out = ct.c_uint32(0)
        self._count = ct.c_uint32(0)

    def take(self) -> Iterator[Tuple[ct.Array, ct.Array, int]]:
        lib, fd = self._lib, self.table.map_fd
        keys, values, count = self.keys, self.values, self._count
        first = True
        while True:
            count.value = self.n
            res = lib.bpf_lookup_and_delete_batch(fd, None if first else ct.byref(self._in), ct.byref(self._out),
                                                  ct.byref(keys), ct.byref(values), ct.byref(count))
            err = ct.get_errno() if res != 0 else 0
            got = min(int(count.value), self.n) if res == 0 or err == errno.ENOENT else 0
            if got:
                yield keys, values, got
            if res == 0:
                self._in.value = self._out.value
                first = False
                continue
            if err == errno.ENOENT:  # the end of the map
                return
            raise OSError(err, 'BPF_MAP_LOOKUP_AND_DELETE_BATCH failed: {}'.format(os.strerror(err)))

    def items(self) -> Iterator[Tuple[Any, Any]]:
        """Every (key, value) of the map, deleted. A value may be a view into the reused buffers:
        copy what you keep before the next item. When the kernel refuses a batch, the rest of the
        map is read BCC's way (whole-map arrays)."""
        try:
            for keys, values, n in self.take():
                for i in range(n):
                    yield keys[i], values[i]
        except OSError:
            yield from self.table.items_lookup_and_delete_batch()
