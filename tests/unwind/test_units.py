# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""unwind/ pieces without BPF: record parsing and aggregation, table cache, build budget."""
import os
import struct
import subprocess
import time

import pytest

from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.receiver.processes import read_process
from datadog_checks.host_profiler.unwind import memo as memo_mod
from datadog_checks.host_profiler.unwind.copies import HEADER, HEADER_SIZE, MAX_RETRIES, StackCopies, ring_pages
from datadog_checks.host_profiler.unwind.tables import ByteLRU, CfiTables
from datadog_checks.host_profiler.unwind.memo import WalkMemo
from datadog_checks.host_profiler.unwind.unwinder import COMPLETE, DEFERRED, Unwinder, frame_pointer_only, unwind_ex
from tests.workloads import NO_FRAME_POINTERS, compile_c

pytestmark = pytest.mark.unit


class _Walk:
    def __init__(self, unwind_user, tgid):
        self.unwind_user, self.tgid = unwind_user, tgid

    def __call__(self, regs, stack, sp, may_defer):
        return self.unwind_user(self.tgid, regs, stack, sp, may_defer)


def per_process(unwind_user):
    """A ``walker_for`` from a function of (tgid, regs, stack, sp, may_defer)."""
    return lambda tgid: _Walk(unwind_user, tgid)


def test_record_parsing_and_generations():
    calls = []

    def unwind_user(tgid, regs, stack, sp, may_defer):
        calls.append((tgid, regs, stack, sp))
        return (regs[0], 0x1000), False, False

    sc = StackCopies(per_process(unwind_user))
    stack = bytes(range(256)) * 16  # 4096 bytes: the page holding sp
    delta = 0x40
    hdr = HEADER.pack(7, 8, 5, 2, 0x401000, 0x7FFD0000F040, 0x7FFD0000F100, 4096, delta, 0xABC, 0xDEF, b'comm\0')
    buf = b'\0' * 24 + hdr + stack  # a record at offset 24 of the ring's pages
    sc.add_record(buf, 24, HEADER_SIZE + 4096)
    sc.add_record(buf, 24, HEADER_SIZE + 4096)
    sc.add_record(buf, 24, 10)  # short: counted bad, no exception
    assert sc.records == 2 and sc.bad_records == 1 and not calls  # unwound at drain time only
    assert sc.take(keep_gen=2) == []  # generation 2 is still active
    assert len(calls) == 2 and calls[0][2] == stack[delta:] and calls[0][3] == 0x7FFD0000F040
    out = sc.take(keep_gen=3)
    assert out == [((2, 7, 8, b'comm\0'.ljust(16, b'\0'), (0x401000, 0x1000), 5, False, 0xABC, 0xDEF), 2)]


def test_take_ticks_during_a_long_pass():
    """The sampler reads its process events from the tick while a pass unwinds many copies."""
    from datadog_checks.host_profiler.unwind.copies import TICK_EVERY

    sc = StackCopies(per_process(lambda tgid, regs, stack, sp, may_defer: ((regs[0],), False, False)))
    for i in range(3 * TICK_EVERY + 1):
        sc.add(1, 100 + i, 100 + i, b'c', 9, 0x401000 + i, 0x7FFD0000F040, 0, b'')
    ticks = []
    out = sc.take(2, tick=lambda: ticks.append(1))
    assert len(ticks) == 3 and sum(n for _, n in out) == 3 * TICK_EVERY + 1


def test_retry_keeps_kernel_stack_and_gives_up():
    state = {'defer': True}

    def unwind_user(tgid, regs, stack, sp, may_defer):
        if state['defer'] and may_defer:
            return (regs[0],), True, True
        return (regs[0], 0x2000), False, False

    sc = StackCopies(per_process(unwind_user))
    sc.add(4, 1, 1, b'c', 9, 0x401000, 0x7FFD0000F040, 0, b'')
    resolved = []
    out = sc.take(5, lambda gen, ks: resolved.append((gen, ks)) or (0xFFFF0001,))
    assert out == [] and resolved == [(4, 9)]  # waits; its kernel stack read before the map is cleared
    for _ in range(MAX_RETRIES):
        out = sc.take(6, lambda gen, ks: ())
    assert len(out) == 1 and out[0][0][5] == ('resolved', (0xFFFF0001,))  # gave up: unwound as is
    sc.add(6, 1, 1, b'c', 3, 0x401000, 0x7FFD0000F040, 0, b'')
    out = sc.take(7, lambda gen, ks: (1,), final=True)  # the final drain never defers
    assert out[0][0][4] == (0x401000, 0x2000)


