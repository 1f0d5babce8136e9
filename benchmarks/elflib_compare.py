# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Before/after of issue #15's host layer (one ELF library, one byte cache, one mapping resolver):
the existing ``unwind_bench.py`` and ``symbols_bench.py`` run from two source trees, interleaved
(base, new, new, base, ...), so that a busy machine's drift hits both alike; plus the ELF header
read of the CFI tables (``unwind.cfi.read_elf_sections``, now ``host.elf.parse_elf``) timed in
each tree, and the CPU time (``time.process_time``, steadier than wall time on a shared machine)
of CFI table builds and ELF header reads. Reports per-metric medians and the new/base ratio.

    python benchmarks/elflib_compare.py --base /tmp/base-tree [--new .] [--rounds 3] [--json]

``--base``: a checkout of the tree to compare with (e.g. ``git archive main | tar -x -C DIR``).
Needs root (unwind_bench stops workloads with ptrace).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

ELF_FILES = ('/lib/x86_64-linux-gnu/libc.so.6', '/usr/bin/python3.11', '/lib64/ld-linux-x86-64.so.2',
             '/usr/lib/x86_64-linux-gnu/libLLVM-15.so.1')

CPU_SNIPPET = r'''
import io, json, mmap, os, sys, time
sys.path.insert(0, sys.argv[1])
from datadog_checks.host_profiler.unwind.cfi import build_cfi_table, read_elf_sections
try:
    from datadog_checks.host_profiler.host.elf import read_elf_info
except ImportError:
    from datadog_checks.host_profiler.symbols.elf import read_elf_info


def cpu_us(fn, n):
    fn()
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n * 1e6


out = {}
for path in sys.argv[2:]:
    if not os.path.exists(path):
        continue
    name = os.path.basename(path)
    with open(path, 'rb') as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        out['cfi_elf_headers_cpu_us.' + name] = cpu_us(lambda: read_elf_sections(m), 200)
        out['symbols_read_elf_info_cpu_us.' + name] = cpu_us(lambda: read_elf_info(path, stream=f), 200)
        if 'LLVM' not in name:  # seconds: left to unwind_bench
            best = min(cpu_us(lambda: build_cfi_table(stream=f, lazy=False), 1) for _ in range(3))
            out['cfi_build_cpu_ms.' + name] = best / 1000
        m.close()

# the symbolizer, warm: 2,000 stacks of 30 frames of the biggest library (CPU per call)
import random
sys.path.insert(0, os.path.join(sys.argv[1], 'benchmarks'))
import symbols_bench as sb
from datadog_checks.host_profiler.runtime.telemetry import Telemetry
lib = sb.biggest_library()
if lib:
    info = read_elf_info(lib)
    with open(lib, 'rb') as f:
        table = sb.load_symbols(f, info)
    proc = sb.fake_process([(lib, info)], 2 ** 22 + 101)
    text = [s for s in info.loads if s.executable][0]
    base = proc.mappings[0].start - text.offset
    sym = sb.Symbolizer(Telemetry(), debug_dirs=('/usr/lib/debug',))
    rnd = random.Random(1)
    hot = [table.starts[rnd.randrange(len(table))] + 1 + rnd.randrange(4) for _ in range(5000)]
    addrs = [rnd.choice(hot) for _ in range(60000)]
    stacks = [[base + a - text.vaddr + text.offset for a in addrs[i:i + 30]] for i in range(0, 60000, 30)]
    for st in stacks[:50]:
        sym.symbolize_user(proc, st)
    t0 = time.process_time()
    for st in stacks:
        sym.symbolize_user(proc, st)
    out['symbolize_user_warm_cpu_us_per_stack30'] = (time.process_time() - t0) / len(stacks) * 1e6

# DWARF line programs: the first 40 CUs of a pyenv libpython (CPU per row of decode_line_program)
import glob
from datadog_checks.host_profiler.symbols import lines as L
libs = sorted(glob.glob(os.path.expanduser('~/.pyenv/versions/3.12*/lib/libpython3.12.so.1.0')))
if libs:
    info = read_elf_info(libs[-1])
    spent = [0.0, 0]
    orig = L.decode_line_program

    def timed(*a, **k):
        t = time.process_time()
        r = orig(*a, **k)
        spent[0] += time.process_time() - t
        spent[1] += len(r)
        return r

    L.decode_line_program = timed
    with open(libs[-1], 'rb') as f:
        lt = L.load_line_table(f, info, 'self', 1 << 40)
        for off in sorted(set(lt.cu_offsets))[:40]:
            L.decode_cu(L.dwarf_info(f, info, lt.inflated), off)
    out['line_program_cpu_us_per_row'] = spent[0] / max(spent[1], 1) * 1e6
print(json.dumps(out))
'''


