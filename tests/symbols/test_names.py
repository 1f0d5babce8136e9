# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Names as people read them, with real binaries built here: Rust (legacy and v0 mangling)
without hashes, C++ in each `receiver.symbolizer.demangle` mode, no `@@GLIBC_2.34` symbol
versions; one end-to-end run with the real sampler finds the clean names in its output.
The name cleaner is fuzzed too (never raises, never hangs)."""
import os
import re
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.workloads import compile_c, load_bias, run_until_ready

from datadog_checks.host_profiler.receiver.processes import read_process
from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.host.elf import read_elf_info
from datadog_checks.host_profiler.symbols.names import (
    DEMANGLE_MODES,
    clean_name,
    libiberty_available,
    strip_template_args,
    strip_version,
)
from datadog_checks.host_profiler.symbols.symbolizer import Symbolizer
from datadog_checks.host_profiler.symbols.symtab import load_symbols

RUST_SOURCE = r'''
use std::collections::HashMap;
#[inline(never)]
fn burn_rust(n: u64) -> u64 { let mut x = 0u64; for i in 0..n { x = x.wrapping_mul(31).wrapping_add(i ^ (x >> 7)); } x }
struct Spinner<T>(T);
impl<T: Copy + Into<u64>> Spinner<T> {
    #[inline(never)]
    fn spin(&self, n: u64) -> u64 { burn_rust(n + self.0.into()) }
}
fn main() {
    println!("ready");
    let mut m = HashMap::new();
    let s = Spinner(3u32);
    loop { let v = s.spin(2_000_000); m.insert(v % 7, v); std::hint::black_box(&m); }
}
'''

CPP_SOURCE = r'''
#include <cstdio>
#include <vector>
namespace ns {
template <typename T> struct Foo {
    T k;
    __attribute__((noinline)) long bar(const std::vector<T>& v) const;
};
template <typename T> long Foo<T>::bar(const std::vector<T>& v) const {
    long s = 0;
    for (int r = 0; r < 20000; r++) for (auto x : v) s = s * 31 + x + k;
    return s;
}
}
int main() {
    ns::Foo<int> f{3};
    std::vector<int> v(64, 1);
    std::printf("ready\n");
    std::fflush(stdout);
    volatile long sink = 0;
    for (;;) sink += f.bar(v);
}
'''

C_LOOP = r'''
#include <stdio.h>
__attribute__((noinline)) long c_spin(long n) { long s = 0; for (long i = 0; i < n; i++) s += i ^ (s >> 3); return s; }
int main(void) { printf("ready\n"); fflush(stdout); volatile long sink = 0; for (;;) sink += c_spin(1000000); }
'''

RUST_HASH = re.compile(r'::h[0-9a-f]{16}\b')
V0_DISAMBIGUATOR = re.compile(r'\[[0-9a-f]{8,}\]')
CXX_FULL = 'ns::Foo<int>::bar(std::vector<int, std::allocator<int> > const&) const'
EXPECTED_CXX = {
    'full': CXX_FULL,
    'templates': 'ns::Foo<int>::bar',
    'simplified': 'ns::Foo::bar',
}

needs_libiberty = pytest.mark.skipif(not libiberty_available(), reason='no libbfd (binutils)')


def sh(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def nm_funcs(path):
    out = {}
    for line in sh('nm', '--defined-only', path).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in 'tTwW':
            out[parts[2]] = int(parts[0], 16)
    return out


@pytest.fixture(scope='module')
def rust_bins(tmp_path_factory):
    rustc = shutil.which('rustc')
    if not rustc:
        pytest.skip('no rustc (scripts/setup.sh installs it)')
    d = tmp_path_factory.mktemp('rust')
    src = d / 'hp.rs'
    src.write_text(RUST_SOURCE)
    out = {}
    for kind, extra in (('legacy', ('-C', 'symbol-mangling-version=legacy')),
                        ('v0', ('-C', 'symbol-mangling-version=v0'))):
        binary = str(d / ('hp_' + kind))
        # opt-level 0, as the C and C++ programs below: the sampler's frame-pointer walk loses
        # the leaf frame of optimized code (seen on main too; see the session report)
        args = [rustc, '-C', 'opt-level=0', '-C', 'force-frame-pointers=yes', '-o', binary, str(src)]
        if kind == 'v0':
            args[1:1] = list(extra)
        sh(*args)
        out[kind] = binary
    return out


@pytest.fixture(scope='module')
def cpp_bin(tmp_path_factory):
    if not shutil.which('g++'):
        pytest.skip('no g++ (scripts/setup.sh installs it)')
    d = tmp_path_factory.mktemp('cpp')
    src = d / 'foo.cc'
    src.write_text(CPP_SOURCE)
    binary = str(d / 'foo_cpp')
    sh('g++', '-O0', '-fno-omit-frame-pointer', '-o', binary, str(src))
    return binary


def test_rust_binaries_are_mangled_as_asked(rust_bins):
    legacy, v0 = nm_funcs(rust_bins['legacy']), nm_funcs(rust_bins['v0'])
    assert any(n.startswith('_ZN') and 'burn_rust' in n and re.search(r'17h[0-9a-f]{16}E$', n) for n in legacy)
    assert any(n.startswith('_R') and 'burn_rust' in n for n in v0)


@needs_libiberty
@pytest.mark.parametrize('kind', ['legacy', 'v0'])
def test_rust_names_have_no_hash(rust_bins, kind):
    """Every function symbol of the binary (its code and the std library's) is demangled,
    with no legacy hash and no v0 crate disambiguator; the running program resolves to
    ``hp::burn_rust`` through the real symbolizer."""
    binary = rust_bins[kind]
    info = read_elf_info(binary)
    with open(binary, 'rb') as f:
        table = load_symbols(f, info)
    names = [table.name_at(i) for i in range(len(table))]
    mangled_prefix = '_R' if kind == 'v0' else '_ZN'
    assert not [n for n in names if n.startswith(mangled_prefix)][:5]
    assert not [n for n in names if RUST_HASH.search(n)][:5]
    assert not [n for n in names if V0_DISAMBIGUATOR.search(n)][:5]
    assert not [n for n in names if '@' in n][:5]

    funcs = nm_funcs(binary)
    p = run_until_ready(binary)
    try:
        bias = load_bias(p.pid, binary)
        proc = read_process(p.pid)
        s = Symbolizer(Telemetry(), debug_dirs=())
        wanted = {n: a for n, a in funcs.items() if 'burn_rust' in n or 'spin' in n and 'Spinner' in n}
        # +1: a non-leaf address is a return address, looked up at -1
        frames = s.symbolize_user(proc, [bias + a + 1 for a in wanted.values()])
        got = sorted(f.function for f in frames)
        assert 'hp::burn_rust' in got, got
        spin = [g for g in got if g.endswith('::spin')]
        assert spin, got
        # legacy mangling keeps no generic arguments; v0 names the instance
        assert spin[0] == ('hp::Spinner<T>::spin' if kind == 'legacy' else '<hp::Spinner<u32>>::spin'), spin
    finally:
        p.kill()
        p.wait()


@needs_libiberty
@pytest.mark.parametrize('mode', DEMANGLE_MODES)
def test_cpp_demangle_modes(cpp_bin, mode):
    """Each mode gives what spec.yaml documents for ``ns::Foo<int>::bar(std::vector<int> const&)
    const``, through the real symbolizer on the running program."""
    funcs = nm_funcs(cpp_bin)
    mangled = [n for n in funcs if 'Foo' in n and 'bar' in n]
    assert len(mangled) == 1, mangled
    mangled = mangled[0]
    assert sh("c++filt", mangled).strip() == CXX_FULL  # here `full` is also what c++filt prints
    p = run_until_ready(cpp_bin)
    try:
        proc = read_process(p.pid)
        s = Symbolizer(Telemetry(), debug_dirs=(), demangle=mode)
        frame = s.symbolize_user(proc, [load_bias(p.pid, cpp_bin) + funcs[mangled] + 1])[0]
        assert frame.function == EXPECTED_CXX.get(mode, mangled)
    finally:
        p.kill()
        p.wait()


def test_versioned_libc_names_lose_their_version(tmp_path):
    """A C program's real stack reaches ``__libc_start_main``, whose .symtab name (libc's
    debug file, libc6-dbg) is ``__libc_start_main@@GLIBC_2.34``: the frame says
    ``__libc_start_main``. Without the debug file the name comes from .dynsym (no suffix
    either), so the assertion holds both ways; the first part checks the debug file case."""
    libc = [m.path for m in read_process(os.getpid()).mappings if re.search(r'/libc\.so\.6$', m.path)][0]
    info = read_elf_info(libc)
    from datadog_checks.host_profiler.symbols.debuginfo import find_debug_file
    dbg = find_debug_file(info, libc)
    if dbg is not None and dbg.has_symtab:
        with open(dbg.path, 'rb') as f:
            raw = load_symbols(f, dbg, demangle_names=False)
        raw_names = {raw.name_at(i) for i in range(len(raw))}
        assert '__libc_start_main@@GLIBC_2.34' in raw_names  # what the file says
        with open(dbg.path, 'rb') as f:
            clean = load_symbols(f, dbg)
        clean_names = {clean.name_at(i) for i in range(len(clean))}
        assert '__libc_start_main' in clean_names and not any('@' in n for n in clean_names)

    binary = compile_c(_write(tmp_path, 'c_loop.c', C_LOOP), tmp_path)
    p = run_until_ready(binary)
    try:
        proc = read_process(p.pid)
        libc_path = [m.path for m in proc.mappings if re.search(r'/libc\.so\.6$', m.path)][0]
        # a return address inside __libc_start_main, as the frame above main's caller has it
        addr = load_bias(p.pid, libc_path) + _symbol_vaddr(libc_path, '__libc_start_main') + 8
        frames = Symbolizer(Telemetry()).symbolize_user(proc, [0, addr])
        assert frames[1].function == '__libc_start_main', frames[1]
    finally:
        p.kill()
        p.wait()


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _symbol_vaddr(path, name):
    for line in sh('nm', '-D', '--defined-only', path).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].split('@')[0] == name:
            return int(parts[0], 16)
    raise AssertionError(name)


@pytest.mark.integration
def test_end_to_end_clean_names(requires_bpf, rust_bins, cpp_bin, tmp_path):
    """The real sampler and the `run` command: the folded stacks name the Rust (legacy and v0)
    and C++ hot functions cleanly, and no frame carries a version suffix or a Rust hash.
    Frame-pointer unwinding (the programs are built with frame pointers): on a crowded host the
    DWARF unwinder's stack copies may be lost, which would test the host, not the names; the
    long interval keeps the sampler's heartbeat (3 intervals) clear of a slow first run."""
    from datadog_checks.host_profiler.cli import main

    c_bin = compile_c(_write(tmp_path, 'c_loop.c', C_LOOP), tmp_path)
    bins = [rust_bins['legacy'], rust_bins['v0'], cpp_bin, c_bin]
    config = tmp_path / 'conf.yaml'
    config.write_text(
        'instances:\n  - lock_file: {lock}\n    diagnostics_dir: {tmp}\n    receiver:\n'
        '      samples_per_second: 99\n      comm_patterns: ["^hp_", "^foo_cpp$", "^c_loop$"]\n'
        '      unwinding: frame_pointers\n'
        '      symbolizer:\n        demangle: simplified\n'.format(lock=tmp_path / 'lock', tmp=tmp_path))
    procs = [run_until_ready(b) for b in bins]
    out = tmp_path / 'out'
    try:
        assert main(['run', '--config', str(config), '--duration', '12', '--interval', '6', '--output', str(out)]) == 0
    finally:
        for p in procs:
            p.kill()
            p.wait()
    stacks = {}
    for line in (out / 'stacks.folded').read_text().splitlines():
        stack, count = line.rsplit(' ', 1)
        comm, frames = stack.split(';', 1) if ';' in stack else (stack, '')
        stacks.setdefault(comm, []).append((frames.split(';'), int(count)))
    every = [f for rows in stacks.values() for frames, _ in rows for f in frames]
    assert every
    assert not [f for f in every if '@@GLIBC' in f or '@GLIBC' in f]
    assert not [f for f in every if RUST_HASH.search(f) or V0_DISAMBIGUATOR.search(f)]
    for comm in ('hp_legacy', 'hp_v0'):
        assert any('hp::burn_rust' in frames for frames, _ in stacks.get(comm, [])), (comm, list(stacks))
    assert any('ns::Foo::bar' in frames for frames, _ in stacks.get('foo_cpp', [])), list(stacks)
    assert any('c_spin' in frames for frames, _ in stacks.get('c_loop', [])), stacks.get('c_loop')
    # libc's frames are named from its debug file's .symtab (libc6-dbg), where most names carry a
    # version: the frame-pointer walk reaches __libc_start_call_main (the frame above main)
    assert any('__libc_start_call_main' in frames for frames, _ in stacks.get('c_loop', [])), stacks.get('c_loop')


