# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Stack-copy records from the BPF ring buffer → unwound, aggregated user stacks.

In ``dwarf``/``auto`` unwinding the BPF program (``receiver/bpf/sampler.c``, ``UNWIND_COPY``)
submits one record per sample instead of counting it in the kernel:

    struct copy_t {              // 80-byte header, little endian
        u32 tgid, tid;
        s32 kstack;              // kernel stack id in stacks{gen & 1} (or -errno)
        u32 gen;                 // generation of the maps when the sample was taken
        u64 ip, sp, bp;          // user registers (task_pt_regs when the sample hit the kernel)
        u32 size;                // bytes copied, from the start of the page that holds sp
        u32 delta;               // sp - that page's start
        u64 pystack;             // Python stack id in pystacks{gen & 1} (runtimes/python), 0: none
        u64 tctx;                // thread-context record id in tc_records{gen & 1}, 0: none
        char comm[16];
        u8 stack[STACK_COPY_SIZE + 4096];  // only `size` bytes of it are sent
    };

The copy starts at the page holding ``sp`` because page-aligned reads at constant offsets
are what the verifier can bound; it stops at the first unmapped page (the top of the
stack), so ``size - delta`` bytes above ``sp`` are valid.

``StackCopies.add_record`` is the ring-buffer handler (``receiver.ringbuf.RingReader``): it only
keeps the record (the bytes above ``sp``). Records are unwound at drain time, through ``walker_for(tgid)(regs, stack, sp, may_defer)``, and
identical results aggregated per generation; the sampler's drain takes the finished generations
with ``take(gen, resolve_kstack)`` and resolves the kernel stack ids before clearing their maps.
A copy whose unwinding needs a CFI table the per-drain build budget postponed waits for the
next drain (at most ``MAX_RETRIES`` times; never at the final drain), its kernel stack resolved
already: warm-up on a busy host delays such samples instead of degrading them. Unwinding in
the callback instead would run cold CFI compilations (tens to hundreds of ms) in the middle of
event polling and delay the re-read of a just-exec'd process's mappings. When the pending
records exceed ``max_pending_bytes`` they are unwound at once (bounded memory on big hosts).
"""
from __future__ import annotations

import struct
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HEADER = struct.Struct('<IIiIQQQIIQQ16s')
HEADER_SIZE = HEADER.size  # 80
PAGE = 4096

# walk((ip, sp, bp), stack, sp, may_defer) -> (addresses leaf first, truncated, retry_later)
Walk = Callable[[Tuple[int, int, int], bytes, int, bool], Tuple[Sequence[int], bool, bool]]
# walker_for(tgid) -> the walk of that process's copies (None: the process is unknown)
WalkerFor = Callable[[int], Optional[Walk]]
TICK_EVERY = 32  # copies unwound between two calls of unwind_pending's tick
MAX_RETRIES = 2  # drains a copy may wait for the CFI tables it needs (see CfiTables.set_build_budget)

# (gen, tgid, tid, comm bytes, user addresses, kernel stack id, truncated) -> samples
Key = Tuple[int, int, int, bytes, Tuple[int, ...], Any, bool, int, int]  # ..., truncated, Python stack id, record id


def typical_record_bytes(stack_copy_size: int) -> int:
    """What a record takes in the ring, sized at half the largest (the header, the page holding
    sp and ``stack_copy_size`` above it): a thread's stack rarely fills the whole copy. The 8
    bytes are the ring's own record header."""
    return HEADER_SIZE + (int(stack_copy_size) + PAGE) // 2 + 8


