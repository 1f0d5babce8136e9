# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Fuzzing: corrupted .eh_frame data and ELF images, random registers and stack bytes.
Never an exception out of the parser/unwinder, never an endless loop, bounded steps."""
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datadog_checks.host_profiler.unwind import cfi
from datadog_checks.host_profiler.unwind.cfi import (
    CfiTable, build_cfi_table, merge_fdes, parse_frame_section, read_elf_sections,
)
from datadog_checks.host_profiler.unwind.unwinder import RESULTS, table_finder, unwind_ex
from tests.workloads import NO_FRAME_POINTERS, compile_c

pytestmark = pytest.mark.unit

LIBC = '/lib/x86_64-linux-gnu/libc.so.6'
FAST = settings(max_examples=300, deadline=2000, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope='module')
def small_elf(tmp_path_factory):
    binary = compile_c('split.c', tmp_path_factory.mktemp('fz'), cflags=NO_FRAME_POINTERS)
    with open(binary, 'rb') as f:
        return f.read()


@pytest.fixture(scope='module')
def libc_eh():
    with open(LIBC, 'rb') as f:
        data = f.read()
    info = read_elf_sections(data)
    _, addr, off, size = info.sections['.eh_frame']
    return data[off:off + size], addr


@pytest.fixture(scope='module')
def libc_table():
    return build_cfi_table(LIBC)[0]


def _mutate(data, seed, flips):
    rnd = random.Random(seed)
    b = bytearray(data)
    for _ in range(flips):
        i = rnd.randrange(len(b))
        b[i] = rnd.randrange(256)
    return bytes(b)


@FAST
@given(seed=st.integers(0, 2 ** 32), flips=st.integers(1, 40), start=st.integers(0, 8192))
def test_corrupted_eh_frame(libc_eh, seed, flips, start):
    data, addr = libc_eh
    chunk = _mutate(data[start:start + 6000], seed, flips)
    fdes, bad = parse_frame_section(chunk, addr + start, True)
    table = merge_fdes([fdes], 'eh_frame', bad)
    assert list(table.starts) == sorted(table.starts)
    table.lookup(addr)


@FAST
@given(data=st.binary(min_size=0, max_size=600), debug=st.booleans())
def test_random_frame_section(data, debug):
    fdes, bad = parse_frame_section(data, 0x1000, not debug)
    merge_fdes([fdes])


@FAST
@given(seed=st.integers(0, 2 ** 32), flips=st.integers(1, 30), header=st.booleans())
def test_corrupted_elf(small_elf, seed, flips, header):
    data = small_elf
    if header:  # aim at the ELF/program/section headers
        rnd = random.Random(seed)
        b = bytearray(data)
        shoff = struct.unpack_from('<Q', data, 40)[0]
        for _ in range(flips):
            region = rnd.choice([(0, 64), (64, 64 + 56 * 13), (shoff, len(data))])
            i = rnd.randrange(region[0], max(region[0] + 1, min(region[1], len(b))))
            b[i] = rnd.randrange(256)
        data = bytes(b)
    else:
        data = _mutate(data, seed, flips)
    try:
        table, _ = build_cfi_table(data=data)
    except cfi.CfiError:
        return
    assert isinstance(table, CfiTable)


@FAST
@given(ip=st.integers(0, 2 ** 64 - 1), sp=st.integers(0, 2 ** 64 - 1), bp=st.integers(0, 2 ** 64 - 1),
       stack=st.binary(max_size=2048), base_delta=st.integers(-64, 64), max_frames=st.integers(1, 127))
def test_random_stack_random_regs(libc_table, ip, sp, bp, stack, base_delta, max_frames):
    find = table_finder([(0, 2 ** 64, libc_table, 0)])
    addrs, result = unwind_ex((ip, sp, bp), stack, sp + base_delta, find, max_frames)
    assert result in RESULTS and len(addrs) <= max_frames


@FAST
@given(words=st.lists(st.integers(0, 2 ** 64 - 1), max_size=256), leaf=st.integers(0, 0x3FFFFF),
       bp_index=st.integers(0, 255), plausible=st.integers(0, 2 ** 32))
def test_plausible_stacks(libc_table, words, leaf, bp_index, plausible):
    """Stacks made of return-address-like values and self-pointing frame pointers (cycles)."""
    sp = 0x7FFD00000000
    rnd = random.Random(plausible)
    words = list(words) + [0] * (256 - len(words))
    for i in range(len(words)):
        c = rnd.random()
        if c < 0.3:
            words[i] = rnd.randrange(0x20000, 0x1C0000)  # a pc inside libc's text (bias 0)
        elif c < 0.5:
            words[i] = sp + 8 * rnd.randrange(0, 256)  # a pointer into the stack (maybe itself)
    stack = struct.pack('<256Q', *words)
    find = table_finder([(0, 0x200000, libc_table, 0)])
    for fp in (True, False):
        addrs, result = unwind_ex((0x20000 + leaf, sp, sp + 8 * bp_index), stack, sp, find, 127, fp)
        assert result in RESULTS and len(addrs) <= 127


def test_frame_pointer_cycle_terminates():
    sp = 0x7FFD00000000
    stack = struct.pack('<4Q', sp, 0x401000, sp, 0x401000)  # bp -> itself
    addrs, result = unwind_ex((0x401000, sp, sp), stack, sp, lambda a: None)
    assert result == 'failed' and len(addrs) == 2


def test_random_rules():
    """Any rule tuple, even nonsense, with any stack: bounded and no exception."""
    rnd = random.Random(7)
    for _ in range(3000):
        rules = [cfi.NO_CFI] + [(rnd.choice([0, 1, 2, 3, 4, 5, 16, 27, 31]), rnd.randrange(-64, 64),
                                 rnd.choice([-8, -16, 0, 8, cfi.RA_UNDEFINED, cfi.RA_UNSUPPORTED]),
                                 rnd.randrange(0, 6), rnd.randrange(-64, 64)) for _ in range(4)]
        from array import array
        starts = array('Q', sorted(rnd.sample(range(0, 0x1000, 16), 5)))
        table = CfiTable(starts, array('H', [rnd.randrange(len(rules)) for _ in starts]), rules)
        sp = 0x7FFD00000000
        stack = bytes(rnd.randrange(256) for _ in range(512))
        addrs, result = unwind_ex((rnd.randrange(0, 0x1000), sp, sp + rnd.randrange(-64, 600)), stack,
                                  sp, table_finder([(0, 0x1000, table, 0)]))
        assert result in RESULTS and len(addrs) <= 127


@pytest.fixture(scope='module')
def libc_bytes():
    with open(LIBC, 'rb') as f:
        return f.read()


@FAST
@given(seed=st.integers(0, 2 ** 32), flips=st.integers(1, 60), where=st.sampled_from(['hdr', 'eh_frame']),
       probes=st.lists(st.integers(0, 0x200000), min_size=1, max_size=30))
def test_corrupted_lazy_table(libc_bytes, seed, flips, where, probes):
    info = read_elf_sections(libc_bytes)
    _, _, off, size = info.sections['.eh_frame_hdr' if where == 'hdr' else '.eh_frame']
    rnd = random.Random(seed)
    b = bytearray(libc_bytes)
    for _ in range(flips):
        b[off + rnd.randrange(size)] = rnd.randrange(256)
    table = cfi.lazy_table(bytes(b), info)
    if table is None:
        return
    for v in probes:
        rule = table.lookup(v)
        assert rule is None or len(rule) == 5