# ------------------------------------------------------------------------------ units + fuzz
def test_strip_version_and_templates():
    assert strip_version('__libc_start_main@@GLIBC_2.34') == '__libc_start_main'
    assert strip_version('memcpy@GLIBC_2.2.5') == 'memcpy'
    assert strip_version('plain') == 'plain'
    assert strip_template_args('std::vector<int, std::allocator<int> >::operator[]') == 'std::vector::operator[]'
    assert strip_template_args('ns::Foo<int>::operator<') == 'ns::Foo::operator<'
    assert strip_template_args('ns::Foo<int>::operator<<') == 'ns::Foo::operator<<'
    assert strip_template_args('ns::Foo<int>::operator->') == 'ns::Foo::operator->'
    assert strip_template_args('ns::Foo<int>::operator<=>') == 'ns::Foo::operator<=>'
    assert strip_template_args('broken<') == 'broken<'


@needs_libiberty
def test_full_mode_agrees_with_libstdcxx_on_all_of_libstdcxx():
    """Every C++ symbol of the system's libstdc++ in `full` mode is what libstdc++'s own
    ``__cxa_demangle`` prints (what this profiler printed before the modes existed)."""
    from datadog_checks.host_profiler.symbols.names import _cxa_demangle

    lib = '/usr/lib/x86_64-linux-gnu/libstdc++.so.6'
    if not os.path.exists(lib):
        pytest.skip('no libstdc++ at ' + lib)
    names = sorted({n.split('@')[0] for n in nm_dynamic(lib) if n.startswith('_Z')})
    assert len(names) > 1000
    mismatches = [(n, clean_name(n, 'full'), _cxa_demangle(n)) for n in names
                  if clean_name(n, 'full') != _cxa_demangle(n)]
    assert not mismatches[:5]


