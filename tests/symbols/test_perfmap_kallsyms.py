# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Perf maps (unit + a real Node process with --perf-basic-prof) and kallsyms."""
import os
import shutil
import subprocess
import time

import pytest

from datadog_checks.host_profiler.profile.model import FRAME_JIT, FRAME_KERNEL
from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.symbols.kallsyms import Kallsyms
from datadog_checks.host_profiler.symbols.perfmap import PerfMap, nspid_of, perf_map_candidates
from datadog_checks.host_profiler.receiver.processes import ProcMapping, ProcessInfo, read_process
from datadog_checks.host_profiler.symbols.symbolizer import Symbolizer


def test_perfmap_incremental_and_garbage(tmp_path):
    path = tmp_path / 'perf-1.map'
    path.write_bytes(b'1000 10 first\n2000 20 LazyCompile:~second file.js:1\nGARBAGE\n3000 zz bad\n4000 1')
    t = Telemetry()
    pm = PerfMap(str(path), t)
    assert pm.refresh()
    assert pm.lookup(0x1005) == 'first' and pm.lookup(0x1010) is None
    assert pm.lookup(0x201F) == 'LazyCompile:~second file.js:1'
    assert t.total('symbols.bad_input') == 2
    offset = pm.offset
    # the partial last line is parsed once completed; only the tail is read
    with open(path, 'ab') as f:
        f.write(b'0 third\n0x5000 8 fourth\n')
    assert pm.refresh() and pm.offset > offset
    assert pm.lookup(0x4005) == 'third' and pm.lookup(0x5007) == 'fourth'
    assert not pm.refresh()  # unchanged
    # the same start written again (re-compiled code) replaces the old name
    with open(path, 'ab') as f:
        f.write(b'1000 10 first_v2\n')
    pm.refresh()
    assert pm.lookup(0x1001) == 'first_v2'
    # the file replaced by a shorter one: read again from the start
    os.unlink(path)
    path.write_bytes(b'9000 10 fresh\n')
    pm.refresh()
    assert pm.lookup(0x9001) == 'fresh' and pm.lookup(0x1001) is None


def test_perfmap_candidates_use_nspid():
    pid = os.getpid()
    assert nspid_of(pid) == pid  # the test runs in the host pid namespace
    assert perf_map_candidates(pid, '/proc/{}/root'.format(pid)) == ['/proc/{}/root/tmp/perf-{}.map'.format(pid, pid)]


def test_symbolizer_perfmap_in_process_root(tmp_path):
    root = tmp_path / 'root'
    (root / 'tmp').mkdir(parents=True)
    pid = 2 ** 22 + 11  # no such process: NSpid falls back to pid
    (root / 'tmp' / 'perf-{}.map'.format(pid)).write_text('7f0000001000 100 jitted_fn\n')
    proc = ProcessInfo(pid, 1, mappings=[ProcMapping(0x7F0000000000, 0x7F0000100000, 0, '')], root=str(root))
    t = Telemetry()
    s = Symbolizer(t)
    frames = s.symbolize_user(proc, [0x7F0000001010, 0x7F0000009000])
    assert frames[0].function == 'jitted_fn' and frames[0].kind == FRAME_JIT
    assert frames[1].function == '' and frames[1].kind == FRAME_JIT
    assert t.totals()['symbols.frames.unknown{reason:anon}'] == 1
    # the map grows: new entries are found on the next call
    with open(root / 'tmp' / 'perf-{}.map'.format(pid), 'a') as f:
        f.write('7f0000008000 2000 later_fn\n')
    assert s.symbolize_user(proc, [0x7F0000009000])[0].function == 'later_fn'
    # disabled
    assert Symbolizer(Telemetry(), perf_map=False).symbolize_user(proc, [0x7F0000001010])[0].function == ''


NODE_SCRIPT = r'''
function hotJsFunction(n) { let s = 0; for (let i = 0; i < n; i++) { s += Math.sqrt(i) * (i % 7); } return s; }
let total = 0;
const t0 = Date.now();
function tick() { for (let k = 0; k < 200; k++) total += hotJsFunction(5000); setImmediate(tick); }
tick();
'''


