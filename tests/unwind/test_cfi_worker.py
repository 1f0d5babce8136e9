# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The child-process CFI compile (unwind/cfi_worker.py) gives the same stack deltas as the
in-process one, for open files and in-memory images, and reports a bad file without failing the rest."""
import os
import sys

import pytest

from datadog_checks.host_profiler.unwind.cfi import build_cfi_table
from datadog_checks.host_profiler.unwind.cfi_worker import build_in_child
from datadog_checks.host_profiler.unwind.stack_deltas import RuleSet, compile_deltas

LIBC = '/lib/x86_64-linux-gnu/libc.so.6'


@pytest.mark.skipif(not os.path.exists(LIBC), reason='no libc.so.6 at the Debian path')
def test_child_compile_equals_in_process(tmp_path):
    exe = os.path.realpath(sys.executable)
    bad = tmp_path / 'not-elf'
    bad.write_bytes(b'\0' * 4096)
    with open(LIBC, 'rb') as a, open(exe, 'rb') as b, open(bad, 'rb') as c:
        with open(LIBC, 'rb') as f:
            image = f.read()
        results, cpu = build_in_child([a, b, c, image])
    assert cpu > 0
    assert results[2][0] == 'error'
    for path, res in ((LIBC, results[0]), (exe, results[1]), (LIBC, results[3])):
        table, loads = res
        ref, info = build_cfi_table(path, lazy=False)
        assert loads == tuple(tuple(x) for x in info.loads)
        r1, r2 = RuleSet(65536), RuleSet(65536)
        d1, d2 = compile_deltas(table, r1), compile_deltas(ref, r2)
        assert d1.base == d2.base and d1.rows == d2.rows and len(d1) > 100
        assert r1.take_pending() == r2.take_pending()
