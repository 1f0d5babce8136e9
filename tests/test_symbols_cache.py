# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The shared symbol cache: memory budget with LRU eviction, per-process mapping cache."""
import shutil
import subprocess

import pytest

from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.symbols.elf import read_elf_info
from datadog_checks.host_profiler.receiver.processes import ProcMapping, ProcessInfo
from datadog_checks.host_profiler.symbols.symbolizer import Symbolizer

pytestmark = pytest.mark.skipif(not shutil.which('gcc'), reason='needs gcc')

SRC = '\n'.join('__attribute__((noinline)) int f{0}(int x) {{ return x * {0} + 1; }}'.format(i) for i in range(200))
SRC += '\nint main(void) { return f1(2); }\n'


@pytest.fixture(scope='module')
def variants(tmp_path_factory):
    d = tmp_path_factory.mktemp('variants')
    (d / 'v.c').write_text(SRC)
    base = str(d / 'base')
    subprocess.run(['gcc', '-O0', '-o', base, str(d / 'v.c')], check=True)
    info = read_elf_info(base)
    note = info.sections['.note.gnu.build-id']
    data = bytearray(open(base, 'rb').read())
    out = []
    for i in range(40):
        data[note.offset + 16:note.offset + 20] = i.to_bytes(4, 'little')  # a distinct build id
        p = d / 'v{}'.format(i)
        p.write_bytes(bytes(data))
        out.append(str(p))
    text = [s for s in info.loads if s.executable][0]
    f7 = [l.split() for l in subprocess.run(['nm', base], stdout=subprocess.PIPE).stdout.decode().splitlines()]
    f7 = [int(a, 16) for a, _t, n in (x for x in f7 if len(x) == 3) if n == 'f7'][0]
    return out, text, f7


def fake_process(paths, text, pid=2 ** 22 + 21):
    maps = []
    for i, p in enumerate(paths):
        start = 0x10000000 * (i + 1) + text.offset
        maps.append(ProcMapping(start, start + text.filesz, text.offset, p))
    return ProcessInfo(pid, 1, mappings=maps, root='/')


def addr_in(proc, i, text, vaddr):
    return proc.mappings[i].start + (vaddr - text.vaddr)


def test_budget_and_eviction(variants):
    paths, text, f7 = variants
    proc = fake_process(paths, text)
    t = Telemetry()
    probe = Symbolizer(t)
    probe.symbolize_user(proc, [addr_in(proc, 0, text, f7)])
    one = probe.cache_bytes
    budget = one * 5  # room for a few tables + headers
    t = Telemetry()
    s = Symbolizer(t, memory_budget_bytes=budget)
    for i in range(len(paths)):
        frames = s.symbolize_user(proc, [addr_in(proc, i, text, f7)])
        assert frames[0].function == 'f7'
        assert s.cache_bytes <= budget
    assert t.total('symbols.cache.evictions') > 0
    gauges = [m for m in t.snapshot() if m.name == 'symbols.cache.bytes']
    assert gauges and gauges[0].value <= budget
    # distinct build ids -> distinct tables
    assert len({f.mapping.build_id for i in range(3) for f in s.symbolize_user(proc, [addr_in(proc, i, text, f7)])}) == 3


def test_same_identity_shared_and_hits(variants):
    paths, text, f7 = variants
    t = Telemetry()
    s = Symbolizer(t)
    # two processes mapping the same file: one table load
    p1 = fake_process(paths[:1], text, pid=2 ** 22 + 31)
    p2 = fake_process(paths[:1], text, pid=2 ** 22 + 32)
    s.symbolize_user(p1, [addr_in(p1, 0, text, f7)])
    s.symbolize_user(p2, [addr_in(p2, 0, text, f7)])
    loaded = sum(v for k, v in t.totals().items() if k.startswith('symbols.tables.loaded'))
    assert loaded == 1
    assert t.total('symbols.cache.hits') >= 1 and t.total('symbols.cache.misses') >= 1


def test_mapping_cache_invalidated_when_list_changes(variants):
    paths, text, f7 = variants
    s = Symbolizer(Telemetry())
    proc = fake_process(paths[:1], text, pid=2 ** 22 + 41)
    a = addr_in(proc, 0, text, f7)
    assert s.symbolize_user(proc, [a])[0].function == 'f7'
    proc.mappings = []  # new list object (e.g. after exec): re-read
    assert s.symbolize_user(proc, [a])[0].function == ''
    proc.mappings = fake_process(paths[:1], text).mappings
    assert s.symbolize_user(proc, [a])[0].function == 'f7'


def test_oversized_table_not_cached(variants):
    paths, text, f7 = variants
    t = Telemetry()
    s = Symbolizer(t, memory_budget_bytes=1000)
    proc = fake_process(paths[:1], text, pid=2 ** 22 + 51)
    frames = s.symbolize_user(proc, [addr_in(proc, 0, text, f7), addr_in(proc, 0, text, f7) + 1])
    assert [f.function for f in frames] == ['f7', 'f7']
    assert s.cache_bytes <= 1000


def test_on_new_file_called_once(variants):
    paths, text, f7 = variants
    seen = []
    s = Symbolizer(Telemetry(), on_new_file=lambda info, path, proc: seen.append(info.gnu_build_id))
    proc = fake_process(paths[:3], text, pid=2 ** 22 + 61)
    for _ in range(2):
        s.symbolize_user(proc, [addr_in(proc, i, text, f7) for i in range(3)])
    assert len(seen) == 3 and len(set(seen)) == 3