def _perf_map_names_covering(path, addr):
    """The names of the perf map's lines covering ``addr``, oldest first."""
    out = []
    with open(path) as f:
        for line in f.read().splitlines():
            parts = line.split(None, 2)
            if len(parts) == 3 and int(parts[0], 16) <= addr < int(parts[0], 16) + int(parts[1], 16):
                out.append(parts[2])
    return out


@pytest.mark.skipif(not shutil.which('node'), reason='needs node')
def test_node_perf_basic_prof(tmp_path):
    script = tmp_path / 'hot.js'
    script.write_text(NODE_SCRIPT)
    # cwd: V8 writes an isolate-*-v8.log beside it when perf maps are on
    p = subprocess.Popen(['node', '--perf-basic-prof', str(script)], stdout=subprocess.DEVNULL, cwd=str(tmp_path))
    path = '/tmp/perf-{}.map'.format(p.pid)
    try:
        entry = None
        deadline = time.time() + 20
        while time.time() < deadline and entry is None:
            time.sleep(0.2)
            try:
                lines = open(path).read().splitlines()
            except OSError:
                continue
            for line in lines:
                parts = line.split(None, 2)
                if len(parts) == 3 and 'hotJsFunction' in parts[2]:
                    entry = (int(parts[0], 16), int(parts[1], 16), parts[2])  # the newest tier
        assert entry, 'node never wrote hotJsFunction to its perf map'
        proc = read_process(p.pid)
        addr = entry[0] + entry[1] // 2
        before = _perf_map_names_covering(path, addr)
        t = Telemetry()
        frames = Symbolizer(t).symbolize_user(proc, [addr])
        # V8 keeps writing (tiers up, reuses code space after a GC): the map's newest line covering
        # the address wins, as in perf; the symbolizer read the map between these two reads
        after = _perf_map_names_covering(path, addr)
        assert frames[0].function in after[len(before) - 1:], (frames[0].function, before, after)
        if after[-1] == before[-1] == entry[2]:
            assert 'hotJsFunction' in frames[0].function
        m = frames[0].mapping
        if m is None or not m.filename or m.filename.startswith('['):
            assert frames[0].kind == FRAME_JIT
    finally:
        p.kill()
        p.wait()
        try:
            os.unlink(path)
        except OSError:
            pass


def test_kallsyms_with_modules(tmp_path):
    ks_path = tmp_path / 'kallsyms'
    mod_path = tmp_path / 'modules'
    ks_path.write_text(
        'ffffffff81000000 T _stext\n'
        'ffffffff81000100 t do_one\n'
        'ffffffff81000200 D some_data\n'
        'ffffffff81000300 T do_two\n'
        'ffffffffc0001000 t mod_fn\t[mymod]\n'
        'ffffffffc0001100 t mod_fn2\t[mymod]\n'
    )
    mod_path.write_text('mymod 16384 0 - Live 0xffffffffc0001000\n')
    ks = Kallsyms(str(ks_path), str(mod_path), check_interval_s=0)
    assert ks.maybe_refresh()
    assert ks.lookup(0xFFFFFFFF81000150) == ('do_one', '[kernel.kallsyms]')
    assert ks.lookup(0xFFFFFFFF81000250) == ('do_one', '[kernel.kallsyms]')  # data symbols skipped
    assert ks.lookup(0xFFFFFFFFC0001050) == ('mod_fn', '[mymod]')
    assert ks.module_ranges['[mymod]'][0] == 0xFFFFFFFFC0001000
    assert not ks.maybe_refresh()  # modules unchanged: no reload
    ks_path.write_text(ks_path.read_text() + 'ffffffffc0002000 t new_fn\t[newmod]\n')
    mod_path.write_text(mod_path.read_text() + 'newmod 4096 0 - Live 0xffffffffc0002000\n')
    assert ks.maybe_refresh()
    assert ks.lookup(0xFFFFFFFFC0002001) == ('new_fn', '[newmod]')


