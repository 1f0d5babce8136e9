# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Whole user stacks without frame pointers, end to end: the real BPF sampler copies registers and
the top of the user stack, user space unwinds them with .eh_frame tables, the real symbolizer names
the frames. One receiver samples every workload at once (BCC compiles once)."""
import collections
import os
import shutil
import subprocess
import time

import pytest

from datadog_checks.host_profiler.profile.model import CPU_SAMPLES
from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.symbols.symbolizer import Symbolizer
from tests.workloads import NO_FRAME_POINTERS, compile_c


def _bcc_ok():
    try:
        import bcc  # noqa: F401
    except ImportError:
        return False
    return True


def _integrated():
    import dataclasses

    from datadog_checks.host_profiler.receiver.receiver import ReceiverConfig

    return 'unwinding' in {f.name for f in dataclasses.fields(ReceiverConfig)}


pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or not _bcc_ok() or not shutil.which('gcc'),
                       reason='needs root, BCC and gcc (CI runs as root)'),
    pytest.mark.skipif(not _integrated(), reason='the receiver has no unwinding setting yet'),
]

# -O2 also turns `work(){burn_a(); burn_b();}` into a tail jump to burn_b, after which `main;burn_b`
# *is* the machine stack (no unwinder can show `work`): the workloads keep real calls.
NOTAIL = NO_FRAME_POINTERS + ('-fno-optimize-sibling-calls',)
SECONDS = 4.0


def _receiver(tmp_path, pids, **kw):
    from datadog_checks.host_profiler.receiver.receiver import Receiver, ReceiverConfig

    cfg = dict(samples_per_second=99, drain_interval=0.25, check_interval=0, lock_path=str(tmp_path / 'hp.lock'),
               process_exit_ttl=30.0, pids=list(pids))
    cfg.update(kw)
    tel = Telemetry()
    return Receiver(ReceiverConfig(**cfg), telemetry=tel), tel


def _stacks(col, pid, sym):
    """[(root-first names, count, truncated)] of the CPU samples of pid."""
    proc = col.processes.get(pid)
    assert proc is not None, pid
    out = []
    for s in col.samples:
        if s.pid != pid or s.value_type != CPU_SAMPLES or not s.user_stack:
            continue
        names = [f.display_name for f in sym.symbolize_user(proc, s.user_stack)]
        out.append((names[::-1], s.count, s.truncated))
    return out


def _share(stacks, pred):
    total = sum(c for _, c, _ in stacks)
    good = sum(c for s, c, t in stacks if pred(s, t))
    return good / float(total or 1), total


def _top(stacks, n=6):
    c = collections.Counter()
    for s, k, t in stacks:
        c[';'.join(s[-8:]) + (' [truncated]' if t else '')] += k
    return c.most_common(n)


@pytest.fixture(scope='module')
def profiled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('unwind_it')
    bins = {
        'split': compile_c('split.c', tmp, cflags=NOTAIL),
        'recurse': compile_c('recurse.c', tmp, cflags=NOTAIL, defines=('DEPTH=40',)),
        'qsort': compile_c('qsort_cb.c', tmp, cflags=NOTAIL),
    }
    procs = {name: subprocess.Popen([b, str(SECONDS + 30)]) for name, b in bins.items()}
    procs['python'] = subprocess.Popen(['/usr/bin/python3', '-c', 'while True: pass'])
    try:
        time.sleep(0.3)
        # the user-space unwinder (the in-kernel one: tests/receiver/test_kernel_unwind.py)
        rx, tel = _receiver(tmp, [p.pid for p in procs.values()], unwinding='auto', kernel_unwind_memory_mb=0)
        rx.start()
        try:
            time.sleep(SECONDS)
            col = rx.collect()
        finally:
            rx.stop(block=True, timeout=30)
        sym = Symbolizer(Telemetry())  # while the workloads live (files are opened through /proc/PID)
        stacks = {name: _stacks(col, p.pid, sym) for name, p in procs.items()}
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
    return stacks, tel, col


def test_split_main_work_burn(profiled):
    stacks = profiled[0]['split']
    share, total = _share(stacks, lambda s, t: not t and s[0] == '_start'
                          and s[-3:] in (['main', 'work', 'burn_a'], ['main', 'work', 'burn_b']))
    assert total >= 50, total
    assert share >= 0.95, (share, _top(stacks))
    a, _ = _share(stacks, lambda s, t: s[-1] == 'burn_a')
    assert 0.6 <= a <= 0.9, a  # the 75/25 split survives


def test_recursion_depth_40_whole(profiled):
    stacks = profiled[0]['recurse']
    share, total = _share(stacks, lambda s, t: not t and s[0] == '_start' and s.count('recurse') == 40
                          and s[s.index('recurse') - 1] == 'main')
    assert total >= 50, total
    assert share >= 0.95, (share, [(len(s), s.count('recurse'), t) for s, _, t in stacks][:10])


def test_python_busy_loop(profiled):
    stacks = profiled[0]['python']
    share, total = _share(stacks, lambda s, t: not t and s[0] == '_start' and '_PyEval_EvalFrameDefault' in s
                          and ('main' in s or 'Py_BytesMain' in s))
    assert total >= 50, total
    assert share >= 0.90, (share, _top(stacks))


def test_qsort_callback_whole(profiled):
    stacks = profiled[0]['qsort']
    cb = [(s, c, t) for s, c, t in stacks if 'compare' in s]
    assert sum(c for _, c, _ in cb) >= 0.5 * sum(c for _, c, _ in stacks)
    share, _ = _share(cb, lambda s, t: not t and s[0] == '_start' and 'sort_round' in s
                      and s[s.index('sort_round') - 1] == 'main' and s[s.index('sort_round') + 1] in ('qsort', 'qsort_r')
                      and s.index('compare') > s.index('sort_round') + 2)
    assert share >= 0.95, (share, _top(cb))


def test_unwind_telemetry(profiled):
    _, tel, col = profiled
    totals = tel.totals()
    assert tel.total('unwind.samples') >= 200
    assert totals.get('unwind.samples{result:complete}', 0) >= 0.9 * tel.total('unwind.samples')
    assert tel.total('unwind.frames') > tel.total('unwind.samples') * 5
    assert tel.total('unwind.duration') > 0
    assert tel.total('unwind.cfi.cache.misses') >= 3  # at least libc, python3.11, a workload
    assert 'user_stack_copy_lost' in col.lost


def test_frame_pointers_mode_unchanged(tmp_path):
    """frame_pointers: the kernel walks frame pointers, nothing is copied or unwound in user space;
    the no-frame-pointer workload then loses `work` (or more)."""
    binary = compile_c('split.c', tmp_path, cflags=NOTAIL)
    p = subprocess.Popen([binary, '30'])
    try:
        time.sleep(0.2)
        rx, tel = _receiver(tmp_path, [p.pid], unwinding='frame_pointers')
        rx.start()
        try:
            time.sleep(2.0)
            col = rx.collect()
        finally:
            rx.stop(block=True, timeout=30)
        stacks = _stacks(col, p.pid, Symbolizer(Telemetry()))
    finally:
        p.kill()
        p.wait()
    assert tel.total('unwind.samples') == 0
    share, total = _share(stacks, lambda s, t: s[-3:] in (['main', 'work', 'burn_a'], ['main', 'work', 'burn_b']))
    assert total >= 20 and share < 0.5, (share, _top(stacks))


def test_ring_buffer_losses_counted(tmp_path):
    """A ring buffer too small for the copies: losses are counted and the samples still arrive
    (counted in the kernel with frame pointers instead)."""
    binary = compile_c('split.c', tmp_path, cflags=NOTAIL)
    procs = [subprocess.Popen([binary, '30']) for _ in range(2)]
    try:
        time.sleep(0.2)
        rx, tel = _receiver(tmp_path, [p.pid for p in procs], unwinding='dwarf', samples_per_second=999,
                            stack_copy_ring_pages=8, poll_timeout_ms=500, drain_interval=1.0)
        rx.start()
        try:
            time.sleep(2.5)
        finally:
            rx.stop(block=True, timeout=30)
        col = rx.collect()  # after the stop's final drains: everything telemetry counted
    finally:
        for p in procs:
            p.kill()
            p.wait()
    lost = col.lost.get('user_stack_copy_lost', 0)
    got = sum(s.count for s in col.samples if s.value_type == CPU_SAMPLES)
    assert lost > 0, col.lost
    assert got == tel.total('unwind.samples') + lost, (got, tel.total('unwind.samples'), lost)
