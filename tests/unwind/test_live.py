# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The unwinder on real stacks without BPF: a live process is stopped with ptrace, its registers
and the top of its stack copied (what the BPF program hands over per sample), then unwound with
the compiled CFI tables and named with the real symbolizer."""
import collections
import os
import subprocess
import time

import pytest

from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.receiver.processes import read_process
from datadog_checks.host_profiler.symbols.symbolizer import Symbolizer
from datadog_checks.host_profiler.unwind.unwinder import COMPLETE, TRUNCATED, Unwinder, unwind_ex
from tests.workloads import FRAME_POINTERS, NO_FRAME_POINTERS, compile_c

pytestmark = [pytest.mark.unit, pytest.mark.skipif(os.geteuid() != 0, reason='ptrace of a child needs root here')]

# -O2 turns `work(){burn_a(); burn_b();}` into a tail jump to burn_b: then `main;burn_b` *is* the
# machine stack and no unwinder can show `work`. The workloads keep real calls.
NOTAIL = NO_FRAME_POINTERS + ('-fno-optimize-sibling-calls',)


@pytest.fixture
def env():
    t = Telemetry()
    return t, Unwinder(t), Symbolizer(t)


def sample(env, cmd, n=60, stack_size=16384, wait=0.3, unwinder=None):
    """[(root-first names, result)] of n ptrace snapshots of cmd."""
    from datadog_checks.host_profiler.unwind.snapshot import capture

    t, u, sym = env
    u = unwinder or u
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(wait)
        proc = read_process(p.pid)
        out = []
        for _ in range(n):
            snap = capture(p.pid, stack_size)
            addrs, truncated, result = u.unwind_sample(proc, snap.regs, snap.stack, snap.sp)
            assert truncated == (result != COMPLETE)
            names = [f.display_name for f in sym.symbolize_user(proc, addrs)]
            out.append((list(reversed(names)), result))
            time.sleep(0.002)
        u.flush()
        return out
    finally:
        p.kill()
        p.wait()


def test_split_no_frame_pointers(env, tmp_path):
    binary = compile_c('split.c', tmp_path, cflags=NOTAIL)
    stacks = sample(env, [binary, '30'], n=80)
    good = [s for s, r in stacks if r == COMPLETE and s[0] == '_start' and s[-3:] in (['main', 'work', 'burn_a'],
                                                                                    ['main', 'work', 'burn_b'])]
    assert len(good) >= 0.95 * len(stacks), collections.Counter(';'.join(s) for s, _ in stacks)
    t = env[0]
    assert t.total('unwind.samples') == 80 and t.total('unwind.frames') >= 80 * 5
    assert t.total('unwind.duration') > 0
    assert t.total('unwind.cfi.cache.misses') >= 1


def test_recursion_depth_40_whole(env, tmp_path):
    binary = compile_c('recurse.c', tmp_path, cflags=NOTAIL, defines=('DEPTH=40',))
    stacks = sample(env, [binary, '30'], n=40)
    whole = [s for s, r in stacks if r == COMPLETE and s.count('recurse') == 40 and s[0] == '_start'
             and s[s.index('recurse') - 1] == 'main']
    assert len(whole) >= 0.95 * len(stacks), [(len(s), r) for s, r in stacks]


def test_qsort_callback_whole(env, tmp_path):
    binary = compile_c('qsort_cb.c', tmp_path, cflags=NOTAIL)
    stacks = sample(env, [binary, '30'], n=60)
    in_cb = [s for s, r in stacks if 'compare' in s]
    # about half of its time is in the callback (28 to 40 of 60 seen): enough of them to check each
    assert len(in_cb) >= 0.3 * len(stacks)
    for s in in_cb:
        i = s.index('sort_round')
        assert s[:i + 1][-2:] == ['main', 'sort_round'] and s[0] == '_start', s
        assert s[i + 1] in ('qsort', 'qsort_r'), s  # into libc (no frame pointers) ...
        assert s.index('compare') > i + 2  # ... through glibc's merge sort, back into user code


def test_python_busy_loop(env):
    stacks = sample(env, ['/usr/bin/python3', '-c', 'while True: pass'], n=60)
    good = [s for s, r in stacks if r == COMPLETE and s[0] == '_start' and '_PyEval_EvalFrameDefault' in s
            and ('main' in s or 'Py_BytesMain' in s)]
    assert len(good) >= 0.9 * len(stacks), collections.Counter(';'.join(s) for s, _ in stacks).most_common(5)


def test_signal_frame(env, tmp_path):
    binary = compile_c('sigframe.c', tmp_path, cflags=NOTAIL)
    stacks = sample(env, [binary, '30'], n=150, wait=0.1)
    in_handler = [s for s, r in stacks if 'on_alarm' in s]
    assert in_handler, 'no sample in the signal handler'
    for s in in_handler:
        # main -> loop_outer (interrupted) -> __restore_rt -> on_alarm (-> burn)
        assert s[0] == '_start' and 'main' in s, s
        i = s.index('on_alarm')
        assert s[i - 2] in ('loop_outer', 'main', '__libc_start_call_main') or 'clock_gettime' in s[i - 2], s


def test_vdso(env, tmp_path):
    binary = compile_c('vdso_loop.c', tmp_path, cflags=NOTAIL)
    stacks = sample(env, [binary, '30'], n=60)
    in_vdso = [s for s, r in stacks if any('vdso' in f for f in s)]
    assert in_vdso
    for s in in_vdso:
        # poll_clock calls clock_gettime in a loop; main also calls it once per round
        i = next(i for i, f in enumerate(s) if f.startswith('clock_gettime'))
        assert s[0] == '_start' and s[i - 1] in ('poll_clock', 'main'), s


def test_truncated_copy_is_marked_not_wrong(env, tmp_path):
    binary = compile_c('recurse.c', tmp_path, cflags=NOTAIL, defines=('DEPTH=40',))
    stacks = sample(env, [binary, '30'], n=20, stack_size=512)
    # leaf first, the whole stack is spin, recurse x 1..40, then main and libc's start-up down to
    # _start. A copy too short for it must find a leaf-first part of that, never all of it and never
    # a wrong frame. Most samples stop inside the recursion; one that lands while the recursion is
    # shallow (between two rounds) rightly reaches main and beyond.
    outer = ['main', '__libc_start_call_main', '__libc_start_main', '_start']
    for s, r in stacks:
        assert r == TRUNCATED, (s, r)
        inner = s[::-1]
        assert inner[0] in ('spin', 'recurse'), s
        depth = next((i for i, f in enumerate(inner[1:], 1) if f != 'recurse'), len(inner))
        rest = inner[depth:]
        assert depth - (inner[0] == 'spin') <= 40, s
        assert rest == outer[:len(rest)] and len(rest) < len(outer), s


def test_mixed_frame_pointers_and_cfi(env, tmp_path):
    """auto: a frame-pointer binary whose own CFI is hidden (as if it had none) calling qsort in a
    libc unwound by CFI and back into the binary: both methods within one stack."""
    binary = compile_c('qsort_cb.c', tmp_path, cflags=FRAME_POINTERS + ('-fno-optimize-sibling-calls',))
    t, u, sym = env
    real_finder = u.tables.finder

    class HideExe:
        def walk_state(self, process):
            f = real_finder(process)
            exe = [m for m in process.mappings if m.path == binary]
            lo, hi = min(m.start for m in exe), max(m.end for m in exe)
            return (lambda a: None if lo <= a < hi else f(a)), None, None

    mixed = Unwinder(t, tables=HideExe())
    stacks = sample(env, [binary, '30'], n=40, unwinder=mixed)
    # gcc omits the frame pointer of leaf functions (weigh): sampled there, frame-pointer walking
    # skips its caller (compare), as it always does. Every callback sample must still climb from the
    # exe (frame pointers) through libc's qsort (CFI) back to sort_round/main (frame pointers again).
    in_cb = [s for s, r in stacks if s[-1] in ('compare', 'weigh')]
    assert len(in_cb) >= 0.5 * len(stacks), collections.Counter(';'.join(s[-6:]) + ' ' + r for s, r in stacks)
    # A sample on compare's first two instructions (before `mov %rsp,%rbp`) has the caller's rbp,
    # which libc uses as a general register: frame-pointer walking fails there by nature.
    complete = [s for s, r in stacks if s[-1] in ('compare', 'weigh') and r == COMPLETE]
    assert len(complete) >= 0.9 * len(in_cb), [(s, r) for s, r in stacks if r != COMPLETE]
    for s in complete:
        assert s[0] == '_start', s
        i = s.index('sort_round')
        assert s[i - 1] == 'main' and s[i + 1] in ('qsort', 'qsort_r') and 'msort_with_tmp.part.0' in s, s


def test_dwarf_mode_stops_without_cfi(env, tmp_path):
    binary = compile_c('split.c', tmp_path, cflags=FRAME_POINTERS)
    from datadog_checks.host_profiler.unwind.snapshot import capture

    p = subprocess.Popen([binary, '30'])
    try:
        time.sleep(0.2)
        snap = capture(p.pid)
        addrs, result = unwind_ex(snap.regs, snap.stack, snap.sp, lambda a: None, fp_fallback=False)
        assert addrs == [snap.ip] and result != COMPLETE
        addrs, result = unwind_ex(snap.regs, snap.stack, snap.sp, lambda a: None, fp_fallback=True)
        assert len(addrs) >= 3  # frame pointers alone: burn_x -> work -> main (-> libc garbage ends it)
    finally:
        p.kill()
        p.wait()
