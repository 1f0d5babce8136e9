# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Fuzz every symbol parser with hypothesis: none may raise (beyond its documented error
types) or hang on corrupted input.

Each hypothesis example is one structured mutation of a valid input, plus ``BATCH - 1``
further random mutations derived from a hypothesis-drawn ``Random`` (hypothesis' per-example
overhead, ~1 ms, would otherwise dominate). Inputs in total: ELF 20k, symtab 20k,
pclntab 25k, perf map 25k, gnu_debugdata 10k = 100k, in ~20 s. Scale with
HOST_PROFILER_FUZZ_SCALE (e.g. 0.1 for a quick run, 10 for a long one)."""
import io
import lzma
import os
import shutil
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.symbols.debuginfo import decompress_debugdata
from datadog_checks.host_profiler.host.elf import read_elf_info, read_elf_info_bytes
from datadog_checks.host_profiler.symbols.gopclntab import PclntabError, parse_pclntab, scan_pclntab
from datadog_checks.host_profiler.symbols.perfmap import PerfMap
from datadog_checks.host_profiler.symbols.symtab import load_symbols

SCALE = float(os.environ.get('HOST_PROFILER_FUZZ_SCALE', '1'))
BATCH = 20
EXAMPLES = {'elf': 1000, 'symtab': 1000, 'pclntab': 1250, 'perfmap': 1250, 'debugdata': 500}
assert sum(EXAMPLES.values()) * BATCH >= 100000
RANDOMS = st.randoms(use_true_random=False)


def fuzz_settings(kind):
    return settings(max_examples=max(10, int(EXAMPLES[kind] * SCALE)), deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


def derived(rnd, base, first, lo=0, hi=None):
    """``first`` then BATCH - 1 random mutations of ``base`` (bytes overwritten in [lo, hi),
    sometimes truncated)."""
    yield first
    hi = len(base) if hi is None else hi
    for _ in range(BATCH - 1):
        data = bytearray(base)
        for _ in range(rnd.randint(1, 4)):
            pos = rnd.randrange(lo, max(hi, lo + 1))
            n = rnd.randint(1, 8)
            data[pos:pos + n] = bytes(rnd.getrandbits(8) for _ in range(n))
        if rnd.random() < 0.2:
            data = data[: rnd.randrange(len(data) + 1)]
        yield bytes(data)


def mutate(base, edits, cut):
    data = bytearray(base)
    for pos, chunk in edits:
        pos %= max(len(data), 1)
        data[pos:pos + len(chunk)] = chunk
    if cut:
        data = data[: cut % (len(data) + 1)]
    return bytes(data)


EDITS = st.lists(st.tuples(st.integers(0, 1 << 20), st.binary(min_size=1, max_size=8)), max_size=6)
CUT = st.integers(0, 1 << 20)


@pytest.fixture(scope='module')
def small_elf(tmp_path_factory):
    if not shutil.which('gcc'):
        pytest.skip('needs gcc')
    d = tmp_path_factory.mktemp('fuzz')
    (d / 't.c').write_text('int f(int x){return x+1;} int main(void){return f(1);}\n')
    out = str(d / 't')
    subprocess.run(['gcc', '-O0', '-s', '-Wl,--build-id', '-o', out, str(d / 't.c')], check=True)
    subprocess.run(['gcc', '-O0', '-Wl,--build-id', '-o', out + '.sym', str(d / 't.c')], check=True)
    return open(out, 'rb').read(), open(out + '.sym', 'rb').read()


def test_fuzz_elf_reader(small_elf):
    base = small_elf[0]
    # mutations focused on the headers most of the time
    hdr_edits = st.lists(st.tuples(st.integers(0, 128), st.binary(min_size=1, max_size=8)), max_size=4)
    t = Telemetry()

    @fuzz_settings('elf')
    @given(st.one_of(EDITS, hdr_edits), st.one_of(st.just(0), CUT), RANDOMS)
    def run(edits, cut, rnd):
        hi = 64 if rnd.random() < 0.3 else None
        for data in derived(rnd, base, mutate(base, edits, cut), 0, hi):
            info = read_elf_info_bytes(data, 'x', t)
            if info is not None:
                _ = (info.file_key, info.symbol_source(True), info.file_offset_to_vaddr(0x1000), info.build_id)

    run()


def test_fuzz_symtab(small_elf):
    base = small_elf[1]
    info = read_elf_info_bytes(base, 'x')
    sym = info.sections['.symtab']
    strtab = info.linked(sym)
    lo = min(sym.offset, strtab.offset)
    hi = max(sym.offset + sym.size, strtab.offset + strtab.size)
    in_tables = st.lists(st.tuples(st.integers(lo, hi), st.binary(min_size=1, max_size=8)), min_size=1, max_size=8)

    @fuzz_settings('symtab')
    @given(st.one_of(in_tables, EDITS), st.one_of(st.just(0), CUT), st.booleans(), RANDOMS)
    def run(edits, cut, reparse, rnd):
        for data in derived(rnd, base, mutate(base, edits, cut), lo, hi):
            i = read_elf_info_bytes(data, 'x') if reparse else info
            if i is None:
                continue
            try:
                table = load_symbols(io.BytesIO(data), i)
            except (ValueError, struct.error, OverflowError, MemoryError):
                continue
            for addr in (0, 0x1000, 0x1139, 2 ** 63):
                table.lookup(addr)

    run()


def _pcln_base():
    from test_symbols_go import FUNCS, build_pclntab  # noqa: F401 - same directory

    return [build_pclntab(v, FUNCS, 0x401500) for v in ('1.2', '1.16', '1.18', '1.20')]


def _pcln_bases():
    try:
        return _pcln_base()
    except ImportError:
        import importlib.util

        spec = importlib.util.spec_from_file_location('tsg', os.path.join(os.path.dirname(__file__), 'test_gopclntab.py'))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return [mod.build_pclntab(v, mod.FUNCS, 0x401500) for v in ('1.2', '1.16', '1.18', '1.20')]


def test_fuzz_pclntab():
    bases = _pcln_bases()
    small_edits = st.lists(st.tuples(st.integers(0, 200), st.binary(min_size=1, max_size=8)), max_size=6)

    @fuzz_settings('pclntab')
    @given(st.integers(0, 3), small_edits, st.one_of(st.just(0), st.integers(0, 400)), st.booleans(), RANDOMS)
    def run(which, edits, cut, scan, rnd):
        for data in derived(rnd, bases[which], mutate(bases[which], edits, cut)):
            if scan:
                table = scan_pclntab(b'\x00' * 7 + data)
            else:
                try:
                    table = parse_pclntab(data)
                except (PclntabError, struct.error, IndexError, OverflowError):
                    continue
            if table is not None:
                for pc in (0, 0x401000, 0x401181, 0x4014FF):
                    table.lookup(pc)

    run()


def test_fuzz_perfmap(tmp_path):
    line = st.one_of(
        st.binary(max_size=60),
        st.builds(lambda a, b, n: '{:x} {:x} {}'.format(a, b, n).encode(), st.integers(0, 2 ** 64), st.integers(0, 2 ** 20),
                  st.text(max_size=20)),
    )
    t = Telemetry()

    @fuzz_settings('perfmap')
    @given(st.lists(line, max_size=8), st.binary(max_size=10), RANDOMS)
    def run(lines, tail, rnd):
        first = b'\n'.join(lines) + b'\n' + tail
        for data in derived(rnd, first, first):
            pm = PerfMap('/nonexistent', t)
            pm.feed(data)
            for addr in (0, 0x1000, 2 ** 63):
                pm.lookup(addr)
            assert pm.offset <= len(data)

    run()


def test_fuzz_gnu_debugdata(small_elf):
    mini = lzma.compress(small_elf[1], format=lzma.FORMAT_XZ)

    @fuzz_settings('debugdata')
    @given(st.lists(st.tuples(st.integers(0, len(mini)), st.binary(min_size=1, max_size=4)), max_size=4),
           st.one_of(st.just(0), st.integers(0, len(mini))), RANDOMS)
    def run(edits, cut, rnd):
        for data in derived(rnd, mini, mutate(mini, edits, cut)):
            try:
                out = decompress_debugdata(data)
            except (lzma.LZMAError, ValueError, EOFError):
                continue
            info = read_elf_info_bytes(out, 'mini')
            if info is not None:
                try:
                    load_symbols(io.BytesIO(out), info, ('.symtab',))
                except (ValueError, struct.error, OverflowError):
                    pass

    run()


def test_read_elf_info_on_files_never_raises(tmp_path, small_elf):
    for i, size in enumerate((0, 3, 4, 52, 64, 100, 1000)):
        p = tmp_path / 'f{}'.format(i)
        p.write_bytes(small_elf[0][:size])
        assert read_elf_info(str(p)) is None
