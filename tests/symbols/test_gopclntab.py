# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Go: a stripped binary built with Debian's golang-go, found by section and by signature
scan (section headers removed), and synthetic tables of the Go 1.2/1.16/1.18/1.20 layouts."""
import gzip
import os
import shutil
import struct
import subprocess

import pytest

from datadog_checks.host_profiler.profile.model import FRAME_GO
from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.host.elf import SymbolSource, read_elf_info
from datadog_checks.host_profiler.symbols.gopclntab import load_pclntab, parse_pclntab, scan_pclntab
from datadog_checks.host_profiler.receiver.processes import read_process
from datadog_checks.host_profiler.symbols.symbolizer import Symbolizer

GO_SOURCE = '''package main

import (
\t"fmt"
\t"os"
\t"time"
)

//go:noinline
func hotLoop(n int) int {
\ts := 0
\tfor i := 0; i < n; i++ {
\t\ts += i * i
\t}
\treturn s
}

func main() {
\tfmt.Println("ready")
\tos.Stdout.Sync()
\tfor {
\t\thotLoop(100000)
\t\ttime.Sleep(time.Millisecond)
\t}
}
'''

MAGIC = {'1.2': 0xFFFFFFFB, '1.16': 0xFFFFFFFA, '1.18': 0xFFFFFFF0, '1.20': 0xFFFFFFF1}


def build_pclntab(version, funcs, end_pc, ptrsize=8, order='<', text_start=0x401000):
    """A minimal pclntab of the given layout: [(pc, name)] sorted, functions end at end_pc."""
    w = order + ('Q' if ptrsize == 8 else 'I')
    n = len(funcs)
    names = b''
    nameoffs = []
    for _, name in funcs:
        nameoffs.append(len(names))
        names += name.encode() + b'\0'
    if version == '1.2':
        hdr = struct.pack(order + 'IBBBB', MAGIC[version], 0, 0, 1, ptrsize) + struct.pack(w, n)
        functab_off = len(hdr)
        functab_len = (2 * n + 1) * ptrsize + 4
        func_off = functab_off + functab_len
        func_size = ptrsize + 4
        names_off = func_off + n * func_size
        ft = b''
        for i, (pc, _) in enumerate(funcs):
            ft += struct.pack(w, pc) + struct.pack(w, func_off + i * func_size)
        ft += struct.pack(w, end_pc) + struct.pack(order + 'I', 0)
        fn = b''.join(struct.pack(w, pc) + struct.pack(order + 'i', names_off + nameoffs[i]) for i, (pc, _) in enumerate(funcs))
        return hdr + ft + fn + names
    nwords = 7 if version == '1.16' else 8
    hdr_len = 8 + nwords * ptrsize
    names_off = hdr_len
    cu_off = names_off + len(names)
    pcln_off = cu_off + 8  # some cu/file/pc bytes
    field = ptrsize if version == '1.16' else 4
    f = order + ('Q' if field == 8 else 'I')
    functab_len = (2 * n + 1) * field
    func_size = field + 4
    ft = b''
    fn = b''
    for i, (pc, _) in enumerate(funcs):
        entry = pc if version == '1.16' else pc - text_start
        ft += struct.pack(f, entry) + struct.pack(f, functab_len + i * func_size)
        fn += struct.pack(f, entry) + struct.pack(order + 'i', nameoffs[i])
    ft += struct.pack(f, end_pc if version == '1.16' else end_pc - text_start)
    if version == '1.16':
        words = [n, 1, names_off, cu_off, cu_off + 4, cu_off + 6, pcln_off]
    else:
        words = [n, 1, text_start, names_off, cu_off, cu_off + 4, cu_off + 6, pcln_off]
    hdr = struct.pack(order + 'IBBBB', MAGIC[version], 0, 0, 1, ptrsize) + b''.join(struct.pack(w, x) for x in words)
    return hdr + names + b'\0' * 8 + ft + fn


FUNCS = [(0x401000, 'runtime.text'), (0x401100, 'main.main'), (0x401180, 'main.hot'), (0x401400, 'fmt.Println')]


@pytest.mark.parametrize('version', ['1.2', '1.16', '1.18', '1.20'])
@pytest.mark.parametrize('ptrsize,order', [(8, '<'), (4, '<'), (8, '>')])
def test_synthetic_layouts(version, ptrsize, order):
    data = build_pclntab(version, FUNCS, 0x401500, ptrsize, order)
    table = parse_pclntab(data)
    assert table.lookup(0x401000) == 'runtime.text'
    assert table.lookup(0x4011FF) == 'main.hot'
    assert table.lookup(0x4014FF) == 'fmt.Println'
    assert table.lookup(0x401500) is None and table.lookup(0x400FFF) is None
    # found inside a larger blob by the signature scan
    blob = os.urandom(1000).replace(b'\xff', b'\x00') + data + b'\x00' * 100
    assert scan_pclntab(blob).lookup(0x401181) == 'main.hot'


@pytest.fixture(scope='module')
def go_bins(tmp_path_factory):
    if not shutil.which('go'):
        pytest.skip('no go toolchain')
    d = tmp_path_factory.mktemp('go')
    (d / 'main.go').write_text(GO_SOURCE)
    (d / 'go.mod').write_text('module hotgo\n\ngo 1.17\n')
    env = dict(os.environ, GOCACHE=str(d / 'cache'), GOFLAGS='-mod=mod', CGO_ENABLED='0', GOPATH=str(d / 'gopath'))
    full, stripped = str(d / 'full'), str(d / 'stripped')
    subprocess.run(['go', 'build', '-o', full, '.'], cwd=d, env=env, check=True)
    subprocess.run(['go', 'build', '-ldflags=-s -w', '-o', stripped, '.'], cwd=d, env=env, check=True)
    funcs = {}
    for line in subprocess.run(['nm', full], stdout=subprocess.PIPE, check=True).stdout.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in 'tT':
            funcs[parts[2]] = int(parts[0], 16)
    # the same stripped binary with its section headers removed: needs the signature scan
    noshdr = str(d / 'noshdr')
    data = bytearray(open(stripped, 'rb').read())
    struct.pack_into('<Q', data, 0x28, 0)  # e_shoff
    struct.pack_into('<HHH', data, 0x3A, 0, 0, 0)  # e_shentsize, e_shnum, e_shstrndx
    open(noshdr, 'wb').write(bytes(data))
    os.chmod(noshdr, 0o755)
    buildid = subprocess.run(['go', 'tool', 'buildid', stripped], stdout=subprocess.PIPE, env=env,
                             check=True).stdout.decode().strip()
    return {'full': full, 'stripped': stripped, 'noshdr': noshdr, 'funcs': funcs, 'buildid': buildid}


def test_go_elf_facts(go_bins):
    info = read_elf_info(go_bins['stripped'])
    assert info.go_build_id == go_bins['buildid']
    assert info.is_go and info.has_gopclntab and not info.has_symtab
    assert info.symbol_source() == SymbolSource.GOPCLNTAB
    assert info.symbol_source(upload_go_pcln_tab=False) == SymbolSource.NONE
    noshdr = read_elf_info(go_bins['noshdr'])
    assert noshdr.go_build_id == go_bins['buildid'] and not noshdr.has_section_headers


@pytest.mark.parametrize('which', ['stripped', 'noshdr'])
def test_every_function_matches_nm(go_bins, which):
    path = go_bins[which]
    info = read_elf_info(path)
    with open(path, 'rb') as f:
        table = load_pclntab(f, info)
    assert table is not None
    funcs = go_bins['funcs']
    checked = 0
    for name, addr in funcs.items():
        if name.startswith(('go:', 'runtime.etext', 'runtime.text')) or name in ('go.buildid',):
            continue
        got = table.lookup(addr)
        if got is None or '[...]' in got:
            continue  # assembly stubs without a pclntab entry; generic shapes are named [...]
        assert got == name[:-5] if name.endswith('.abi0') else got == name, (hex(addr), got, name)
        checked += 1
    assert checked > 500
    assert table.lookup(funcs['main.hotLoop'] + 5) == 'main.hotLoop'


@pytest.mark.parametrize('which', ['stripped', 'noshdr'])
def test_live_go_process(go_bins, which):
    p = subprocess.Popen([go_bins[which]], stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline().strip() == b'ready'
        proc = read_process(p.pid)
        t = Telemetry()
        s = Symbolizer(t)
        addr = go_bins['funcs']['main.hotLoop'] + 3  # non-PIE: file vaddr == process address
        frames = s.symbolize_user(proc, [addr, go_bins['funcs']['main.main'] + 40])
        assert frames[0].function == 'main.hotLoop'
        assert frames[1].function == 'main.main'
        assert frames[0].kind == FRAME_GO
        assert frames[0].mapping.build_id == go_bins['buildid'] and frames[0].mapping.build_id_kind == 'go'
    finally:
        p.kill()
        p.wait()


def test_go_1_15_table_from_go_testdata():
    """Go's own test data: the pclntab of a Go 1.15 hello world (the 1.2 layout), shipped
    with the toolchain; Go's test asserts main.main is at 0x105c280."""
    path = '/usr/lib/go-1.19/src/debug/gosym/testdata/pcln115.gz'
    if not os.path.exists(path):
        pytest.skip('Go sources not installed')
    table = parse_pclntab(gzip.decompress(open(path, 'rb').read()))
    assert len(table) > 1000
    assert table.lookup(0x105C280) == 'main.main'
    assert table.lookup(0x105C280 + 10) == 'main.main'
    assert table.lookup(0x102E8A0) == 'runtime.main'


def test_broken_pclntab_counted(go_bins, tmp_path):
    data = bytearray(open(go_bins['stripped'], 'rb').read())
    info = read_elf_info(go_bins['stripped'])
    sec = info.sections['.gopclntab']
    data[sec.offset + 8:sec.offset + 16] = b'\xff' * 8  # nfunc absurd
    bad = tmp_path / 'bad'
    bad.write_bytes(bytes(data))
    t = Telemetry()
    with open(bad, 'rb') as f:
        assert load_pclntab(f, read_elf_info(str(bad)), t) is None
    assert t.total('symbols.bad_input') == 1
