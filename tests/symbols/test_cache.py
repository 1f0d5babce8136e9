# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The shared symbol cache: memory budget with LRU eviction, per-process mapping cache."""
import shutil
import subprocess

import pytest

from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.host.elf import read_elf_info
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
    f7 = [line.split() for line in subprocess.run(['nm', base], stdout=subprocess.PIPE).stdout.decode().splitlines()]
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


def _identified(paths, text, pid, root='/'):
    """Like fake_process, with the dev and inode /proc/PID/maps would show."""
    import os

    maps = []
    for i, p in enumerate(paths):
        st = os.stat(p)
        start = 0x10000000 * (i + 1) + text.offset
        dev = '{:02x}:{:02x}'.format(os.major(st.st_dev), os.minor(st.st_dev))
        maps.append(ProcMapping(start, start + text.filesz, text.offset, p, dev, st.st_ino, 'r-xp'))
    return ProcessInfo(pid, 1, mappings=maps, root=root)


class _Syscalls:
    def __init__(self, monkeypatch):
        import os

        self.opens = self.stats = 0
        real_open, real_stat = os.open, os.stat

        def counting_open(*a, **k):
            self.opens += 1
            return real_open(*a, **k)

        def counting_stat(*a, **k):
            self.stats += 1
            return real_stat(*a, **k)

        monkeypatch.setattr(os, 'open', counting_open)
        monkeypatch.setattr(os, 'stat', counting_stat)


def test_layout_shared_by_processes_with_one_mappings_list(variants, monkeypatch):
    # children forked from one parent get the same mappings list from the registry: the
    # layout is resolved once, not once per process
    paths, text, f7 = variants
    s = Symbolizer(Telemetry())
    first = _identified(paths[:3], text, pid=2 ** 22 + 71)
    addrs = [addr_in(first, i, text, f7) + 4 for i in range(3)]  # inside f7 (return addresses)
    assert [f.function for f in s.symbolize_user(first, addrs)] == ['f7'] * 3
    calls = _Syscalls(monkeypatch)
    for k in range(50):
        child = ProcessInfo(2 ** 22 + 100 + k, 1, mappings=first.mappings, root='/')
        frames = s.symbolize_user(child, addrs)
        assert [f.function for f in frames] == ['f7'] * 3
        assert [f.mapping.build_id for f in frames] == [f.mapping.build_id for f in s.symbolize_user(first, addrs)]
    assert calls.opens == 0 and calls.stats == 0
    assert s.stats()['layouts'] == 1 and s.stats()['processes'] == 51


def test_known_file_resolved_with_one_stat(variants, monkeypatch):
    paths, text, f7 = variants
    s = Symbolizer(Telemetry())
    p1 = _identified(paths[:2], text, pid=2 ** 22 + 81)
    addrs = [addr_in(p1, i, text, f7) + 4 for i in range(2)]
    assert [f.function for f in s.symbolize_user(p1, addrs)] == ['f7'] * 2
    p2 = _identified(paths[:2], text, pid=2 ** 22 + 82)  # its own list (an exec'd process)
    calls = _Syscalls(monkeypatch)
    assert [f.function for f in s.symbolize_user(p2, addrs)] == ['f7'] * 2
    assert calls.opens == 0 and calls.stats == 2


def test_file_rewritten_in_place_is_not_mistaken_for_the_cached_one(variants, tmp_path):
    # same path, same inode (a rebuild often reuses the inode): the identity from the maps
    # (dev, inode, path) is not enough, the size and mtime of the file tell them apart
    import os

    paths, text, f7 = variants
    target = str(tmp_path / 'rebuilt')
    with open(paths[0], 'rb') as f:
        v0 = f.read()
    with open(paths[1], 'rb') as f:
        v1 = f.read()
    with open(target, 'wb') as f:
        f.write(v0)
    s = Symbolizer(Telemetry())
    p1 = _identified([target], text, pid=2 ** 22 + 91)
    a = addr_in(p1, 0, text, f7)
    first = s.symbolize_user(p1, [a])[0]
    ino = os.stat(target).st_ino
    st = os.stat(target)
    with open(target, 'r+b') as f:  # in place: same inode
        f.write(v1)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    assert os.stat(target).st_ino == ino
    p2 = _identified([target], text, pid=2 ** 22 + 92)
    second = s.symbolize_user(p2, [a])[0]
    assert first.function == second.function == 'f7'
    assert first.mapping.build_id != second.mapping.build_id
    assert second.mapping.build_id == read_elf_info(paths[1]).build_id


def test_unreadable_for_one_process_does_not_spoil_the_shared_layout(variants):
    paths, text, f7 = variants
    t = Telemetry()
    s = Symbolizer(t)
    good = _identified(paths[:1], text, pid=2 ** 22 + 95)
    # an exited process (no /proc entry) in another mount namespace whose root is gone
    gone = ProcessInfo(2 ** 22 + 96, 1, mappings=good.mappings, root='/nonexistent-root-hp')
    a = addr_in(good, 0, text, f7)
    assert s.symbolize_user(gone, [a])[0].function == ''
    assert t.total('symbols.frames.unknown') == 1
    assert s.symbolize_user(good, [a])[0].function == 'f7'
    # the same list means the same files (the registry shares a list between processes of one
    # layout only): once resolved through a live process, it serves the exited one too
    assert s.symbolize_user(gone, [a])[0].function == 'f7'


def test_resolved_frames_shared_within_a_layout_and_bounded(variants, monkeypatch):
    from datadog_checks.host_profiler.symbols import symbolizer as mod

    paths, text, f7 = variants
    t = Telemetry()
    s = Symbolizer(t)
    a = _identified(paths[:1], text, pid=2 ** 22 + 111)
    b = ProcessInfo(2 ** 22 + 112, 1, mappings=a.mappings, root='/')
    addrs = [addr_in(a, 0, text, f7) + 4, addr_in(a, 0, text, f7) + 4]  # a leaf, then a return address
    fa, fb = s.symbolize_user(a, addrs), s.symbolize_user(b, addrs)
    assert [f.function for f in fa] == ['f7', 'f7'] and fa[0] is not fa[1]  # looked up at addr and addr - 1
    assert fa[0] is fb[0] and fa[1] is fb[1]
    assert t.total('symbols.frames.resolved') == 4
    monkeypatch.setattr(mod, 'MAX_KEPT_FRAMES', 10)
    for k in range(100):
        assert s.symbolize_user(a, [addr_in(a, 0, text, f7) + k % 8])[0].function == 'f7'
    assert s._frames_kept <= 10 and sum(len(e.frames or ()) for e in s._frame_entries) <= 10
