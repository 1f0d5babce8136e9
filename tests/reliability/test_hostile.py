# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Reliability: hostile inputs while the whole host is profiled. No crash, and each bad input is counted.

- ELF-looking files under /tmp, truncated or corrupted in their headers, section table,
  symbol table or string table, but whose code is intact: a process maps each one PROT_EXEC
  and spins inside it (so the symbolizer must open it), and the loader is asked to run them.
- A perf-PID.map with garbage lines for a live process running code in anonymous memory.
- A process that changes its comm every millisecond.
"""
import importlib.util
import os
import random
import shutil
import struct
import subprocess
import tempfile
import time

import pytest

from tests import REPO_ROOT

pytestmark = pytest.mark.integration

_SPEC = importlib.util.spec_from_file_location(
    'bench_workloads', os.path.join(REPO_ROOT, 'benchmarks', 'workloads', '__init__.py'))
bw = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bw)

LOADER = '/lib64/ld-linux-x86-64.so.2'
# Variants the ELF reader rejects and counts today; the others are accepted silently (see
# test_each_corrupted_variant_is_counted).
REJECTED = ('shoff_eof', 'truncated', 'shnum_huge', 'phoff_garbage', 'bad_class')
SILENT = ('shdr_garbage', 'symtab_garbage', 'strtab_unterminated')  # once accepted silently, now counted
SECONDS = 12


def _payload(out_dir):
    src = os.path.join(os.path.dirname(_SPEC.origin), 'payload.c')
    so = os.path.join(out_dir, 'payload.so')
    subprocess.run(['gcc', '-O1', '-fPIC', '-shared', '-nostdlib', '-fno-omit-frame-pointer', '-o', so, src],
                   check=True, capture_output=True)
    nm = subprocess.run(['nm', so], capture_output=True, text=True, check=True).stdout
    vaddr = int(next(line.split()[0] for line in nm.splitlines() if line.endswith(' payload_spin')), 16)
    data = open(so, 'rb').read()
    # the executable segment's file offset of payload_spin (PT_LOAD with p_flags & X)
    phoff, = struct.unpack_from('<Q', data, 0x20)
    phentsize, phnum = struct.unpack_from('<HH', data, 0x36)
    for i in range(phnum):
        p_type, p_flags, p_offset, p_vaddr, _, p_filesz = struct.unpack_from('<IIQQQQ', data, phoff + i * phentsize)
        if p_type == 1 and p_flags & 1 and p_vaddr <= vaddr < p_vaddr + p_filesz:
            return data, vaddr - p_vaddr + p_offset
    raise AssertionError('payload_spin not in an executable segment')


def _variants(data, code_end):
    """name -> bytes: each keeps the code intact and breaks something else."""
    rng = random.Random(8)
    shoff, = struct.unpack_from('<Q', data, 0x28)
    shentsize, shnum = struct.unpack_from('<HH', data, 0x3a)
    sections = [struct.unpack_from('<IIQQQQIIQQ', data, shoff + i * shentsize) for i in range(shnum)]
    symtab = next(s for s in sections if s[1] == 2)  # SHT_SYMTAB
    strtab = sections[symtab[6]]  # sh_link
    out = {}
    b = bytearray(data)
    struct.pack_into('<Q', b, 0x28, len(data) + 0x100000)  # section headers beyond EOF
    out['shoff_eof'] = bytes(b)
    out['truncated'] = data[:max(code_end, 0x1100)]  # section headers, symtab, strtab gone
    b = bytearray(data)
    b[shoff:shoff + shnum * shentsize] = bytes(rng.getrandbits(8) for _ in range(shnum * shentsize))
    out['shdr_garbage'] = bytes(b)
    b = bytearray(data)
    struct.pack_into('<HH', b, 0x3c, 0xffff, 0xfffe)  # e_shnum, e_shstrndx
    out['shnum_huge'] = bytes(b)
    b = bytearray(data)
    b[symtab[4]:symtab[4] + symtab[5]] = b'\xff' * symtab[5]  # st_name/st_value out of range
    out['symtab_garbage'] = bytes(b)
    b = bytearray(data)
    b[strtab[4]:strtab[4] + strtab[5]] = b'A' * strtab[5]  # no NUL terminator
    out['strtab_unterminated'] = bytes(b)
    b = bytearray(data)
    struct.pack_into('<Q', b, 0x20, 0xffffffff00)  # program headers nowhere
    out['phoff_garbage'] = bytes(b)
    b = bytearray(data)
    b[4] = 3  # EI_CLASS invalid
    out['bad_class'] = bytes(b)
    return out


def test_hostile_inputs_are_counted_not_fatal(requires_bpf, tmp_path):
    mapbad = bw.build('mapbad')
    flipper = bw.build('comm_flipper')
    bad_dir = tempfile.mkdtemp(prefix='hp-hostile-', dir='/tmp')
    procs = []
    perf_map = None
    pipeline, telemetry = bw.make_pipeline(bw.pipeline_instance(str(tmp_path), 199), 3.0)
    try:
        data, code_off = _payload(bad_dir)
        variants = _variants(data, code_off + 0x100)
        paths = {}
        for name, content in variants.items():
            path = os.path.join(bad_dir, 'bad_' + name)
            with open(path, 'wb') as f:
                f.write(content)
            os.chmod(path, 0o755)
            paths[name] = path
        pipeline.run_once()
        for name, path in paths.items():
            p = subprocess.Popen([mapbad, path, hex(code_off), str(SECONDS)], stdout=subprocess.PIPE, text=True)
            assert p.stdout.readline().startswith('ready'), name
            procs.append(p)
        # JIT-like code in anonymous memory, with a perf map full of garbage around one good line
        jit = subprocess.Popen([mapbad, '--anon', os.path.join(bad_dir, 'payload.so'), hex(code_off), str(SECONDS)],
                               stdout=subprocess.PIPE, text=True)
        addr = int(jit.stdout.readline().split()[1], 16)
        procs.append(jit)
        garbage = ['not a line', 'zzzz 10 x', '{:x}'.format(addr), '-1 -1 neg', '{:x} zz bad_size'.format(addr),
                   '\x00\x01\x02 binary', 'ffffffffffffffffffffffff 10 overflow']
        perf_map = '/tmp/perf-{}.map'.format(jit.pid)
        with open(perf_map, 'w') as f:
            f.write('\n'.join(garbage[:4] + ['{:x} 100 jit_spin'.format(addr)] + garbage[4:]) + '\n')
        procs.append(subprocess.Popen([flipper, str(SECONDS)], stdout=subprocess.DEVNULL))
        profiles = []
        end = time.monotonic() + SECONDS - 1
        while time.monotonic() < end:
            for path in paths.values():  # the loader refuses them; it must not matter
                subprocess.run([LOADER, path], capture_output=True)
            time.sleep(3)
            result = pipeline.run_once()
            assert result.sampling and pipeline.receiver.running
            if result.profile:
                profiles.append(result.profile)
        for p in procs:
            p.wait(30)
        time.sleep(1.2)
        profiles.append(pipeline.run_once().profile)
        assert pipeline.receiver.running and pipeline.receiver.error is None
        totals = telemetry.totals()
    finally:
        bw.close_pipeline(pipeline)
        for p in procs:
            if p.poll() is None:
                p.kill()
        if perf_map and os.path.exists(perf_map):
            os.unlink(perf_map)
        shutil.rmtree(bad_dir, ignore_errors=True)

    frames = [f for prof in profiles if prof for r in prof.resources for s in r.samples for f in s.frames]
    sampled = {name for name, path in paths.items()
               if any(f.mapping is not None and f.mapping.filename.endswith(os.path.basename(path)) for f in frames)}
    # the corrupted files were sampled (frames inside them), and the symbolizer counted them
    assert len(sampled) >= len(paths) - 2, sampled
    # one count per corrupted file the ELF reader rejects (the header-level corruptions)
    bad_elf = totals.get('symbols.bad_input{kind:elf}', 0)
    assert bad_elf >= len(REJECTED), totals
    # every garbage line of the perf map is counted; the good line still names the JIT code
    assert totals.get('symbols.bad_input{kind:perfmap}', 0) == len(garbage), totals
    assert any(f.function == 'jit_spin' for f in frames)
    # the comm flipper was profiled under many names without trouble
    flip_names = {r.comm for prof in profiles if prof for r in prof.resources if r.comm.startswith('flip')}
    thread_names = {s.thread_name for prof in profiles if prof for r in prof.resources for s in r.samples
                    if s.thread_name.startswith('flip')}
    assert len(flip_names | thread_names) > 5, (flip_names, thread_names)
    print('sampled corrupted files:', sorted(sampled), 'bad_input:',
          {k: v for k, v in totals.items() if k.startswith('symbols.bad_input')})


@pytest.mark.parametrize('variant', REJECTED + SILENT)
def test_each_corrupted_variant_is_counted(tmp_path, variant):
    """Unit level (no BPF): each corrupted file, opened and loaded by the symbolizer, counts one bad input."""
    from datadog_checks.host_profiler.runtime.telemetry import Telemetry
    from datadog_checks.host_profiler.host.elf import read_elf_info
    from datadog_checks.host_profiler.symbols.symtab import load_symbols

    data, code_off = _payload(str(tmp_path))
    path = str(tmp_path / variant)
    with open(path, 'wb') as f:
        f.write(_variants(data, code_off + 0x100)[variant])
    telemetry = Telemetry()
    info = read_elf_info(path, telemetry)
    if info is not None:
        try:
            with open(path, 'rb') as f:
                load_symbols(f, info)
        except Exception:  # noqa: BLE001 - the symbolizer's own caller counts what raises
            telemetry.count('symbols.bad_input', 1, ('kind:elf',))
    assert telemetry.total('symbols.bad_input') == 1
