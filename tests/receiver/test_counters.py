# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Counters: the per-CPU counter arrays (``stats``, ``tc_stats``) read in one batch call."""
import ctypes as ct

from datadog_checks.host_profiler.receiver.program import Counters


def _table(n):
    from bcc import BPF

    b = BPF(text='BPF_PERCPU_ARRAY(counts, u64, {}); int f(void *c) {{ return 0; }}'.format(n))
    t = b['counts']
    for i in range(n):
        t[ct.c_int(i)] = (ct.c_uint64 * t.total_cpu)(*[1000 * i + c + 1 for c in range(t.total_cpu)])
    return b, t


def _expected(t, n):
    return [sum(1000 * i + c + 1 for c in range(t.total_cpu)) for i in range(n)]


def test_batch_read_sums_every_cpu(requires_bpf):
    b, t = _table(8)
    c = Counters(t, tuple('abcdefgh'))
    assert c._batch is not None
    assert c.read() == _expected(t, 8)
    assert c.delta() == _expected(t, 8)
    t[ct.c_int(3)] = (ct.c_uint64 * t.total_cpu)(*[1000 * 3 + c + 1 + 5 for c in range(t.total_cpu)])
    assert c.delta() == [0, 0, 0, 5 * t.total_cpu, 0, 0, 0, 0]
    assert c._batch is not None  # never fell back
    b.cleanup()


def test_refused_batch_falls_back_to_per_key_reads(requires_bpf):
    b, t = _table(4)
    c = Counters(t, tuple('abcd'))

    class Refusing:
        @staticmethod
        def bpf_lookup_batch(*_):
            ct.set_errno(22)
            return -1

    c._batch = (Refusing,) + c._batch[1:]
    assert c.read() == _expected(t, 4)
    assert c._batch is None  # BCC's way from then on
    assert c.read() == _expected(t, 4)
    b.cleanup()