def test_kallsyms_restricted(tmp_path):
    ks_path = tmp_path / 'kallsyms'
    ks_path.write_text('0000000000000000 T _stext\n0000000000000000 T foo\n')
    t = Telemetry()
    s = Symbolizer(t, kallsyms_path=str(ks_path))
    assert s.symbolize_kernel([0xFFFFFFFF81000000])[0].function == ''
    assert t.totals()['symbols.frames.unknown{reason:kernel_restricted}'] == 1


def test_real_kallsyms():
    if not os.access('/proc/kallsyms', os.R_OK):
        pytest.skip('no kallsyms')
    addr = None
    with open('/proc/kallsyms') as f:
        for line in f:
            parts = line.split()
            if parts[2] in ('schedule', 'do_syscall_64') and int(parts[0], 16):
                addr, name = int(parts[0], 16), parts[2]
                break
    if addr is None:
        pytest.skip('kallsyms restricted')
    t = Telemetry()
    s = Symbolizer(t)
    frames = s.symbolize_kernel([addr + 1, addr + 2])
    assert frames[0].function == name and frames[0].kind == FRAME_KERNEL
    assert frames[0].mapping.filename == '[kernel.kallsyms]'
    assert frames[1].function == name  # return address: addr+2-1 is still inside
    assert t.total('symbols.frames.resolved') == 2


KS_TEXT = (
    'ffffffff81000000 T _stext\n'
    'ffffffff81000100 t do_one\n'
    'ffffffff81000200 D some_data\n'
    'ffffffff81000300 T do_two\n'
    'ffffffffc0001000 t mod_fn\t[mymod]\n'
    'ffffffffc0001100 t mod_fn2\t[mymod]\n'
)


def _same_table(a, b):
    assert list(a.table.starts) == list(b.table.starts) and list(a.table.ends) == list(b.table.ends)
    assert a.table.names == b.table.names and list(a.module_of) == list(b.module_of)
    assert a.module_names == b.module_names and a.module_ranges == b.module_ranges
    for addr in (0xFFFFFFFF81000150, 0xFFFFFFFF81000250, 0xFFFFFFFFC0001050, 0xFFFFFFFFC0001150):
        assert a.lookup(addr) == b.lookup(addr)


def test_kallsyms_boot_cache(tmp_path):
    """The parsed table is written once per boot and module set, and read back as it was parsed."""
    ks_path, mod_path, cache = tmp_path / 'kallsyms', tmp_path / 'modules', tmp_path / 'run' / 'kallsyms.bin'
    ks_path.write_text(KS_TEXT)
    mod_path.write_text('mymod 16384 0 - Live 0xffffffffc0001000\n')
    first = Kallsyms(str(ks_path), str(mod_path), cache_path=str(cache))
    assert first.load() and not first.from_cache and cache.exists()
    assert oct(cache.stat().st_mode & 0o777) == '0o600'
    ks_path.write_text('garbage\n')  # read from the cache from now on
    again = Kallsyms(str(ks_path), str(mod_path), cache_path=str(cache))
    assert again.load() and again.from_cache
    _same_table(first, again)
    assert again.lookup(0xFFFFFFFFC0001050) == ('mod_fn', '[mymod]')
    # a module loaded: the cache is foreign, the file is parsed (and the cache rewritten)
    ks_path.write_text(KS_TEXT + 'ffffffffc0002000 t new_fn\t[newmod]\n')
    mod_path.write_text(mod_path.read_text() + 'newmod 4096 0 - Live 0xffffffffc0002000\n')
    fresh = Kallsyms(str(ks_path), str(mod_path), cache_path=str(cache))
    assert fresh.load() and not fresh.from_cache
    assert fresh.lookup(0xFFFFFFFFC0002001) == ('new_fn', '[newmod]')
    assert Kallsyms(str(ks_path), str(mod_path), cache_path=str(cache)).load()
    # no cache for a fake kallsyms unless asked; none for the running kernel's when disabled
    assert Kallsyms(str(ks_path), str(mod_path)).cache_path is None
    assert Kallsyms('/proc/kallsyms', cache_path=None).cache_path is None


