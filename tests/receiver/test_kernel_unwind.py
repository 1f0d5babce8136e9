# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""In-kernel unwinding (issue #20): the BPF program unwinds user stacks with stack-delta tables.

One receiver samples every workload at once (BCC compiles once) in `auto` with
``kernel_unwind_verify``: each kernel-unwound sample is also copied to user space, where the
user-space unwinder (the reference) walks the same stack; both results must be equal frame for
frame. The symbolized stacks must keep the acceptance shapes of the user-space unwinder."""
import collections
import os
import shutil
import subprocess
import time

import pytest

from datadog_checks.host_profiler.profile.model import CPU_SAMPLES
from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.unwind.cfi import build_cfi_table
from datadog_checks.host_profiler.unwind.stack_deltas import RuleSet, compile_deltas, encode_rule
from tests.workloads import NO_FRAME_POINTERS, compile_c

NOTAIL = NO_FRAME_POINTERS + ('-fno-optimize-sibling-calls',)
SECONDS = 5.0
LIBC = '/lib/x86_64-linux-gnu/libc.so.6'


def _bcc_ok():
    try:
        import bcc  # noqa: F401
    except ImportError:
        return False
    return True


live = pytest.mark.skipif(os.geteuid() != 0 or not _bcc_ok() or not shutil.which('gcc'),
                          reason='needs root, BCC and gcc (CI runs as root)')


# ------------------------------------------------------------------------- tables (pure)
@pytest.mark.skipif(not os.path.exists(LIBC), reason='no glibc')
def test_stack_deltas_equal_cfi_lookup():
    """Every row of libc's table: the compacted stack deltas give the rule CfiTable.lookup gives."""
    table, _ = build_cfi_table(LIBC, lazy=False)
    rules = RuleSet(65536)
    d = compile_deltas(table, rules)
    assert 0 < len(d) <= len(table)
    by_index = {}
    for r in table.rules:
        by_index.setdefault(rules.intern(r), encode_rule(r))
    none = encode_rule((0, 0, 0x7FFFFFFE, 4, 0))
    probes = list(table.starts[::7]) + [s + 1 for s in table.starts[::11]] + [table.starts[-1] + 4096]
    for vaddr in probes:
        want = table.lookup(vaddr)
        row = d.lookup(vaddr)
        got = None if row is None else by_index[row[1]]
        if want is None:
            assert got is None or got[0] == 0, hex(vaddr)
        else:
            assert got == encode_rule(want), hex(vaddr)
    assert d.nbytes == 8 * len(d)
    assert none  # rule 0 is "no CFI"


def test_rules_shared_and_capped():
    from datadog_checks.host_profiler.unwind.stack_deltas import RuleSetFull

    rs = RuleSet(3)
    assert rs.intern((1, 8, -8, 0, 0)) == rs.intern((1, 8, -8, 0, 0)) == 1
    rs.intern((1, 16, -8, 1, -16))
    with pytest.raises(RuleSetFull):
        rs.intern((2, 16, -8, 1, -16))


def test_row_allocator_coalesces():
    from datadog_checks.host_profiler.receiver.kernel_unwind import _Rows

    r = _Rows(100)
    a, b, c = r.alloc(30), r.alloc(30), r.alloc(30)
    assert (a, b, c) == (0, 30, 60) and r.alloc(20) is None
    r.release(a, 30)
    r.release(b, 30)
    assert r.alloc(55) == 0 and r.used == 85


# ------------------------------------------------------------------------- live
def _receiver(tmp_path, pids, **kw):
    from datadog_checks.host_profiler.receiver.receiver import Receiver, ReceiverConfig

    cfg = dict(samples_per_second=199, drain_interval=0.25, check_interval=0, lock_path=str(tmp_path / 'hp.lock'),
               process_exit_ttl=30.0, pids=list(pids), unwinding='auto', kernel_unwind_verify=True)
    cfg.update(kw)
    tel = Telemetry()
    return Receiver(ReceiverConfig(**cfg), telemetry=tel), tel