def test_pending_bytes_cap_unwinds_early():
    n = []
    sc = StackCopies(per_process(lambda *a: (n.append(1) or (a[1][0],), False, False)), max_pending_bytes=10000)
    for _ in range(5):
        sc.add(1, 1, 1, b'c', -14, 0x401000, 0x7FFD0000F040, 0, b'\0' * 4000)
    assert len(n) >= 2 and sc.pending_bytes <= 10000


def test_ring_pages():
    from datadog_checks.host_profiler.unwind.copies import wakeup_every

    assert ring_pages(16384, 2, 20) == 256  # the minimum: 2.5 s of half-size records
    assert ring_pages(16384, 2, 99) == 1024  # 2 s
    assert ring_pages(16384, 2, 999) == 4096  # 16 MiB: 0.8 s
    assert ring_pages(16384, 64, 999) == 16384  # big hosts: at least 0.5 s, up to the maximum
    for hz in (20, 99, 999):
        p = ring_pages(16384, 2, hz)
        assert p & (p - 1) == 0
        every = wakeup_every(p, 16384, 2)
        # a quarter of the ring between wake-ups, in half-size records of both CPUs
        assert 1 <= every and every * 2 * (64 + 10240 + 8) <= p * 4096 // 4


def test_byte_lru():
    class V:
        def __init__(self, n):
            self.nbytes = n

    lru = ByteLRU(100)
    assert lru.put('a', V(60)) and lru.put('b', V(30))
    lru.get('a')
    assert lru.put('c', V(30)) and 'b' not in lru and 'a' in lru and lru.evictions == 1
    assert not lru.put('big', V(1000)) and lru.bytes <= 100


@pytest.mark.skipif(os.geteuid() != 0, reason='reads /proc/PID/mem and map_files')
def test_tables_cache_identity_budget_and_vdso(tmp_path):
    binary = compile_c('split.c', tmp_path, cflags=NO_FRAME_POINTERS)
    procs = [subprocess.Popen([binary, '30']) for _ in range(2)]
    try:
        time.sleep(0.2)
        tel = Telemetry()
        tables = CfiTables(tel)
        infos = [read_process(p.pid) for p in procs]
        tables.set_build_budget(0.0)  # spent: nothing is compiled, lookups are deferred
        libc = [m for m in infos[0].mappings if 'libc.so' in m.path and 'x' in m.perms][0]
        assert tables.finder(infos[0])(libc.start + 0x100) is None
        assert tables.deferrals >= 1 and tel.total('unwind.cfi.tables.deferred') >= 1
        tables.set_build_budget(None)
        found = tables.finder(infos[0])(libc.start + 0x100)
        assert found is not None
        table, bias = found
        assert bias == libc.start - libc.offset  # libc's text: p_vaddr == p_offset
        misses = tel.total('unwind.cfi.cache.misses')
        # the second process shares every table (same files): hits only
        f2 = tables.finder(infos[1])
        libc2 = [m for m in infos[1].mappings if 'libc.so' in m.path and 'x' in m.perms][0]
        assert f2(libc2.start + 0x100)[0] is table
        assert tel.total('unwind.cfi.cache.misses') == misses and tel.total('unwind.cfi.cache.hits') >= 1
        # vDSO: read from /proc/PID/mem once per boot, it has .eh_frame
        vdso = [m for m in infos[0].mappings if m.path == '[vdso]'][0]
        vt = tables.finder(infos[0])(vdso.start + 0x10)
        assert vt is not None and len(vt[0]) > 0
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_unwinder_may_defer():
    class T:
        deferrals = 0

        def walk_state(self, process):
            def f(addr):
                self.deferrals += 1
                return None
            return f, {}, None

    tel = Telemetry()
    u = Unwinder(tel, tables=T(), mode='dwarf')
    sp = 0x7FFD00000000
    addrs, truncated, result = u.unwind_sample(object(), (0x401000, sp, 0), b'\0' * 64, sp, may_defer=True)
    assert result == DEFERRED and truncated
    u.flush()
    assert tel.total('unwind.samples') == 0  # a deferred walk is not counted (it will be retried)
    addrs, truncated, result = u.unwind_sample(object(), (0x401000, sp, 0), b'\0' * 64, sp)
    u.flush()
    assert result != COMPLETE and tel.total('unwind.samples') == 1


