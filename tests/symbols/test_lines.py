# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Native source lines from DWARF line tables, with programs built here: the symbolizer's
(file, line) for a `-g` C binary match `addr2line` (the binary itself, and its stripped copy
with a separate debug file); the hand-written line-program and aranges readers give what
pyelftools gives; malformed DWARF is counted, never fatal; the decode budget defers lines
instead of blocking; an end-to-end run with the real sampler carries lines in its OTLP
profile."""
import os
import random
import shutil
import subprocess

import pytest
from tests.workloads import compile_c, load_bias, run_until_ready

from datadog_checks.host_profiler.profile.otlp import decode_bytes
from datadog_checks.host_profiler.receiver.processes import read_process
from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.symbols import lines as lines_mod
from datadog_checks.host_profiler.symbols import symbolizer as symbolizer_mod
from datadog_checks.host_profiler.host.elf import read_elf_info
from datadog_checks.host_profiler.symbols.symbolizer import Symbolizer

pytestmark = pytest.mark.skipif(not shutil.which('addr2line') or not shutil.which('objcopy'), reason='needs binutils')

LINES_C = r'''
#include <stdio.h>
static long table[64];
__attribute__((noinline)) long mix(long x) {
    long y = x * 2654435761u;
    y ^= y >> 13;
    return y + table[x & 63];
}
__attribute__((noinline)) long walk(long n) {
    long s = 0;
    for (long i = 0; i < n; i++) {
        s += mix(i);
        if (s & 1)
            s ^= i;
    }
    return s;
}
int main(void) {
    printf("ready\n");
    fflush(stdout);
    volatile long sink = 0;
    for (;;)
        sink += walk(200000);
}
'''


@pytest.fixture(scope='module')
def lines_bin(tmp_path_factory):
    d = tmp_path_factory.mktemp('lines')
    src = d / 'lines_loop.c'
    src.write_text(LINES_C)
    # -O0: the sampler's frame-pointer walk loses the leaf frame of -O1 code (seen on main too)
    binary = compile_c(str(src), d, cflags=('-O0', '-g', '-fno-omit-frame-pointer', '-Wl,--build-id'))
    debug_dir = d / 'debug'
    bid = read_elf_info(binary).gnu_build_id
    dbg = debug_dir / '.build-id' / bid[:2] / (bid[2:] + '.debug')
    dbg.parent.mkdir(parents=True)
    subprocess.run(['objcopy', '--only-keep-debug', binary, str(dbg)], check=True)
    stripped = str(d / 'lines_strip')
    subprocess.run(['strip', '--strip-all', '-o', stripped, binary], check=True)
    return {'full': binary, 'stripped': stripped, 'debug_dir': str(debug_dir), 'src': str(src)}


def addr2line(binary, vaddrs):
    out = subprocess.run(['addr2line', '-e', binary] + [hex(a) for a in vaddrs], check=True, capture_output=True,
                         text=True).stdout.splitlines()
    result = []
    for line in out:
        loc = line.split(' (discriminator')[0]
        path, _, num = loc.rpartition(':')
        result.append((path, int(num)) if num.isdigit() and int(num) > 0 else None)
    return result




def text_vaddrs(binary, count, seed=1):
    info = read_elf_info(binary)
    text = info.sections['.text']
    rnd = random.Random(seed)
    return sorted(rnd.sample(range(text.addr, text.addr + text.size), min(count, text.size)))




def symbolize_leaves(binary, vaddrs, debug_dirs=(), lines=True):
    """(frames, telemetry): each of ``vaddrs`` of ``binary`` symbolized as a leaf (looked up at
    the address itself, as addr2line does) in a running copy of it."""
    p = run_until_ready(binary)
    try:
        proc = read_process(p.pid)
        t = Telemetry()
        s = Symbolizer(t, debug_dirs=debug_dirs, lines=lines)
        return [s.symbolize_user(proc, [load_bias(p.pid, binary) + v])[0] for v in vaddrs], t
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize('which', ['full', 'stripped'])
def test_lines_match_addr2line(lines_bin, which):
    """Every address of .text: the symbolizer's (file, line) on the running program is what
    addr2line says for the binary (the stripped copy's lines come from its debug file)."""
    binary = lines_bin[which]
    vaddrs = text_vaddrs(lines_bin['full'], 400)
    expected = addr2line(lines_bin['full'], vaddrs)
    assert sum(1 for e in expected if e and e[0] == lines_bin['src']) > 50  # the program's own lines
    frames, t = symbolize_leaves(binary, vaddrs, debug_dirs=(lines_bin['debug_dir'],))
    got = [(f.source_file, f.line) if f.line else None for f in frames]
    named = [(g, e) for g, e, f in zip(got, expected, frames) if f.function]
    assert len(named) > 300
    mismatches = [(hex(v), g, e) for v, g, e, f in zip(vaddrs, got, expected, frames) if g != e and f.function]
    assert not mismatches[:5]
    assert t.total('symbols.lines.cu_decodes') >= 1


def test_lines_off_and_binary_without_dwarf(lines_bin, tmp_path):
    """``lines: false`` gives no line; a binary built without -g gives none either (and no error)."""
    nodebug = compile_c(lines_bin['src'], tmp_path, name='lines_nodebug', cflags=('-O0', '-fno-omit-frame-pointer'))
    for binary, lines in ((lines_bin['full'], False), (nodebug, True)):
        frames, t = symbolize_leaves(binary, text_vaddrs(binary, 50), lines=lines)
        assert any(f.function for f in frames)
        assert all(f.line == 0 and f.source_file == '' for f in frames)
        assert t.totals().get('symbols.bad_input{kind:dwarf}', 0) == 0


def test_hand_written_readers_agree_with_pyelftools(lines_bin):
    """Line rows and aranges decoded by hand equal pyelftools' own decoding, CU by CU
    (the -g C binary and libc's debug file when libc6-dbg is installed)."""
    from elftools.dwarf.aranges import ARanges

    from datadog_checks.host_profiler.symbols.debuginfo import find_debug_file

    files = [read_elf_info(lines_bin['full'])]
    libc = [m.path for m in read_process(os.getpid()).mappings if m.path.endswith('/libc.so.6')]
    if libc:
        dbg = find_debug_file(read_elf_info(libc[0]), libc[0])
        if lines_mod.has_line_tables(dbg):
            files.append(dbg)
    for info in files:
        with open(info.path, 'rb') as f:
            dwarf = lines_mod.dwarf_info(f, info)
            sec = dwarf.debug_aranges_sec
            ref = ARanges(sec.stream, sec.size, dwarf.structs)
            sec.stream.seek(0)
            assert sorted(lines_mod.parse_aranges(sec.stream.read(sec.size))) == sorted(
                (e.begin_addr, e.begin_addr + e.length, e.info_offset) for e in ref.entries if e.length)
            for n, cu in enumerate(dwarf.iter_CUs()):
                if n >= 25:
                    break
                lp = dwarf.line_program_for_CU(cu)
                if lp is None:
                    continue
                states = [e.state for e in lp.get_entries() if e.state is not None]
                expected = [(st.address, 0, 0, st.file) if st.end_sequence else (st.address, 1, st.line, st.file)
                            for st in states]
                lp.stream.seek(lp.program_start_offset)
                data = lp.stream.read(lp.program_end_offset - lp.program_start_offset)
                assert lines_mod.decode_line_program(data, lp.header) == expected


@pytest.mark.parametrize('flags', [('-gdwarf-2', '-O0'), ('-gdwarf-4', '-O2'), ('-g', '-O2'), ('-g', '-gz', '-O2')])
def test_top_die_reader_agrees_with_pyelftools(flags, tmp_path):
    """The CU's DW_AT_stmt_list and DW_AT_comp_dir read from the raw sections (decode_cu's fast
    path: pyelftools would parse the CU's whole abbreviation table) equal pyelftools' top DIE,
    for DWARF 2/4/5 and compressed sections (pyelftools 0.33 cannot read gcc's -gdwarf64); and decode_cu gives the same rows
    either way (pyelftools' path taken when the fast reader declines)."""
    src = tmp_path / 'lines_loop.c'
    src.write_text(LINES_C)
    try:
        binary = compile_c(str(src), tmp_path, cflags=flags)
    except subprocess.CalledProcessError:
        pytest.skip('gcc does not take {}'.format(' '.join(flags)))
    files = [binary]
    libpython = os.path.expanduser('~/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0')
    if flags == ('-g', '-O2') and os.path.exists(libpython):
        files.append(libpython)  # 150 CUs of a real project
    for path in files:
        info = read_elf_info(path)
        with open(path, 'rb') as f:
            dwarf = lines_mod.dwarf_info(f, info, {})
            for cu in dwarf.iter_CUs():
                attrs = cu.get_top_DIE().attributes
                expected = (attrs['DW_AT_stmt_list'].value if 'DW_AT_stmt_list' in attrs else None,
                            lines_mod._text(attrs['DW_AT_comp_dir'].value) if 'DW_AT_comp_dir' in attrs else '')
                assert lines_mod._top_die(dwarf, cu) == expected
            cu_offset = next(dwarf.iter_CUs()).cu_offset
        fast = lines_mod.decode_cu(lines_mod.dwarf_info(open(path, 'rb'), info, {}), cu_offset)
        orig = lines_mod._top_die
        lines_mod._top_die = lambda dwarf, cu: None
        try:
            slow = lines_mod.decode_cu(lines_mod.dwarf_info(open(path, 'rb'), info, {}), cu_offset)
        finally:
            lines_mod._top_die = orig
        assert (list(fast.addrs), list(fast.lines), list(fast.files), fast.names) == (
            list(slow.addrs), list(slow.lines), list(slow.files), slow.names)
        assert len(fast.addrs) > 0


def test_malformed_dwarf_is_counted_not_fatal(lines_bin, tmp_path):
    """A copy whose .debug_line bytes are garbage: frames keep their names, no line, and the
    failure is counted in symbols.bad_input{kind:dwarf}."""
    info = read_elf_info(lines_bin['full'])
    sec = info.sections['.debug_line']
    broken = str(tmp_path / 'lines_broken')
    with open(lines_bin['full'], 'rb') as f:
        data = bytearray(f.read())
    rnd = random.Random(7)
    for k in range(sec.offset, sec.offset + sec.size):
        data[k] = rnd.randrange(256)
    with open(broken, 'wb') as f:
        f.write(data)
    os.chmod(broken, 0o755)
    vaddrs = [v for v, e in zip(text_vaddrs(broken, 100), addr2line(lines_bin['full'], text_vaddrs(broken, 100))) if e]
    frames, t = symbolize_leaves(broken, vaddrs)
    assert any(f.function for f in frames)
    assert not [f for f in frames if f.line]
    assert t.totals().get('symbols.bad_input{kind:dwarf}', 0) == 1  # once: the CU is not retried


def test_decode_budget_defers_and_retries(lines_bin, monkeypatch):
    """With the decode budget spent, frames get no line and are not kept; once the window
    passes, the same address gets its line."""
    monkeypatch.setattr(symbolizer_mod, 'LINE_DECODE_SECONDS', 0.0)
    vaddrs = text_vaddrs(lines_bin['full'], 200)
    vaddr = [v for v, e in zip(vaddrs, addr2line(lines_bin['full'], vaddrs)) if e and e[0] == lines_bin['src']][0]
    p = run_until_ready(lines_bin['full'])
    try:
        proc = read_process(p.pid)
        t = Telemetry()
        s = Symbolizer(t, debug_dirs=(), lines=True)
        addr = load_bias(p.pid, lines_bin['full']) + vaddr
        first = s.symbolize_user(proc, [addr])[0]
        assert first.function and first.line == 0
        assert t.total('symbols.lines.deferred') == 1
        monkeypatch.setattr(symbolizer_mod, 'LINE_DECODE_SECONDS', 1.0)
        s._line_window = (0.0, 0.0)  # the window has passed
        second = s.symbolize_user(proc, [addr])[0]
    finally:
        p.kill()
        p.wait()
    assert (second.source_file, second.line) == addr2line(lines_bin['full'], [vaddr])[0]


@pytest.mark.integration
def test_end_to_end_profile_has_lines(requires_bpf, lines_bin, tmp_path):
    """The real sampler and the `run` command: the OTLP profile's locations in the -g
    program carry the source file in their function and a line that addr2line agrees with."""
    from datadog_checks.host_profiler.cli import main

    config = tmp_path / 'conf.yaml'
    config.write_text(
        'instances:\n  - lock_file: {lock}\n    diagnostics_dir: {tmp}\n    receiver:\n'
        '      samples_per_second: 99\n      comm_patterns: ["^lines_loop$"]\n      unwinding: frame_pointers\n'
        '      symbolizer:\n        lines: true\n'.format(lock=tmp_path / 'lock', tmp=tmp_path))
    p = run_until_ready(lines_bin['full'])
    out = tmp_path / 'out'
    try:
        assert main(['run', '--config', str(config), '--duration', '12', '--interval', '6', '--output', str(out)]) == 0
    finally:
        p.kill()
        p.wait()
    seen = {}
    for name in sorted(os.listdir(out / 'profiles')):
        data = decode_bytes((out / 'profiles' / name).read_bytes())
        d = data.dictionary
        strings = list(d.string_table)
        for loc in d.location_table:
            for ln in loc.lines:
                fn = d.function_table[ln.function_index]
                if strings[fn.filename_strindex] == lines_bin['src'] and ln.line:
                    seen.setdefault(strings[fn.name_strindex], set()).add(ln.line)
    assert 'walk' in seen or 'mix' in seen, seen
    with open(lines_bin['src']) as f:
        source_lines = f.read().splitlines()
    # every line reported for the program is a line of its functions' bodies (mix: 4-8, walk: 9-17)
    bodies = {'mix': range(4, 9), 'walk': range(9, 18), 'main': range(18, 25)}
    for func, nums in seen.items():
        assert all(n in bodies[func] for n in nums), (func, nums, source_lines)