@pytest.fixture(scope='module')
def profiled(tmp_path_factory):
    if os.geteuid() != 0 or not _bcc_ok() or not shutil.which('gcc'):
        pytest.skip('needs root, BCC and gcc')
    from datadog_checks.host_profiler.symbols.symbolizer import Symbolizer

    tmp = tmp_path_factory.mktemp('kunwind')
    bins = {
        'split': compile_c('split.c', tmp, cflags=NOTAIL),
        'recurse': compile_c('recurse.c', tmp, cflags=NOTAIL, defines=('DEPTH=40',)),
        'qsort': compile_c('qsort_cb.c', tmp, cflags=NOTAIL),
        'sigframe': compile_c('sigframe.c', tmp, cflags=NOTAIL),
        'vdso': compile_c('vdso_loop.c', tmp, cflags=NOTAIL),
    }
    procs = {name: subprocess.Popen([b, '120']) for name, b in bins.items()}
    procs['python'] = subprocess.Popen(['/usr/bin/python3', '-c', 'while True: pass'])
    try:
        time.sleep(0.3)
        rx, tel = _receiver(tmp, [p.pid for p in procs.values()])
        rx.start()
        try:
            ku = rx._sampler.kernel_unwind
            time.sleep(1.0)
            ku.wait_idle(60)
            walk_loaded = ku.walk_loaded()  # loaded by the loader before its first ku_procs entry
            time.sleep(0.5)
            rx.collect()  # start-up: samples before the tables were in
            del rx._sampler.verify_pairs[:]
            time.sleep(SECONDS)
            col = rx.collect()
            pairs = list(rx._sampler.verify_pairs)
            kstats = ku.kernel_stats()
            lstats = ku.stats()
        finally:
            rx.stop(block=True, timeout=30)
        sym = Symbolizer(Telemetry())
        stacks = {}
        for name, p in procs.items():
            proc = col.processes.get(p.pid)
            out = []
            for s in col.samples:
                if s.pid == p.pid and s.value_type == CPU_SAMPLES and s.user_stack:
                    names = [f.display_name for f in sym.symbolize_user(proc, s.user_stack)]
                    out.append((names[::-1], s.count, s.truncated))
            stacks[name] = out
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
    return {'stacks': stacks, 'pairs': pairs, 'pids': {n: p.pid for n, p in procs.items()}, 'tel': tel,
            'kstats': kstats, 'lstats': lstats, 'walk_loaded': walk_loaded}


def _share(stacks, pred):
    total = sum(c for _, c, _ in stacks)
    return sum(c for s, c, t in stacks if pred(s, t)) / float(total or 1), total


def _top(stacks, n=5):
    c = collections.Counter()
    for s, k, t in stacks:
        c[';'.join(s[-8:]) + (' [partial]' if t else '')] += k
    return c.most_common(n)


@live
@pytest.mark.parametrize('name', ['split', 'recurse', 'qsort', 'sigframe', 'vdso', 'python'])
def test_kernel_equals_user_space_frame_for_frame(profiled, name):
    pid = profiled['pids'][name]
    pairs = [p for p in profiled['pairs'] if p[0] == pid]
    total = sum(p[5] for p in pairs)
    assert total >= 20, (name, total)
    bad = []
    for _, kst, kpartial, ust, utrunc, cnt in pairs:
        if kst == ust and kpartial == utrunc:
            continue
        if utrunc and kst[:len(ust)] == ust:
            continue  # the copy was too short for user space; the kernel read further (not a mismatch)
        bad.append((len(kst), kpartial, len(ust), utrunc, cnt))
    assert sum(b[-1] for b in bad) == 0, (name, bad[:5], total)


@live
def test_split_main_work_burn(profiled):
    stacks = profiled['stacks']['split']
    share, total = _share(stacks, lambda s, t: not t and s[0] == '_start'
                          and s[-3:] in (['main', 'work', 'burn_a'], ['main', 'work', 'burn_b']))
    assert total >= 50 and share >= 0.95, (share, total, _top(stacks))
    a, _ = _share(stacks, lambda s, t: s[-1] == 'burn_a')
    assert 0.6 <= a <= 0.9, a


@live
def test_recursion_depth_40_whole(profiled):
    stacks = profiled['stacks']['recurse']
    share, total = _share(stacks, lambda s, t: not t and s[0] == '_start' and s.count('recurse') == 40
                          and s[s.index('recurse') - 1] == 'main')
    assert total >= 50 and share >= 0.95, (share, total, _top(stacks))


@live
def test_qsort_callback_whole(profiled):
    stacks = profiled['stacks']['qsort']
    cb = [x for x in stacks if 'compare' in x[0]]
    share, total = _share(cb, lambda s, t: not t and s[0] == '_start' and 'sort_round' in s
                          and s[s.index('sort_round') - 1] == 'main' and s.index('compare') > s.index('sort_round') + 1)
    assert total >= 30 and share >= 0.95, (share, total, _top(cb))