def test_split_memory_budget_stays_within_the_users_budget():
    from datadog_checks.host_profiler.unwind.tables import split_memory_budget

    for unwinding in ('auto', 'dwarf'):
        sym, cfi = split_memory_budget(256, unwinding)
        assert sym + cfi == 256 << 20 and cfi == 64 << 20
    assert split_memory_budget(256, 'frame_pointers') == (256 << 20, 0)
    sym, cfi = split_memory_budget(16, 'auto')  # small budgets keep a usable CFI cache
    assert cfi == 8 << 20 and sym == 8 << 20


def test_rule_cache_keeps_found_rules_only_and_changes_no_result():
    """unwind_ex's rule_cache (kept per process across samples): a pc found in a table is looked
    up once; a pc without a table now (a build the budget postponed) is asked again next time."""
    import struct as st

    from datadog_checks.host_profiler.unwind.cfi import BP_SAME, CFA_SP, RA_UNDEFINED
    from datadog_checks.host_profiler.unwind.unwinder import unwind_ex

    class Table:
        lookups = 0

        def lookup(self, vaddr):
            Table.lookups += 1
            if vaddr == 0x3000 - 1:  # the outermost function: return address undefined
                return (CFA_SP, 8, RA_UNDEFINED, BP_SAME, 0)
            return (CFA_SP, 8, -8, BP_SAME, 0)  # a leaf-like frame: CFA = sp + 8, ra at CFA - 8

    table = Table()
    deferred = {'on': True}
    asked = []

    def find_table(pc):
        asked.append(pc)
        if pc >= 0x3000 - 1 and deferred['on']:
            return None  # its file's table is not built yet
        return table, 0

    sp = 0x7FFD00000000
    stack = st.pack('<QQ', 0x2000, 0x3000) + b'\0' * 48  # leaf 0x1000 -> 0x2000 -> 0x3000
    cache = {}
    first = unwind_ex((0x1000, sp, 0), stack, sp, find_table, rule_cache=cache)
    assert first[0][:3] == [0x1000, 0x2000, 0x3000] and 0x3000 - 1 not in cache
    assert set(cache) == {0x1000, 0x2000 - 1}
    asked.clear()
    second = unwind_ex((0x1000, sp, 0), stack, sp, find_table, rule_cache=cache)
    assert second == first and asked == [0x3000 - 1]  # only the pc without a table is asked again
    deferred['on'] = False
    third = unwind_ex((0x1000, sp, 0), stack, sp, find_table, rule_cache=cache)
    assert third == unwind_ex((0x1000, sp, 0), stack, sp, find_table)  # same as without a cache
    assert third[0] == [0x1000, 0x2000, 0x3000] and third[1] == 'complete' and 0x3000 - 1 in cache


def test_walk_memo_hits_only_when_the_words_read_are_the_same():
    sp = 0x7FFD0000F000
    buf = bytearray(0x100)  # a frame-pointer chain: bp -> (saved bp, return address)
    struct.pack_into('<QQ', buf, 0x20, sp + 0x60, 0x401234)
    struct.pack_into('<QQ', buf, 0x60, 0, 0x401500)
    stack = bytes(buf)
    regs = (0x401000, sp, sp + 0x20)
    memo = WalkMemo()
    offsets, read = memo.recorder()
    addrs, result = unwind_ex(regs, stack, sp, frame_pointer_only, read=read)
    assert addrs == [0x401000, 0x401234, 0x401500] and result == COMPLETE
    assert sorted(offsets) == [0x20, 0x28, 0x60, 0x68]
    memo.put(regs, stack, offsets, addrs, result)
    # a copy that differs only in words the walk did not read (a local variable): a hit
    other = bytearray(stack)
    other[0x08] = 0xFF
    assert memo.get(regs, bytes(other)) == (tuple(addrs), result)
    # a different return address: a miss, and the walk sees it
    changed = bytearray(stack)
    struct.pack_into('<Q', changed, 0x28, 0x409999)
    assert memo.get(regs, bytes(changed)) is None
    assert unwind_ex(regs, bytes(changed), sp, frame_pointer_only)[0][1] == 0x409999
    # other registers, or a copy of another length: a miss
    assert memo.get((0x401000, sp, sp + 0x28), stack) is None
    assert memo.get(regs, stack + b'\0' * 8) is None
    # a process whose walks rarely repeat stops being remembered (and frees its entries)
    total = memo_mod.WalkMemo.total
    for i in range(memo_mod.TRIAL):
        memo.get((0x402000 + i, sp, 0), stack)
    assert not memo.enabled and len(memo) == 0 and memo_mod.WalkMemo.total == total - 1
    memo.put(regs, stack, offsets, addrs, result)
    assert memo.get(regs, stack) is None
