# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Native symbolization with real binaries built here: full symbols, stripped with a debug
file found by build id or by debuglink, .gnu_debugdata, deleted files, vDSO, bad files."""
import os
import shutil
import subprocess
import sys

import pytest
from tests.workloads import load_bias, run_until_ready

from datadog_checks.host_profiler.profile.model import FRAME_NATIVE
from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.symbols.debuginfo import find_debug_file
from datadog_checks.host_profiler.host.elf import SymbolSource, read_elf_info
from datadog_checks.host_profiler.receiver.processes import ProcessInfo, ProcMapping, read_process
from datadog_checks.host_profiler.symbols.symbolizer import Symbolizer
from datadog_checks.host_profiler.symbols.names import clean_name
from datadog_checks.host_profiler.symbols.symtab import load_symbols

pytestmark = pytest.mark.skipif(not shutil.which('gcc') or not shutil.which('objcopy'), reason='needs gcc/binutils')

C_SOURCE = r'''
#include <stdio.h>
#include <time.h>
#include <unistd.h>
__attribute__((noinline)) long alpha_work(long n) { long s = 0; for (long i = 0; i < n; i++) s += i * i; return s; }
__attribute__((noinline)) long beta_work(long n) { long s = 1; for (long i = 0; i < n; i++) s ^= i * 3; return s; }
int main(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    printf("ready\n");
    fflush(stdout);
    for (;;) { alpha_work(1000); beta_work(1000); usleep(2000); }
}
'''
CPP_SOURCE = r'''
namespace shapes { struct Circle { double r; __attribute__((noinline)) double area(int k) const { return r * r * 3.14 * k; } }; }
int main(int argc, char **) { shapes::Circle c{2.0}; return (int)c.area(argc); }
'''


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw).stdout.decode()


def nm_funcs(path):
    out = {}
    for line in sh('nm', '--defined-only', path).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in 'tTwW':
            out[parts[2]] = int(parts[0], 16)
    return out


@pytest.fixture(scope='module')
def bins(tmp_path_factory):
    d = tmp_path_factory.mktemp('native')
    src = d / 'hot.c'
    src.write_text(C_SOURCE)
    full = str(d / 'hot_full')
    sh('gcc', '-O1', '-g', '-fno-omit-frame-pointer', '-Wl,--build-id', '-o', full, str(src))
    b = {'dir': d, 'full': full, 'funcs': nm_funcs(full)}

    # stripped to .dynsym only, debug file under <debug dir>/.build-id/xx/rest.debug
    debug_dir = d / 'debug'
    bid = read_elf_info(full).gnu_build_id
    dbg = debug_dir / '.build-id' / bid[:2] / (bid[2:] + '.debug')
    dbg.parent.mkdir(parents=True)
    sh('objcopy', '--only-keep-debug', full, str(dbg))
    stripped = str(d / 'hot_stripped')
    sh('strip', '--strip-all', '-o', stripped, full)
    b.update(debug_dir=str(debug_dir), stripped=stripped, build_id=bid)

    # no build id: found through .gnu_debuglink in <dir>/.debug/
    link_dir = d / 'linked'
    (link_dir / '.debug').mkdir(parents=True)
    nobid = str(link_dir / 'hot_link')
    sh('gcc', '-O1', '-g', '-Wl,--build-id=none', '-o', nobid, str(src))
    b['link_funcs'] = nm_funcs(nobid)
    sh('objcopy', '--only-keep-debug', nobid, str(link_dir / '.debug' / 'hot_link.debug'))
    sh('strip', '--strip-all', nobid)
    sh('objcopy', '--add-gnu-debuglink=' + str(link_dir / '.debug' / 'hot_link.debug'), nobid)
    b['linked'] = nobid

    # .gnu_debugdata: an xz-compressed mini ELF with .symtab, inside the stripped binary
    if shutil.which('xz'):
        mini = str(d / 'mini.debug')
        sh('objcopy', '--only-keep-debug', '--strip-debug', '--remove-section=.gdb_index', full, mini)
        sh('xz', '-f', '-k', mini)
        dd = str(d / 'hot_debugdata')
        sh('objcopy', '--add-section', '.gnu_debugdata=' + mini + '.xz', stripped, dd)
        b['debugdata'] = dd
    return b






def test_elf_info_facts(bins):
    info = read_elf_info(bins['full'])
    readelf = sh('readelf', '-n', bins['full'])
    assert info.gnu_build_id and info.gnu_build_id in readelf
    assert info.has_symtab and info.has_dynsym and info.has_debug_info
    assert info.symbol_source() == SymbolSource.DEBUG_INFO
    assert info.file_key == ('gnu', info.gnu_build_id)
    stripped = read_elf_info(bins['stripped'])
    assert not stripped.has_symtab and stripped.has_dynsym and not stripped.has_debug_info
    assert stripped.symbol_source() == SymbolSource.NONE
    assert stripped.symbol_source(upload_dynamic_symbols=True) == SymbolSource.DYNAMIC_SYMBOL_TABLE
    assert stripped.gnu_build_id == info.gnu_build_id
    linked = read_elf_info(bins['linked'])
    assert linked.gnu_build_id == '' and linked.debuglink_name == 'hot_link.debug'
    assert linked.file_key[0] == 'stat'
    assert read_elf_info("/nonexistent") is None


def test_symtab_matches_nm(bins):
    info = read_elf_info(bins['full'])
    with open(bins['full'], 'rb') as f:
        table = load_symbols(f, info)
    for name in ('alpha_work', 'beta_work', 'main'):
        addr = bins['funcs'][name]
        assert table.lookup(addr) == name
        assert table.lookup(addr + 3) == name


def test_debug_file_by_build_id(bins):
    info = read_elf_info(bins['stripped'])
    dbg = find_debug_file(info, bins['stripped'], '/', (bins['debug_dir'],))
    assert dbg is not None and dbg.gnu_build_id == info.gnu_build_id
    assert find_debug_file(info, bins['stripped'], '/', ('/nonexistent',)) is None


def test_debuglink_crc_checked(bins, tmp_path):
    info = read_elf_info(bins['linked'])
    assert find_debug_file(info, bins['linked'], '/', ()) is not None
    # a debug file whose CRC does not match is ignored
    d = tmp_path / 'x'
    (d / '.debug').mkdir(parents=True)
    shutil.copy(bins['linked'], d / 'hot_link')
    data = bytearray(open(os.path.dirname(bins['linked']) + '/.debug/hot_link.debug', 'rb').read())
    data[-1] ^= 0xFF
    (d / '.debug' / 'hot_link.debug').write_bytes(bytes(data))
    assert find_debug_file(info, str(d / 'hot_link'), '/', ()) is None


@pytest.mark.parametrize('variant', ['full', 'stripped', 'linked', 'debugdata'])
def test_live_process(bins, variant):
    if variant not in bins:
        pytest.skip('xz missing')
    path = bins[variant]
    funcs = bins['link_funcs'] if variant == 'linked' else bins['funcs']
    p = run_until_ready(path)
    try:
        proc = read_process(p.pid)
        base = load_bias(proc.pid, path)
        t = Telemetry()
        s = Symbolizer(t, debug_dirs=(bins['debug_dir'],))
        addrs = [base + funcs['alpha_work'] + 4, base + funcs['beta_work'] + 8, base + funcs['main'] + 12]
        frames = s.symbolize_user(proc, addrs)
        assert [f.function for f in frames] == ['alpha_work', 'beta_work', 'main']
        f = frames[0]
        assert f.kind == FRAME_NATIVE and f.address == addrs[0]
        assert f.mapping.filename == path and f.mapping.start <= f.address < f.mapping.limit
        if variant != 'linked':
            assert f.mapping.build_id == bins['build_id'] and f.mapping.build_id_kind == 'gnu'
        # the file address (what a backend symbolizes) is the ELF vaddr for a PIE at offset 0
        assert f.file_address == funcs['alpha_work'] + 4 + min(s.vaddr for s in read_elf_info(path).loads)
        assert t.total('symbols.frames.resolved') == 3
        # second call: served from caches
        s.symbolize_user(proc, addrs)
        assert t.total('symbols.cache.hits') >= 1
        # without the debug dir the stripped binary's functions stay unknown but keep mapping + address
        if variant == 'stripped':
            t2 = Telemetry()
            frames = Symbolizer(t2, debug_dirs=()).symbolize_user(proc, addrs[:1])
            assert frames[0].function == '' and frames[0].mapping is not None
            assert frames[0].display_name.startswith('hot_stripped+0x')
            assert t2.total('symbols.frames.unknown') == 1
    finally:
        p.kill()
        p.wait()


def test_deleted_file_and_vdso(bins, tmp_path):
    path = str(tmp_path / 'hot_deleted')
    shutil.copy(bins['full'], path)
    p = run_until_ready(path)
    try:
        proc = read_process(p.pid)
        base = load_bias(proc.pid, path)
        os.unlink(path)
        proc = read_process(p.pid)
        assert any(m.path.endswith('(deleted)') for m in proc.mappings)
        t = Telemetry()
        s = Symbolizer(t)
        frames = s.symbolize_user(proc, [base + bins['funcs']['beta_work'] + 2])
        assert frames[0].function == 'beta_work'

        # vDSO: compare with pyelftools reading the same image independently
        vdso = [m for m in proc.mappings if m.path == '[vdso]']
        if not vdso:
            pytest.skip('no vdso')
        vd = vdso[0]
        with open('/proc/{}/mem'.format(p.pid), 'rb', buffering=0) as f:
            f.seek(vd.start)
            image = f.read(vd.end - vd.start)
        import io

        from elftools.elf.elffile import ELFFile

        elf = ELFFile(io.BytesIO(image))
        dynsym = elf.get_section_by_name('.dynsym')
        syms = [s for s in dynsym.iter_symbols() if s['st_info']['type'] == 'STT_FUNC' and s['st_value']]
        assert syms
        sym = syms[0]
        frames = s.symbolize_user(proc, [vd.start + sym['st_value'] + 1])
        assert frames[0].function in {x.name for x in syms if x['st_value'] == sym['st_value']}
        assert frames[0].mapping.filename == '[vdso]'
        # an address in the vDSO with no symbol still gets a [vdso] name
        frames = s.symbolize_user(proc, [vd.start + 1])
        assert frames[0].function in ('[vdso]',) or frames[0].function.startswith('__vdso') or frames[0].function
    finally:
        p.kill()
        p.wait()


def test_bad_files_never_raise(bins, tmp_path):
    good = open(bins['full'], 'rb').read()
    trunc = tmp_path / 'trunc'
    trunc.write_bytes(good[: len(good) // 3])
    garbage = tmp_path / 'garbage'
    garbage.write_bytes(b'\x7fELF' + os.urandom(4000))
    notelf = tmp_path / 'notelf'
    notelf.write_bytes(b'#!/bin/sh\n' * 100)
    maps = [
        ProcMapping(0x10000, 0x20000, 0, str(trunc)),
        ProcMapping(0x20000, 0x30000, 0, str(garbage)),
        ProcMapping(0x30000, 0x40000, 0, str(notelf)),
        ProcMapping(0x40000, 0x50000, 0, str(tmp_path / 'missing')),
        ProcMapping(0x50000, 0x60000, 0, ''),
    ]
    proc = ProcessInfo(pid=2 ** 22 + 7, start_time=1, mappings=maps, root='/')
    t = Telemetry()
    s = Symbolizer(t)
    addrs = [0x10100, 0x20100, 0x30100, 0x40100, 0x50100, 0x90000]
    frames = s.symbolize_user(proc, addrs)
    assert len(frames) == len(addrs)
    assert all(f.function == '' for f in frames)
    assert t.total('symbols.frames.unknown') == len(addrs)
    assert t.total('symbols.bad_input') >= 1
    # a process object missing attributes is not fatal either
    assert [f.function for f in s.symbolize_user(object(), [1, 2])] == ['', '']


def test_return_addresses_are_looked_up_minus_one(bins):
    p = run_until_ready(bins['full'])
    try:
        proc = read_process(p.pid)
        base = load_bias(proc.pid, bins['full'])
        funcs = sorted(bins['funcs'].items(), key=lambda kv: kv[1])
        # the first byte of beta_work as a *return* address belongs to the function before it
        beta = base + bins['funcs']['beta_work']
        s = Symbolizer(Telemetry())
        frames = s.symbolize_user(proc, [beta, beta])
        assert frames[0].function == 'beta_work'
        assert frames[1].function == [n for n, a in funcs if a < bins['funcs']['beta_work']][-1]
        assert frames[1].address == beta
    finally:
        p.kill()
        p.wait()


def test_cpp_demangling(tmp_path):
    if not shutil.which('g++'):
        pytest.skip('no g++')
    src = tmp_path / 'c.cc'
    src.write_text(CPP_SOURCE)
    out = str(tmp_path / 'cpp')
    sh('g++', '-O1', '-o', out, str(src))
    info = read_elf_info(out)
    with open(out, 'rb') as f:
        table = load_symbols(f, info, demangle_names='full')
    funcs = nm_funcs(out)
    mangled = [n for n in funcs if 'Circle' in n][0]
    assert table.lookup(funcs[mangled]) == 'shapes::Circle::area(int) const'
    assert clean_name('not_mangled', 'full') == 'not_mangled'
    assert clean_name('_Zgarbage', 'full') == '_Zgarbage'


def test_shared_library_shared_between_processes(bins):
    """libc is loaded once for two processes (one table per file identity)."""
    p1 = run_until_ready(bins['full'])
    p2 = run_until_ready(bins['stripped'])
    try:
        t = Telemetry()
        s = Symbolizer(t, debug_dirs=())  # compare with the library's own table
        for p in (p1, p2):
            proc = read_process(p.pid)
            libc = [m for m in proc.mappings if 'libc.so' in m.path or 'libc-' in m.path]
            if not libc:
                pytest.skip('static libc?')
            path = libc[0].path
            info = read_elf_info(path)
            with open(path, 'rb') as f:
                table = load_symbols(f, info)
            i = len(table) // 2
            addr = load_bias(proc.pid, path) + table.starts[i]
            assert s.symbolize_user(proc, [addr])[0].function == table.name_at(i)
        loaded = sum(v for k, v in t.totals().items() if k.startswith('symbols.tables.loaded'))
        assert loaded == 1
    finally:
        for p in (p1, p2):
            p.kill()
            p.wait()


def test_container_root_is_used(bins, tmp_path):
    """A process whose root is elsewhere: the file is opened under that root."""
    root = tmp_path / 'root'
    (root / 'app').mkdir(parents=True)
    shutil.copy(bins['full'], root / 'app' / 'hot')
    info = read_elf_info(bins['full'])
    text = [s for s in info.loads if s.executable][0]
    maps = [ProcMapping(0x555500000000 + text.offset, 0x555500000000 + text.offset + text.filesz, text.offset, '/app/hot')]
    proc = ProcessInfo(pid=2 ** 22 + 9, start_time=5, mappings=maps, root=str(root))
    s = Symbolizer(Telemetry())
    addr = 0x555500000000 + text.offset + (bins['funcs']['alpha_work'] - text.vaddr) + 1
    assert s.symbolize_user(proc, [addr])[0].function == 'alpha_work'


if __name__ == '__main__':
    sys.exit(pytest.main([__file__, '-q']))


def test_elf_headers_match_pyelftools():
    """The struct-based header parser agrees with pyelftools on the system's libraries."""
    import glob

    from elftools.elf.elffile import ELFFile

    paths = sorted(glob.glob('/usr/lib/x86_64-linux-gnu/*.so*'))[:60] + [sys.executable]
    checked = 0
    for p in paths:
        info = read_elf_info(p)
        if info is None:
            continue
        with open(p, 'rb') as f:
            elf = ELFFile(f)
            assert [(s.name, s['sh_offset'], s['sh_size'], s['sh_addr']) for s in elf.iter_sections()] == [
                (s.name, s.offset, s.size, s.addr) for s in info.section_list
            ]
            loads = [(g['p_vaddr'], g['p_offset'], g['p_filesz']) for g in elf.iter_segments() if g['p_type'] == 'PT_LOAD']
            assert loads == [(s.vaddr, s.offset, s.filesz) for s in info.loads]
            assert info.elfclass == elf.elfclass and info.machine == elf['e_machine']
        checked += 1
    assert checked > 5