@live
def test_python_from_start(profiled):
    stacks = profiled['stacks']['python']
    share, total = _share(stacks, lambda s, t: not t and s[0] == '_start')
    assert total >= 50 and share >= 0.9, (share, total, _top(stacks))


@live
def test_signal_frame(profiled):
    stacks = profiled['stacks']['sigframe']
    inside = [x for x in stacks if 'on_alarm' in x[0]]
    share, total = _share(inside, lambda s, t: not t and s[0] == '_start' and 'main' in s
                          and s.index('main') < s.index('on_alarm'))
    assert total >= 20 and share >= 0.9, (share, total, _top(inside))
    assert profiled['kstats']['signal_frames'] > 0


@live
def test_vdso(profiled):
    stacks = profiled['stacks']['vdso']
    share, total = _share(stacks, lambda s, t: not t and s[0] == '_start' and 'poll_clock' in s)
    assert total >= 50 and share >= 0.9, (share, total, _top(stacks))


@live
def test_kernel_unwind_telemetry(profiled):
    tel, ks, ls = profiled['tel'], profiled['kstats'], profiled['lstats']
    # cumulative since start: walks that met a table still loading went through the stack copy
    assert ks['walks'] >= 300 and ks['complete'] >= 0.9 * (ks['walks'] - ks['fallback_table_pending']), ks
    # ku_walk is loaded off the start-up path, but always before a process entry can lead to it
    assert profiled['walk_loaded']
    assert ks['tail_calls'] > 0 and ks['tail_call_failed'] == 0, ks
    assert ls['tables'] >= 3 and ls['bytes'] > 0 and ls['evictions'] == 0, ls
    assert tel.total('unwind.kernel.samples') >= 300
    assert tel.total('unwind.kernel.tables.loaded') >= 3
    assert tel.total('unwind.kernel.frames') > 5 * tel.total('unwind.kernel.samples')


@live
def test_tiny_budget_evicts_and_falls_back(tmp_path):
    """1 MiB of rows holds libc but not libpython3.11 beside it: tables are evicted, the samples that
    need a missing table go through the stack copy (counted), none is lost."""
    p = subprocess.Popen(['/usr/bin/python3', '-c', 'while True: pass'])
    q = subprocess.Popen([compile_c('split.c', tmp_path, cflags=NOTAIL), '60'])
    try:
        time.sleep(0.3)
        rx, tel = _receiver(tmp_path, [p.pid, q.pid], kernel_unwind_memory_mb=1, kernel_unwind_verify=False)
        rx.start()
        try:
            time.sleep(2.0)
            rx._sampler.kernel_unwind.wait_idle(60)
            time.sleep(2.0)
            col = rx.collect()
        finally:
            rx.stop(block=True, timeout=30)
    finally:
        p.kill()
        q.kill()
        p.wait()
        q.wait()
    totals = tel.totals()
    fb = sum(v for k, v in totals.items() if k.startswith('unwind.kernel.copy_fallback'))
    assert fb > 0, totals
    assert sum(s.count for s in col.samples if s.pid == p.pid) >= 50
    assert not any(s.user_stack_lost for s in col.samples if s.pid in (p.pid, q.pid))