def ring_pages(stack_copy_size: int, cpus: int, samples_per_second: int, min_pages: int = 256,
               comfortable_pages: int = 4096, max_pages: int = 16384) -> int:
    """Ring-buffer pages (a power of 2) for the stack copies of every CPU.

    Records are variable-sized (only the pages copied), and sized by ``typical_record_bytes``.
    The ring holds 2 s of records up to
    ``comfortable_pages`` (16 MiB), and never less than 0.5 s (big hosts, up to ``max_pages``).
    The reader is woken every quarter of it (``wakeup_every``). A burst of bigger records that
    overflows the ring only makes those samples fall back to frame pointers, counted as
    ``user_stack_copy_lost``. The ring is mapped twice in user space, so every page counts twice
    in our RSS: 32 MiB at 999 Hz on 2 CPUs, 2 MiB at 20 Hz."""
    per_second = typical_record_bytes(stack_copy_size) * max(1, cpus) * max(1, samples_per_second)

    def pow2(nbytes: float) -> int:
        pages = max(min_pages, int(nbytes) // PAGE + 1)
        p = 1
        while p < pages:
            p <<= 1
        return p

    return min(max_pages, max(pow2(per_second * 0.5), min(pow2(per_second * 2.0), comfortable_pages)))


def wakeup_every(pages: int, stack_copy_size: int, cpus: int) -> int:
    """Records of one CPU between two forced wake-ups of the reader: about a quarter of the
    ring (``pages``) in half-size records from every CPU, so the ring is read well before it
    fills even when the reader's poll timeout is long."""
    return max(1, int(pages) * PAGE // 4 // typical_record_bytes(stack_copy_size) // max(1, cpus))


class StackCopies:
    def __init__(self, walker_for: WalkerFor, max_pending_bytes: int = 32 << 20) -> None:
        self.walker_for = walker_for
        self.max_pending_bytes = int(max_pending_bytes)
        self._acc: Dict[Key, int] = {}
        self._pending: List[tuple] = []
        self._pending_bytes = 0
        self.records = 0
        self.bad_records = 0

    def __len__(self) -> int:
        return len(self._acc) + len(self._pending)

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def add_record(self, buf: Any, off: int, size: int) -> None:
        """A record at ``buf[off:off + size]`` (the ring's mapped pages): keeps a copy of the
        bytes above sp only. Never raises."""
        if size < HEADER_SIZE:
            self.bad_records += 1
            return
        try:
            tgid, tid, kstack, gen, ip, sp, bp, n, delta, pystack, tctx, comm = HEADER.unpack_from(buf, off)
            n = min(n, size - HEADER_SIZE)
            start = off + HEADER_SIZE
            stack = buf[start + delta:start + n] if delta < n else b''
        except Exception:  # noqa: BLE001
            self.bad_records += 1
            return
        self.add(gen, tgid, tid, comm, kstack, ip, sp, bp, stack, pystack, tctx)

    def add(self, gen: int, tgid: int, tid: int, comm: bytes, kstack: int, ip: int, sp: int, bp: int,
            stack: bytes, pystack: int = 0, tctx: int = 0) -> None:
        self.records += 1
        self._pending.append([gen, tgid, tid, comm, kstack, ip, sp, bp, stack, 0, pystack, tctx])
        self._pending_bytes += len(stack) + 200
        if self._pending_bytes > self.max_pending_bytes:
            self.unwind_pending()

    def unwind_pending(self, keep_gen: Optional[int] = None,
                       resolve_kstack: Optional[Callable[[int, int], Tuple[int, ...]]] = None,
                       tick: Optional[Callable[[], None]] = None) -> int:
        """Unwind pending copies into the aggregate; returns how many. With ``resolve_kstack``
        (at a drain), a copy that asks to be retried stays pending, its kernel stack resolved now
        when its generation is finished (not ``keep_gen``). ``tick()`` is called every
        TICK_EVERY copies (the sampler reads its process events meanwhile: a long pass must not
        delay a new process's detection); it must not add copies."""
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        acc = self._acc
        # one walker per process for the whole pass: its metadata, tables and memo are looked up once
        walkers: Dict[int, Optional[Walk]] = {}
        keep: List[list] = []
        for i, rec in enumerate(pending):
            if tick is not None and i % TICK_EVERY == TICK_EVERY - 1:
                tick()
            gen, tgid, tid, comm, kstack, ip, sp, bp, stack, retries, pystack, tctx = rec
            may_defer = resolve_kstack is not None and retries < MAX_RETRIES
            try:
                walk = walkers[tgid] if tgid in walkers else walkers.setdefault(tgid, self.walker_for(tgid))
                if walk is None:
                    addresses, truncated, retry = (ip,), True, False
                else:
                    addresses, truncated, retry = walk((ip, sp, bp), stack, sp, may_defer)
            except Exception:  # noqa: BLE001 - the leaf at least
                addresses, truncated, retry = (ip,), True, False
            if retry and may_defer:
                if isinstance(kstack, int) and gen != keep_gen:
                    kstack = ('resolved', tuple(resolve_kstack(gen, kstack)))
                keep.append([gen, tgid, tid, comm, kstack, ip, sp, bp, stack, retries + 1, pystack, tctx])
                continue
            key = (gen, tgid, tid, comm, tuple(addresses), kstack, bool(truncated), pystack, tctx)
            acc[key] = acc.get(key, 0) + 1
        self._pending = keep
        self._pending_bytes = sum(len(r[8]) + 200 for r in keep)
        return len(pending) - len(keep)

    def take(self, keep_gen: int, resolve_kstack: Optional[Callable[[int, int], Tuple[int, ...]]] = None,
             final: bool = False, tick: Optional[Callable[[], None]] = None) -> List[Tuple[Key, int]]:
        """Unwind what is pending, then return every aggregated entry whose generation is not
        ``keep_gen`` (the active one). A key's kernel stack is an id of its generation's map, or
        ``('resolved', addresses)`` for copies that waited across drains. ``final``: no retries."""
        self.unwind_pending(keep_gen, None if final else resolve_kstack, tick)
        out = [(k, v) for k, v in self._acc.items() if k[0] != keep_gen]
        for k, _ in out:
            del self._acc[k]
        return out

    def clear(self) -> None:
        self._acc = {}
        self._pending = []
        self._pending_bytes = 0