@pytest.mark.parametrize('damage', ['truncate', 'garbage', 'header', 'empty', 'other_boot'])
def test_kallsyms_broken_cache_ignored(tmp_path, damage):
    ks_path, mod_path, cache = tmp_path / 'kallsyms', tmp_path / 'modules', tmp_path / 'kallsyms.bin'
    ks_path.write_text(KS_TEXT)
    mod_path.write_text('mymod 16384 0 - Live 0xffffffffc0001000\n')
    ref = Kallsyms(str(ks_path), str(mod_path), cache_path=str(cache))
    assert ref.load()
    data = cache.read_bytes()
    if damage == 'truncate':
        data = data[:-7]
    elif damage == 'garbage':
        data = os.urandom(len(data))
    elif damage == 'header':
        data = data.replace(b'"modules"', b'"moduleZ"', 1)
    elif damage == 'empty':
        data = b''
    else:
        data = data.replace(b'"key": "', b'"key": "x', 1)
    cache.write_bytes(data)
    ks = Kallsyms(str(ks_path), str(mod_path), cache_path=str(cache))
    assert ks.load() and not ks.from_cache
    _same_table(ref, ks)


def test_kallsyms_cache_not_written_when_restricted(tmp_path):
    ks_path, cache = tmp_path / 'kallsyms', tmp_path / 'kallsyms.bin'
    ks_path.write_text('0000000000000000 T _stext\n0000000000000000 T foo\n')
    ks = Kallsyms(str(ks_path), str(tmp_path / 'modules'), cache_path=str(cache))
    assert ks.load() and ks.restricted and not cache.exists()


def test_real_kallsyms_cache(tmp_path):
    if not os.access('/proc/kallsyms', os.R_OK):
        pytest.skip('no kallsyms')
    cache = tmp_path / 'kallsyms.bin'
    parsed = Kallsyms(cache_path=str(cache))
    assert parsed.load() and not parsed.from_cache
    if parsed.restricted:
        pytest.skip('kallsyms restricted')
    cached = Kallsyms(cache_path=str(cache))
    t0 = time.process_time()
    assert cached.load() and cached.from_cache
    assert time.process_time() - t0 < 0.1
    assert len(cached.table) == len(parsed.table) and cached.table.names == parsed.table.names
    for addr in parsed.table.starts[::997]:
        assert cached.lookup(addr) == parsed.lookup(addr)


def test_kallsyms_parse_duplicates_order_and_spans(tmp_path):
    ks = Kallsyms(str(tmp_path / 'none'), cache_path=None)
    ks.parse(
        b'ffffffffc0002000 t m2_fn\t[mod2]\n'
        b'ffffffff81000100 T second\n'
        b'ffffffff81000000 T first\n'
        b'ffffffff81000000 t first_alias\n'  # same address: the first line wins
        b'ffffffff81000080 T __pfx_second\n'  # padding: dropped
        b'ffffffff81000200 D data\n'
        b'ffffffffc0001000 t m1_fn\t[mod1]\n'
        b'0000000000000000 T zero\n'
    )
    assert not ks.restricted
    assert list(ks.table.starts) == [0xFFFFFFFF81000000, 0xFFFFFFFF81000100, 0xFFFFFFFFC0001000, 0xFFFFFFFFC0002000]
    # each ends where the next starts, at most 1 MiB on; the last 4 KiB on
    assert list(ks.table.ends) == [0xFFFFFFFF81000100, 0xFFFFFFFF81100100, 0xFFFFFFFFC0002000, 0xFFFFFFFFC0003000]
    assert ks.lookup(0xFFFFFFFF81000010) == ('first', '[kernel.kallsyms]')
    assert ks.lookup(0xFFFFFFFF81000090) == ('first', '[kernel.kallsyms]')
    assert ks.module_names == ['[kernel.kallsyms]', '[mod2]', '[mod1]']  # in order of appearance
    assert ks.lookup(0xFFFFFFFFC0001004) == ('m1_fn', '[mod1]')
    assert ks.module_ranges == {'[kernel.kallsyms]': (0xFFFFFFFF81000000, 0xFFFFFFFF81100100),
                                '[mod1]': (0xFFFFFFFFC0001000, 0xFFFFFFFFC0002000),
                                '[mod2]': (0xFFFFFFFFC0002000, 0xFFFFFFFFC0003000)}
