# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The off-CPU drain (``off_cpu_threshold`` > 0): the nanoseconds threads spent switched out
(``sched:sched_switch``), per (tgid, tid, comm, user stack, kernel stack, generation). A thread's
stacks are taken when it is switched out and its time counted when it runs again, maybe a few
generations later: the stacks of past generations are kept here while a pending switch-out
(``offcpu_start``) may still refer to them."""
from __future__ import annotations

from typing import Dict, Tuple

from ...profile.model import OFF_CPU_TIME, RawSample
from ..program import EFAULT, MAX_STACK_DEPTH, read_stack
from . import CommFilter, DrainPass


class OffCpuDrain:
    def __init__(self, config, comm_filter: CommFilter) -> None:
        self.config = config
        self.comm_filter = comm_filter
        # stacks of past generations still referenced by pending switch-out records
        self._off_cache: Dict[Tuple[int, int], Tuple[int, ...]] = {}
        self._off_pending_prev: set = set()
        self.counts: tuple = ()
        self.stacks: tuple = ()
        self.start = None

    def bind(self, program) -> None:
        self.counts = program.pair('offcpu_counts')
        self.stacks = program.pair('offcpu_stacks')
        self.start = program.bpf['offcpu_start']

    def close(self) -> None:
        self._off_cache = {}

    def drain(self, p: DrainPass) -> None:
        old = p.old
        buf = old & 1
        counts, stacks = self.counts[buf], self.stacks[buf]
        # 1. snapshot (then clear) the stack map of the generation that just ended
        ids = [k.value for k in stacks.keys()]
        for sid in ids:
            st = read_stack(stacks, sid)
            if st is not None:
                self._off_cache[(old, sid)] = st
            try:
                del stacks[stacks.Key(sid)]
            except KeyError:
                pass
        entries = [
            (k.tgid, k.tid, bytes(k.comm), k.ustack, k.kstack, k.gen, int(v))
            for k, v in counts.items_lookup_and_delete_batch()
        ]
        p.map_fill['off_cpu_counts'] = len(entries) / float(max(1, self.config.counts_map_size))
        p.map_fill['off_cpu_stacks'] = len(ids) / float(max(1, self.config.off_cpu_stack_storage_size))
        for tgid, tid, rawcomm, us, ks, gen, ns in entries:
            comm = rawcomm.split(b'\0', 1)[0].decode('utf-8', 'replace')
            if not self.comm_filter.keep(comm):
                p.filtered += 1
                continue
            ustack, ulost = self._resolve(gen, us)
            kstack, klost = self._resolve(gen, ks)
            if (ulost and us >= 0) or (klost and ks >= 0):
                p.lost['off_cpu_stack_expired'] += 1
            p.pairs.add(('off', gen, us, ks))
            p.samples.append(
                RawSample(tgid, tid, comm, ustack, kstack, ns, OFF_CPU_TIME, len(ustack) >= MAX_STACK_DEPTH, ulost)
            )
        # 2. keep only what pending records (now or at the previous drain) and the last two
        #    generations may still refer to: a record consumed between the flip and the read
        #    of offcpu_start below was pending at the previous drain.
        pending = set()
        try:
            for _, v in self.start.items_lookup_batch():
                if v.ustack >= 0:
                    pending.add((v.gen, v.ustack))
                if v.kstack >= 0:
                    pending.add((v.gen, v.kstack))
        except Exception:
            pending = set(self._off_cache)  # keep everything rather than lose
        keep = pending | self._off_pending_prev
        self._off_cache = {k: s for k, s in self._off_cache.items() if k in keep or k[0] >= old - 1}
        self._off_pending_prev = pending

    def _resolve(self, gen: int, sid: int) -> Tuple[Tuple[int, ...], bool]:
        if sid < 0:
            return (), sid != -EFAULT
        st = self._off_cache.get((gen, sid))
        if st is None:
            return (), True
        return st, False