def nm_dynamic(path):
    return [line.split()[-1] for line in sh('nm', '-D', '--defined-only', path).splitlines() if line.split()]


MANGLED_SEEDS = ['_ZNK2ns3FooIiE3barERKSt6vectorIiSaIiEE', '_ZN2hp9burn_rust17h4548243520394f6bE',
                 '_RNvCs1234_7mycrate3foo', '_RINvNtC3std3mem8align_ofjEC3foo', '_ZlsRSoRKSs', 'memcpy@@GLIBC_2.14',
                 '_ZN3FooIiEclEv', '_ZNSt6vectorIiSaIiEEixEm.cold']


@settings(max_examples=int(3000 * float(os.environ.get('HOST_PROFILER_FUZZ_SCALE', '1'))), deadline=None,
          database=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(MANGLED_SEEDS), st.randoms(use_true_random=False), st.sampled_from(DEMANGLE_MODES))
def test_fuzz_clean_name(seed, rnd, mode):
    """Mutated mangled names (cut, spliced, bytes replaced or repeated) never raise and give a
    non-empty string (a hang would stop the run); the template stripper only removes characters."""
    s = list(seed)
    for _ in range(rnd.randint(1, 6)):
        op = rnd.randint(0, 3)
        i = rnd.randint(0, len(s))
        if op == 0:
            s[i:i] = rnd.choice('0123456789_ZRNIEKSt<>()@.:vhBCs' + seed)
        elif op == 1 and s:
            del s[i:i + rnd.randint(1, 4)]
        elif op == 2:
            s[i:i] = s[:rnd.randint(0, len(s))]
        else:
            s[i:i] = [rnd.choice('<>(')] * rnd.randint(1, 50)
    name = ''.join(s)[:5000]
    out = clean_name(name, mode)
    assert isinstance(out, str) and (out or not name)
    stripped = strip_template_args(name)
    assert len(stripped) <= len(name)
