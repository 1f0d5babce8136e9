# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The on-CPU drain: the CPU samples the BPF program counted per (tgid, tid, comm, user stack,
kernel stack, Python stack, kernel-unwound stack, thread-context record) in the generation that
ended, with the side tables their keys point to:

- the stack maps (``stacks0/1``: ``bpf_get_stackid``; ids resolved once per drain, then cleared);
- the Python stacks (``pystacks0/1``, bpf/python.h) and the thread-context records
  (``tc_records0/1``, bpf/thread_ctx.h): content-addressed, kept a few generations in a cache so
  that a stack copy that waits across drains still finds them;
- the user stacks the kernel unwound (``ku_stacks0/1``, bpf/kernel_unwind.h).
"""
from __future__ import annotations

import ctypes as ct
import struct
from typing import Any, Callable, Dict, List, Optional, Tuple

from ...profile.model import CPU_SAMPLES, RawSample
from ..program import EFAULT, MAX_STACK_DEPTH, clear_stacks, read_stack, thread_records_size
from . import PARTIAL_DEPTH_LIMIT, PARTIAL_UNWIND, BatchReader, CommFilter, DrainPass

TC_RECORD_MAX = 640
NO_LINK: Tuple[Any, tuple] = (None, ())
_u32 = struct.Struct('=I').unpack_from
_PY_HEAD = struct.Struct('=II').unpack_from  # struct py_stack_t: n, truncated (bpf/sampler.c)
_PY_FRAME = struct.Struct('=QII')  # struct py_frame_t: code, instr, flags

# (tgid, copied record) -> (SpanLink | None, context attributes): the receiver's decoder of thread
# contexts (runtimes/otel_thread_context.RecordLinks), which caches what it decoded across drains
LinkRecord = Callable[[int, bytes], Tuple[Any, tuple]]


class OnCpuDrain:
    def __init__(self, config, comm_filter: CommFilter, kernel_unwind=None) -> None:
        self.config = config
        self.comm_filter = comm_filter
        self.kernel_unwind = kernel_unwind
        self.counts: tuple = ()
        self.stacks: tuple = ()
        self.pystacks: tuple = ()
        self._py_readers: tuple = ()
        self._count_readers: tuple = ()
        self.tc_records: tuple = ()
        self.ku_maps: tuple = ()
        self._ku_readers: tuple = ()  # BatchReader of ku_stacks0/1
        self._py_cache: Dict[int, Tuple[tuple, int]] = {}  # Python stack id -> (stack, last generation)
        self._tc_cache: Dict[int, Tuple[bytes, int]] = {}  # thread-context record id -> (record, generation)
        self._tc_readers: tuple = ()  # BatchReader of tc_records0/1
        self.tc_records_size = 0  # entries of each (program.thread_records_size)
        self.tc_fill: Optional[float] = None  # records read at the last drain / tc_records_size
        # set by the receiver: decodes a record into what RawSample carries (link, context_attributes);
        # None: RawSample.link carries the record's bytes
        self.link_record: Optional[LinkRecord] = None
        self._links: Dict[int, Tuple[Any, tuple]] = {}  # record id -> (link, attributes), in this pass
        # records of this pass left as bytes in RawSample.link (no decoder, or it failed): the receiver
        # decodes them; 0: every link is a SpanLink or None already
        self.undecoded = 0
        self.ku_stacks: Dict[int, Tuple[Tuple[int, ...], bool]] = {}
        # kernel_unwind_verify: (tgid, kernel stack, partial, user-space stack, truncated, count)
        self.verify_pairs: List[tuple] = []
        self._old = 0
        self._cache: Dict[int, Optional[Tuple[int, ...]]] = {}  # stack id -> addresses, in this pass

    def bind(self, program) -> None:
        """Take the maps of the loaded program."""
        c = self.config
        self.counts = program.pair('counts')
        self.stacks = program.pair('stacks')
        self._count_readers = tuple(BatchReader(t, 1024) for t in self.counts)
        # (set 0, set 1) of the full-size maps, then of the short stacks' (bpf/sampler.c)
        self.pystacks = program.pair('pystacks') + program.pair('pystacks_s') if program.python else ()
        self.tc_records = program.pair('tc_records') if c.span_links else ()
        self._tc_readers = tuple(BatchReader(t) for t in self.tc_records)
        self.tc_records_size = thread_records_size(c)
        # 64 entries a call: 132 KB of buffers for the full-size maps (2 KB a stack)
        self._py_readers = tuple(BatchReader(t, 64) for t in self.pystacks)
        self.ku_maps = program.pair('ku_stacks') if self.kernel_unwind is not None else ()
        # 64 stacks a call into buffers allocated once (66 KB per set)
        self._ku_readers = tuple(BatchReader(t, 64) for t in self.ku_maps)

    def close(self) -> None:
        self.counts = self.stacks = self.tc_records = self._tc_readers = self._py_readers = ()
        self._ku_readers = ()
        self._count_readers = ()

    # -- one pass
    def begin(self, old: int) -> list:
        """Read (and delete) the counts of generation ``old`` and the side tables they refer to."""
        self._old = old
        self._cache = {}
        self._links = {}
        self.undecoded = 0
        entries = []
        # in chunks into buffers allocated once (BCC allocates for the whole map at every call)
        for k, v in self._count_readers[old & 1].items():
            entries.append((k.tgid, k.tid, bytes(k.comm), k.ustack, k.kstack, int(v), k.pystack, k.ustack_hash,
                            k.tctx))
        if self.kernel_unwind is not None:
            self._read_kernel_unwound(old)
        if self.pystacks:
            self._read_python_stacks(old)
        if self.tc_records:
            self._read_thread_records(old)
        return entries

    def drain(self, entries: list, p: DrainPass) -> None:
        if self.tc_fill is not None:
            p.map_fill['tc_records'] = self.tc_fill
        links = self._links  # record id -> (link, attributes) of this pass (thread_link fills it)
        for tgid, tid, rawcomm, us, ks, cnt, py, kh, tc in entries:
            comm = rawcomm.split(b'\0', 1)[0].decode('utf-8', 'replace')
            if not self.comm_filter.keep(comm):
                p.filtered += cnt
                continue
            kstack, _ = self.resolve(ks)
            if kh:  # unwound in the kernel (bpf/kernel_unwind.h)
                ustack, truncated = self.ku_stacks.get(kh, ((), True))
                ulost = kh not in self.ku_stacks
                if truncated:
                    p.partial[PARTIAL_UNWIND] += cnt
                us = ('ku', kh)
            else:
                ustack, ulost = self.resolve(us)
                truncated = len(ustack) >= MAX_STACK_DEPTH
                if truncated:
                    p.partial[PARTIAL_DEPTH_LIMIT] += cnt
            p.pairs.add((us, ks))
            if tc:
                hit = links.get(tc)
                link, attributes = hit if hit is not None else self.thread_link(tgid, tc)
            else:
                link, attributes = NO_LINK
            p.samples.append(RawSample(tgid, tid, comm, ustack, kstack, cnt, CPU_SAMPLES, truncated, ulost,
                                       self.python_stack(py), link, attributes))

    def end(self) -> int:
        """Clear the stack map of the pass; returns how many stacks it held."""
        n_stacks = clear_stacks(self.stacks[self._old & 1], [s for s in self._cache if s >= 0])
        if self.kernel_unwind is not None:
            self.kernel_unwind.report()
            if not self.config.kernel_unwind_verify:
                self.ku_stacks.clear()
        return n_stacks

    def resolve(self, sid: int) -> Tuple[Tuple[int, ...], bool]:
        """(addresses, lost) of a stack id of this pass. A negative id is an error code from
        bpf_get_stackid."""
        if sid < 0:
            return (), sid != -EFAULT
        cache = self._cache
        if sid not in cache:
            cache[sid] = read_stack(self.stacks[self._old & 1], sid)
        st = cache[sid]
        if st is None:
            return (), True
        return st, False

    # -- side tables
    def _read_thread_records(self, old: int) -> None:
        """Move the thread-context records of the generation that ended into the cache (content-
        addressed, like the Python stacks: a stack copy that waits across drains still finds its
        record)."""
        from ...unwind.copies import MAX_RETRIES

        cache = self._tc_cache
        reader = self._tc_readers[old & 1]
        read = 0
        leaf = reader.table.Leaf
        size = ct.sizeof(leaf)
        at_len, at_data = leaf.len.offset, leaf.data.offset
        try:
            for keys, values, n in reader.take():
                read += n
                raw = ct.string_at(ct.addressof(values), size * n)  # one copy; no ctypes object per record
                for i, k in enumerate(keys[:n]):
                    o = i * size
                    length = min(_u32(raw, o + at_len)[0], TC_RECORD_MAX)
                    cache[k if isinstance(k, int) else int(k.value)] = raw[o + at_data:o + at_data + length], old
        except OSError:  # a batch refused (not expected with 256 entries a call): BCC's way, whole map
            for k, v in reader.table.items_lookup_and_delete_batch():
                read += 1
                n = min(int(v.len), TC_RECORD_MAX)
                cache[k if isinstance(k, int) else int(k.value)] = bytes(bytearray(v.data)[:n]), old
        self.tc_fill = read / float(max(1, self.tc_records_size))
        if len(cache) > 4 * self.tc_records_size:
            horizon = old - MAX_RETRIES - 2
            for rid in [r for r, (_, g) in cache.items() if g < horizon]:
                del cache[rid]

    def thread_record(self, rid: int) -> Optional[bytes]:
        """The copied record of a sample (bytes), or None."""
        if not rid:
            return None
        hit = self._tc_cache.get(rid)
        return hit[0] if hit is not None else None

    def thread_link(self, tgid: int, rid: int) -> Tuple[Any, tuple]:
        """(``RawSample.link``, ``.context_attributes``) of a sample's record id: decoded by
        ``link_record`` once per record and pass (every sample of a span shares the same objects),
        or (the record's bytes, ()) without a decoder (the receiver decodes them), (None, ()) for none."""
        hit = self._links.get(rid)
        if hit is None:
            record = self.thread_record(rid)
            if record is None:
                hit = NO_LINK
            elif self.link_record is None:
                hit = (record, ())
                self.undecoded += 1
            else:
                try:
                    hit = self.link_record(tgid, record)
                except Exception:  # noqa: BLE001 - never fails the drain: the receiver decodes the bytes
                    hit = (record, ())
                    self.undecoded += 1
            self._links[rid] = hit
        return hit

    def _read_kernel_unwound(self, old: int) -> None:
        """The user stacks the kernel unwound in the generation that ended: id -> (addresses, partial)."""
        out = self.ku_stacks
        # BatchReader: 64 stacks a call into buffers allocated once (BCC's batch call allocates
        # arrays for the whole map, 16 MiB of 1 KiB values; one key at a time took three system
        # calls a stack, ~14 µs each, most of the in-kernel unwinder's user-space cost)
        for k, v in self._ku_readers[old & 1].items():
            n = min(int(v.n), MAX_STACK_DEPTH)
            out[int(k if isinstance(k, int) else k.value)] = (tuple(v.ips[:n]), bool(v.partial))

    def _read_python_stacks(self, old: int) -> None:
        """Move the Python stacks of the generation that ended into the cache. Content-addressed
        (the id is a hash of the stack), so a stack copy that waits across drains still finds its
        stack here: entries live a few generations."""
        from ...unwind.copies import MAX_RETRIES

        cache = self._py_cache
        max_frames = int(self.config.python_max_frames)
        # BatchReader, not BCC's items_lookup_and_delete_batch: BCC allocates arrays for the whole
        # map at every call (py-spy: most of this function's time with a few stacks a drain). An id
        # already cached (the same stack at an earlier drain: ids are hashes of the content) is not
        # decoded again; a new one is decoded from one copy of the chunk, not field by field.
        for reader in self._py_readers[old & 1::2]:
            leaf = reader.table.Leaf
            size = ct.sizeof(leaf)
            at_frames = leaf.frames.offset
            room = min(max_frames, (size - at_frames) // _PY_FRAME.size)
            try:
                for keys, values, n in reader.take():
                    raw = None
                    for i in range(n):
                        k = keys[i]
                        sid = k if isinstance(k, int) else int(k.value)
                        hit = cache.get(sid)
                        if hit is not None:
                            if hit[1] != old:
                                cache[sid] = hit[0], old
                            continue
                        if raw is None:
                            raw = ct.string_at(ct.addressof(values), size * n)
                        o = i * size
                        count, truncated = _PY_HEAD(raw, o)
                        o += at_frames
                        frames = tuple(_PY_FRAME.iter_unpack(raw[o:o + _PY_FRAME.size * min(count, room)]))
                        cache[sid] = ('cpython', frames, bool(truncated)), old
            except OSError:  # a batch refused: BCC's way, whole map
                for k, v in reader.table.items_lookup_and_delete_batch():
                    n = min(int(v.n), max_frames)
                    fr = v.frames
                    frames = tuple((fr[i].code, fr[i].instr, fr[i].flags) for i in range(n))
                    cache[k if isinstance(k, int) else int(k.value)] = ('cpython', frames, bool(v.truncated)), old
        horizon = old - MAX_RETRIES - 2
        if len(cache) > 4 * int(self.config.python_stacks_size):
            for sid in [s for s, (_, g) in cache.items() if g < horizon]:
                del cache[sid]

    def peek_python_stacks(self, seen: Dict[int, int], gen: int) -> List[Tuple[int, tuple]]:
        """See ``Sampler.peek_python_stacks``."""
        out: List[Tuple[int, tuple]] = []
        tables = self.pystacks
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

    def python_stack(self, sid: int):
        """('cpython', frames (code, instr, flags) leaf first, truncated) of a Python stack id, or None."""
        if not sid:
            return None
        hit = self._py_cache.get(sid)
        return hit[0] if hit is not None else None