@live
def test_reloaded_tables_never_answer_from_a_stale_cache(tmp_path):
    """Each CPU's rule cache (ku_cache) keeps, per (table, pc offset), the index of the row found. Here
    every table of a warm process is evicted and loaded again under the same table id, at other row
    positions: an entry tagged with the table id alone would now point at another table's rows. Tagged
    with the load's generation, it is never used again: every kernel-unwound sample after the reload
    equals the user-space unwinder's result on the same stack."""
    q = subprocess.Popen([compile_c('split.c', tmp_path, cflags=NOTAIL), '60'])
    try:
        time.sleep(0.3)
        rx, tel = _receiver(tmp_path, [q.pid], samples_per_second=499)
        rx.start()
        try:
            ku = rx._sampler.kernel_unwind
            time.sleep(1.5)
            ku.wait_idle(60)
            time.sleep(1.0)  # the cache is warm: every frame of split's few stacks hits
            before = ku.kernel_stats()
            with ku._lock:
                old = {key: t.tid for key, t in ku._tables.items()}
                firsts = {key: t.first for key, t in ku._tables.items()}
                while ku._tables:
                    ku._evict_one(keep=0)
                ku._rows.alloc(4099)  # the reloaded rows land elsewhere
            orig = ku._insert

            def insert(key, deltas, loads, pid):
                tid = old.get(key)
                if tid in ku._free_ids:  # the same id as before for the same file
                    ku._free_ids.remove(tid)
                    ku._free_ids.append(tid)
                return orig(key, deltas, loads, pid)

            ku._insert = insert
            ku.request(q.pid)
            ku.wait_idle(60)
            time.sleep(0.3)
            rx.collect()
            del rx._sampler.verify_pairs[:]
            time.sleep(2.5)
            rx.collect()
            pairs = list(rx._sampler.verify_pairs)
            after = ku.kernel_stats()
            reloaded = {key: (t.tid, t.first) for key, t in ku._tables.items()}
        finally:
            rx.stop(block=True, timeout=30)
    finally:
        q.kill()
        q.wait()
    same_id = [k for k in old if k in reloaded and reloaded[k][0] == old[k] and reloaded[k][1] != firsts[k]]
    assert same_id, (old, reloaded)
    assert after['rule_searches'] > before['rule_searches'], (before, after)  # old entries were not used
    total = sum(x[5] for x in pairs)
    bad = [x for x in pairs if not (x[1] == x[3] and x[2] == x[4]) and not (x[4] and x[1][:len(x[3])] == x[3])]
    assert total >= 50 and sum(x[5] for x in bad) == 0, (total, [(len(x[1]), x[2], len(x[3]), x[4]) for x in bad[:5]])


def test_tables_stay_within_the_bpf_search():
    """The BPF binary search of a table's rows runs KU_SEARCH_STEPS iterations: a table with more rows
    than it reaches is not loaded (its samples keep the stack copy, counted as too big)."""
    from datadog_checks.host_profiler.receiver import kernel_unwind as ku

    assert ku.KernelUnwind(64).cflags()['KU_SEARCH_STEPS'] == ku.SEARCH_STEPS
    assert ku.MAX_TABLE_ROWS == (1 << ku.SEARCH_STEPS) - 1 >= 1_000_000  # libLLVM's 949k rows fit

    class Rows:
        def __len__(self):
            return ku.MAX_TABLE_ROWS + 1

    tel = Telemetry()
    loader = ku.KernelUnwind(64, telemetry=tel)
    loader._insert(('big',), Rows(), (), 1)
    assert ('big',) in loader._copy_only and ('big',) not in loader._tables
    assert tel.total('unwind.kernel.tables.too_big') == 1 and loader._rows.used == 0


def test_budget_split():
    from datadog_checks.host_profiler.receiver.kernel_unwind import procs_capacity, rows_capacity

    assert rows_capacity(64) * 8 == 48 << 20  # rows: 3/4 of the budget
    assert procs_capacity(64, 16384) == (16 << 20) // (8 + 32 * 256)  # ranges: the rest (~2000 processes)
    assert procs_capacity(64, 100) == 100


def test_huge_cfi_keeps_the_copy_and_builds_are_cpu_bounded():
    """A binary with LLVM-sized CFI is not compiled for the kernel (seconds of CPU, ~200 MB of
    transient memory); an ordinary one is. Builds stop when the CPU budget is spent, and resume as
    it refills."""
    from datadog_checks.host_profiler.receiver import kernel_unwind as ku

    tel = Telemetry()
    loader = ku.KernelUnwind(64, telemetry=tel)
    libc = '/lib/x86_64-linux-gnu/libc.so.6'
    with open(libc, 'rb') as f:
        assert not loader._too_big(('libc',), f)
    big = [p for p in ('/usr/lib/x86_64-linux-gnu/libLLVM-14.so.1', '/usr/lib/x86_64-linux-gnu/libclang-cpp.so.14')
           if os.path.exists(p)]
    assert big, 'BCC depends on LLVM: one of its libraries is installed'
    with open(big[0], 'rb') as f:
        assert loader._too_big(('llvm',), f)
    assert ('llvm',) in loader._copy_only and tel.total('unwind.kernel.tables.too_big') == 1
    assert loader._may_build()  # the start-up burst
    loader._build_tokens = -ku.BUILD_CPU_SHARE  # a build just overspent the bucket by one second's refill
    assert not loader._may_build()
    time.sleep(1.2)
    assert loader._may_build()