def run_json(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=1800)
    if p.returncode != 0:
        raise RuntimeError('{} failed: {}'.format(' '.join(cmd), p.stderr.decode()[-2000:]))
    return json.loads(p.stdout.decode())


def one_round(tree, samples, binaries):
    """Metrics of one tree (flat dict name -> value)."""
    py = sys.executable
    out = {}
    ub = run_json([py, os.path.join(tree, 'benchmarks', 'unwind_bench.py'), '--samples', str(samples), '--json'])
    for path, r in ub.get('cfi_build', {}).items():
        name = os.path.basename(path)
        out['cfi_build_ms.' + name] = r['cold_ms_best']
        out['cfi_profiler_table_ms.' + name] = r['profiler_table_cold_ms']
    for name, r in ub.get('unwind', {}).items():
        out['unwind_us_per_sample.' + name] = r['us_per_sample_median']
        out['unwind_first_sample_ms.' + name] = r['first_sample_cold_ms']
    sb = run_json([py, os.path.join(tree, 'benchmarks', 'symbols_bench.py'), '--only', 'big,many',
                   '--binaries', str(binaries), '--json'])
    for key in ('cold_load_table_s', 'cold_load_symbolizer_s', 'warm_table_lookups_per_s',
                'warm_symbolize_user_frames_per_s', 'many_binaries_s', 'peak_cache_mb', 'max_rss_mb'):
        if key in sb:
            out['symbols.' + key] = sb[key]
    out.update(run_json([py, '-c', CPU_SNIPPET, tree, *ELF_FILES]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--base', required=True)
    ap.add_argument('--new', default=os.path.join(HERE, '..'))
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--samples', type=int, default=50)
    ap.add_argument('--binaries', type=int, default=300)
    ap.add_argument('--json', action='store_true')
    args = ap.parse_args()
    trees = {'base': os.path.abspath(args.base), 'new': os.path.abspath(args.new)}
    runs = {'base': [], 'new': []}
    for i in range(args.rounds):
        order = ('base', 'new') if i % 2 == 0 else ('new', 'base')
        for which in order:
            runs[which].append(one_round(trees[which], args.samples, args.binaries))
            print('round {} {} done'.format(i + 1, which), file=sys.stderr)
    keys = sorted(set(runs['base'][0]) & set(runs['new'][0]))
    table = {}
    for k in keys:
        b = statistics.median(r[k] for r in runs['base'] if k in r)
        n = statistics.median(r[k] for r in runs['new'] if k in r)
        table[k] = {'base': round(b, 3), 'new': round(n, 3), 'new_over_base': round(n / b, 3) if b else None}
    if args.json:
        print(json.dumps({'rounds': args.rounds, 'metrics': table}, indent=2))
        return
    print('{:55s} {:>12s} {:>12s} {:>8s}'.format('metric (median of {} rounds)'.format(args.rounds), 'base', 'new',
                                                   'new/base'))
    for k, v in table.items():
        print('{:55s} {:>12} {:>12} {:>8}'.format(k, v['base'], v['new'], v['new_over_base']))


if __name__ == '__main__':
    main()
