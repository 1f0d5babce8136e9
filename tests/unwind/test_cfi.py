# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""CFI compilation (unwind/cfi.py) on real binaries, checked against binutils' readelf."""
import re
import shutil
import subprocess

import pytest

from datadog_checks.host_profiler.unwind import cfi
from datadog_checks.host_profiler.unwind.cfi import (
    BP_AT_CFA, BP_SAME, CFA_BP, CFA_PLT, CFA_SIGNAL, CFA_SP, RA_UNDEFINED, build_cfi_table, read_elf_sections,
)
from tests.workloads import NO_FRAME_POINTERS, compile_c

pytestmark = pytest.mark.unit

LIBC = '/lib/x86_64-linux-gnu/libc.so.6'
PYTHON = '/usr/bin/python3.11'


def _readelf_rows(path):
    """(loc, {column: rule}) rows of `readelf -wF` for FDEs (CIE rows skipped)."""
    out = subprocess.run(['readelf', '-wF', path], capture_output=True, text=True).stdout  # rc 1 on libc's odd asm rows
    cols, in_fde = None, False
    for line in out.splitlines():
        if re.match(r'^[0-9a-f]+ [0-9a-f]+ [0-9a-f]+ FDE ', line):
            in_fde = True
            continue
        if re.match(r'^[0-9a-f]+ ([0-9a-f]+ [0-9a-f]+ CIE|ZERO)', line):
            in_fde = False
            continue
        if line.strip().startswith('LOC'):
            cols = line.split()
            continue
        m = re.match(r'^([0-9a-f]{8,16}) (.*)$', line)
        if m and cols and in_fde:
            yield int(m.group(1), 16), dict(zip(cols[1:], m.group(2).split()))


@pytest.mark.skipif(not shutil.which('readelf'), reason='binutils readelf not installed')
@pytest.mark.parametrize('path', [LIBC, PYTHON])
def test_table_matches_readelf(path):
    table, _ = build_cfi_table(path)
    checked = wrong = 0
    for loc, d in _readelf_rows(path):
        rule = table.lookup(loc)
        assert rule is not None, hex(loc)
        kind, off, ra, bk, bo = rule
        cfa_s, ra_s, rbp_s = d['CFA'], d.get('ra', 'u'), d.get('rbp', 'u')
        if cfa_s.startswith('rsp+') or cfa_s.startswith('rbp+'):
            ok = kind == (CFA_SP if cfa_s[1] == 's' else CFA_BP) and off == int(cfa_s[4:])
            if ra_s.startswith('c'):
                ok &= ra == int(ra_s[1:])
            if rbp_s.startswith('c'):
                ok &= bk == BP_AT_CFA and bo == int(rbp_s[1:])
            elif rbp_s == 'u':
                ok &= bk == BP_SAME
            checked += 1
            wrong += not ok
    assert checked > 1000
    # readelf's interpretation differs on a handful of hand-written asm rows (register-in-register rules)
    assert wrong <= 5, (checked, wrong)


def test_libc_table_is_whole_and_compact():
    # how fast the cold build is, is measured in benchmarks/unwind_bench.py (not a timed test)
    table, info = build_cfi_table(LIBC)
    assert len(table) > 10000 and table.bad_fdes == 0
    assert info.build_id
    # compact: rule-interned rows
    assert table.nbytes < 24 * len(table)


def test_special_rows_libc():
    table, _ = build_cfi_table(LIBC)
    kinds = {r[0] for r in table.rules}
    assert CFA_SIGNAL in kinds  # __restore_rt (CIE augmentation 'S')
    assert any(r[2] == RA_UNDEFINED for r in table.rules)  # clone/_start-like outermost frames
    assert any(k >= CFA_PLT for k in kinds)  # .plt expression


def test_plt_rule_python():
    table, info = build_cfi_table(PYTHON)
    stype, addr, off, size = info.sections['.plt']
    rule = table.lookup(addr + 0x10 + 2)  # inside a PLT entry
    assert rule is not None and rule[0] >= CFA_PLT and rule[1] == 8


def test_function_entry_row(tmp_path):
    binary = compile_c('split.c', tmp_path, cflags=NO_FRAME_POINTERS)
    table, info = build_cfi_table(binary)
    syms = subprocess.run(['nm', binary], capture_output=True, text=True).stdout
    addr = {ln.split()[2]: int(ln.split()[0], 16) for ln in syms.splitlines() if len(ln.split()) == 3}
    for name in ('main', 'work', 'burn_a'):
        kind, off, ra, bk, bo = table.lookup(addr[name])
        assert (kind, off, ra) == (CFA_SP, 8, -8), name  # before any push: CFA = rsp + 8


def test_no_cfi_and_not_elf(tmp_path):
    p = tmp_path / 'x'
    p.write_bytes(b'not an elf' * 10)
    with pytest.raises(cfi.CfiError):
        build_cfi_table(str(p))
    with pytest.raises(cfi.CfiError):
        read_elf_sections(b'\x7fELF' + b'\0' * 10)


def test_debug_frame_only(tmp_path):
    """-fno-asynchronous-unwind-tables -g: no .eh_frame for user code, .debug_frame instead."""
    binary = compile_c('split.c', tmp_path, cflags=NO_FRAME_POINTERS + ('-g', '-fno-asynchronous-unwind-tables',
                                                                         '-fno-unwind-tables'))
    table, info = build_cfi_table(binary)
    assert '.debug_frame' in info.sections
    assert 'debug_frame' in table.source
    syms = subprocess.run(['nm', binary], capture_output=True, text=True).stdout
    work = [int(ln.split()[0], 16) for ln in syms.splitlines() if ln.endswith(' work')][0]
    assert table.lookup(work) is not None


def test_lazy_table_matches_compiled():
    """Big .eh_frame sections get a LazyCfiTable (FDEs decoded on first use through .eh_frame_hdr):
    same answers as the compiled table (the cold cost of each: benchmarks/unwind_bench.py)."""
    lazy, _ = build_cfi_table(PYTHON)
    assert isinstance(lazy, cfi.LazyCfiTable)
    full, _ = build_cfi_table(PYTHON, lazy=False)
    assert isinstance(full, cfi.CfiTable)
    rows = full.rows()
    for k in range(0, len(rows) - 1, 7):
        a = rows[k][0]
        for v in (a, (a + rows[k + 1][0]) // 2, a - 1):
            assert lazy.lookup(v) == full.lookup(v), hex(v)
    assert lazy.lookup(0) is None and lazy.lookup(1 << 60) is None
