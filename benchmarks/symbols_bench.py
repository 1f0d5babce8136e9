# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Symbolizer benchmarks: cold load of the biggest library found (libLLVM), warm lookups/s,
memory under budget with 1,000 distinct binaries; demangling cost per symbol table and mode;
DWARF line tables (cold index, per-CU decode, memory) of the largest DWARF-bearing files
found here plus one generated and built by the benchmark.

    python benchmarks/symbols_bench.py [--binaries 1000] [--budget-mb 16] [--json]
        [--only big,many,demangle,lines] [--lines-cus 48] [--lines-funcs 300]
"""
import argparse
import glob
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import statistics
import time
import tracemalloc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from datadog_checks.host_profiler.runtime.telemetry import Telemetry  # noqa: E402
from datadog_checks.host_profiler.host.elf import read_elf_info  # noqa: E402
from datadog_checks.host_profiler.receiver.processes import ProcMapping, ProcessInfo  # noqa: E402
from datadog_checks.host_profiler.symbols.symbolizer import Symbolizer  # noqa: E402
from datadog_checks.host_profiler.symbols.symtab import load_symbols  # noqa: E402
from datadog_checks.host_profiler.symbols import lines as lines_mod  # noqa: E402
from datadog_checks.host_profiler.symbols.debuginfo import find_debug_file  # noqa: E402
from datadog_checks.host_profiler.symbols.names import DEMANGLE_MODES  # noqa: E402


def rss_mb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    return 0.0


def biggest_library():
    cands = [p for p in glob.glob('/usr/lib/x86_64-linux-gnu/libLLVM*.so*') + glob.glob('/usr/lib/*/lib*.so*')
             if os.path.isfile(p) and not os.path.islink(p)]
    return max(cands, key=os.path.getsize) if cands else None


def fake_process(paths_and_infos, pid):
    maps = []
    for i, (path, info) in enumerate(paths_and_infos):
        text = [s for s in info.loads if s.executable][0]
        start = 0x100000000 * (i + 1) + text.offset
        maps.append(ProcMapping(start, start + text.filesz, text.offset, path))
    return ProcessInfo(pid, 1, mappings=maps, root='/')


def bench_big(results):
    lib = biggest_library()
    if lib is None:
        return
    info = read_elf_info(lib)
    results['big_library'] = lib
    results['big_library_mb'] = round(os.path.getsize(lib) / 1e6, 1)
    t0 = time.perf_counter()
    with open(lib, 'rb') as f:
        table = load_symbols(f, read_elf_info(lib))
    results['cold_load_table_s'] = round(time.perf_counter() - t0, 3)
    results['big_library_symbols'] = len(table)
    results['big_library_table_mb'] = round(table.nbytes / 1e6, 2)

    # cold load through the symbolizer (open, headers, debug-file search, table)
    proc = fake_process([(lib, info)], 2 ** 22 + 101)
    text = [s for s in info.loads if s.executable][0]
    base = proc.mappings[0].start - text.offset
    s = Symbolizer(Telemetry(), debug_dirs=('/usr/lib/debug',))
    t0 = time.perf_counter()
    frames = s.symbolize_user(proc, [base + table.starts[len(table) // 2] + 1])
    results['cold_load_symbolizer_s'] = round(time.perf_counter() - t0, 3)
    assert frames[0].function, frames

    # warm lookups: a working set of 5,000 hot functions (names already decoded), then
    # uniformly random symbols of the whole library (most names decoded + demangled cold)
    rnd = random.Random(1)
    hot = [table.starts[rnd.randrange(len(table))] + 1 + rnd.randrange(4) for _ in range(5000)]
    addrs = [rnd.choice(hot) for _ in range(300000)]
    lookup = table.lookup
    for a in hot:
        lookup(a)
    t0 = time.perf_counter()
    for a in addrs:
        lookup(a)
    results['warm_table_lookups_per_s'] = int(len(addrs) / (time.perf_counter() - t0))
    uniform = [table.starts[rnd.randrange(len(table))] + 1 for _ in range(100000)]
    t0 = time.perf_counter()
    for a in uniform:
        lookup(a)
    results['uniform_random_lookups_per_s'] = int(len(uniform) / (time.perf_counter() - t0))

    # warm, through symbolize_user: stacks of 30 frames
    stacks = [[base + a - text.vaddr + text.offset for a in addrs[i:i + 30]] for i in range(0, 60000, 30)]
    for st in stacks[:50]:
        s.symbolize_user(proc, st)
    t0 = time.perf_counter()
    n = 0
    for st in stacks:
        n += len(s.symbolize_user(proc, st))
    results['warm_symbolize_user_frames_per_s'] = int(n / (time.perf_counter() - t0))


def bench_many(results, count, budget_mb):
    if not shutil.which('gcc'):
        return
    d = tempfile.mkdtemp(prefix='hp-symbench-')
    try:
        src = os.path.join(d, 'v.c')
        with open(src, 'w') as f:
            f.write('\n'.join('__attribute__((noinline)) int f{0}(int x) {{ return x * {0} + 1; }}'.format(i)
                              for i in range(300)))
            f.write('\nint main(void) { return f1(2); }\n')
        base = os.path.join(d, 'base')
        subprocess.run(['gcc', '-O0', '-o', base, src], check=True)
        info = read_elf_info(base)
        note = info.sections['.note.gnu.build-id']
        data = bytearray(open(base, 'rb').read())
        paths = []
        for i in range(count):
            data[note.offset + 16:note.offset + 20] = i.to_bytes(4, 'little')
            p = os.path.join(d, 'v{}'.format(i))
            with open(p, 'wb') as f:
                f.write(data)
            paths.append(p)
        text = [s for s in info.loads if s.executable][0]
        funcs = {}
        for line in subprocess.run(['nm', base], stdout=subprocess.PIPE, check=True).stdout.decode().splitlines():
            parts = line.split()
            if len(parts) == 3:
                funcs[parts[2]] = int(parts[0], 16)
        budget = budget_mb << 20
        t = Telemetry()
        s = Symbolizer(t, memory_budget_bytes=budget)
        rss0 = rss_mb()
        peak_cache = 0
        resolved = 0
        t0 = time.perf_counter()
        # 100 processes of 10 binaries each
        for pi in range(0, count, 10):
            chunk = [(p, info) for p in paths[pi:pi + 10]]
            proc = fake_process(chunk, 2 ** 22 + 1000 + pi)
            addrs = [m.start + (funcs['f{}'.format(k % 300)] - text.vaddr) for k, m in enumerate(proc.mappings)]
            frames = s.symbolize_user(proc, addrs)
            resolved += sum(1 for f in frames if f.function)
            peak_cache = max(peak_cache, s.cache_bytes)
        dt = time.perf_counter() - t0
        results.update({
            'distinct_binaries': count,
            'budget_mb': budget_mb,
            'peak_cache_mb': round(peak_cache / 1e6, 2),
            'cache_under_budget': peak_cache <= budget,
            'evictions': int(t.total('symbols.cache.evictions')),
            'resolved_frames': resolved,
            'rss_growth_mb': round(rss_mb() - rss0, 1),
            'many_binaries_s': round(dt, 2),
        })
    finally:
        shutil.rmtree(d, ignore_errors=True)


def bench_demangle(results):
    """Every function name of a table turned into its display name, per mode: what a table
    costs when all its symbols end up in profiles (a name is cleaned once, then cached)."""
    rust = _build_rust_v0()
    libs = [('libLLVM', biggest_library()), ('libstdc++', '/usr/lib/x86_64-linux-gnu/libstdc++.so.6'),
            ('rust_v0', rust)]
    out = {}
    for label, path in libs:
        if not path or not os.path.exists(path):
            continue
        info = read_elf_info(path)
        row = {'symbols': 0}
        for mode in DEMANGLE_MODES:
            with open(path, 'rb') as f:
                table = load_symbols(f, info, demangle_names=mode)
            n = len(table)
            t0 = time.perf_counter()
            for i in range(n):
                table.name_at(i)
            dt = time.perf_counter() - t0
            row['symbols'] = n
            row[mode + '_s'] = round(dt, 3)
            row[mode + '_us_per_symbol'] = round(dt / max(n, 1) * 1e6, 2)
        out[label] = row
    results['demangle'] = out


def _build_rust_v0():
    if not shutil.which('rustc'):
        return None
    d = tempfile.mkdtemp(prefix='hp-demangle-')
    src = os.path.join(d, 'r.rs')
    with open(src, 'w') as f:
        f.write('use std::collections::{HashMap, BTreeMap};\n'
                'fn main() { let mut m: HashMap<String, Vec<u8>> = HashMap::new(); let mut b = BTreeMap::new();'
                ' for i in 0..10 { m.insert(format!("{}", i), vec![i as u8]); b.insert(i, format!("{:?}", m)); }'
                ' println!("{:?}", b.len()); }\n')
    out = os.path.join(d, 'r')
    subprocess.run(['rustc', '-C', 'symbol-mangling-version=v0', '-o', out, src], check=True, capture_output=True)
    return out


def _generate_dwarf_binary(d, cus, funcs):
    """A C program of ``cus`` translation units of ``funcs`` functions (~12 lines each),
    built with -O1 -g: a large line table whose size is known."""
    objs = []
    for c in range(cus):
        src = os.path.join(d, 'u{}.c'.format(c))
        with open(src, 'w') as f:
            for k in range(funcs):
                f.write('long u{0}_f{1}(long x) {{\n  long s = x;\n  for (long i = 0; i < x; i++) {{\n'
                        '    s += i * {1};\n    if (s & {2})\n      s ^= i << 3;\n    else\n      s -= i;\n'
                        '  }}\n  if (s > {1})\n    s = s / 3;\n  return s + {0};\n}}\n'.format(c, k, (k % 7) + 1))
        objs.append(src)
    with open(os.path.join(d, 'main.c'), 'w') as f:
        f.write('long u0_f0(long);\nint main(int c, char **v) { return (int)u0_f0(c); }\n')
    out = os.path.join(d, 'big_dwarf')
    procs = []
    o_files = []
    for src in objs + [os.path.join(d, 'main.c')]:
        o = src[:-2] + '.o'
        o_files.append(o)
        procs.append(subprocess.Popen(['gcc', '-O1', '-g', '-c', '-o', o, src]))
        if len(procs) >= 2:
            assert procs.pop(0).wait() == 0
    for p in procs:
        assert p.wait() == 0
    subprocess.run(['gcc', '-o', out] + o_files, check=True)
    return out


def _largest_dwarf_files():
    found = []
    for p in glob.glob(os.path.expanduser('~/.pyenv/versions/*/lib/libpython*.so.1.0')):
        info = read_elf_info(p)
        if lines_mod.has_line_tables(info):
            found.append((info.sections['.debug_line'].size, p, info))
    out = [(os.path.basename(p), info) for _, p, info in sorted(found)[-1:]]
    libc = '/lib/x86_64-linux-gnu/libc.so.6'
    dbg = find_debug_file(read_elf_info(libc), libc) if os.path.exists(libc) else None
    if lines_mod.has_line_tables(dbg):
        out.append(('libc.so.6 debug file (compressed DWARF, libc6-dbg)', dbg))
    return out


def _bench_line_file(label, info):
    row = {'file': info.path, 'file_mb': round(info.size / 1e6, 1),
           'debug_line_mb': round(info.sections['.debug_line'].size / 1e6, 2),
           'compressed': bool(info.sections['.debug_line'].flags & lines_mod.SHF_COMPRESSED)}
    t0 = time.perf_counter()
    with open(info.path, 'rb') as f:
        lt = lines_mod.load_line_table(f, info, 'self', 1 << 40)
    row['cold_index_s'] = round(time.perf_counter() - t0, 4)
    row['index_kb'] = round(lt.nbytes / 1e3, 1)
    cu_offsets = sorted(set(lt.cu_offsets))
    row['cus'] = len(cu_offsets)
    times = []
    rows = 0
    t_all = time.perf_counter()
    with open(info.path, 'rb') as f:
        for off in cu_offsets:
            t0 = time.perf_counter()
            cu = lines_mod.decode_cu(lines_mod.dwarf_info(f, info, lt.inflated), off)
            times.append((time.perf_counter() - t0, off))
            rows += len(cu.addrs)
            lt.cus[off] = cu
            lt.cu_bytes += cu.nbytes
    row['decode_all_s'] = round(time.perf_counter() - t_all, 2)
    # transient memory of one decode (the largest CU), apart: tracemalloc slows the decode 3x
    slowest = max(times)[1] if times else None
    if slowest is not None:
        with open(info.path, 'rb') as f:
            tracemalloc.start()
            lines_mod.decode_cu(lines_mod.dwarf_info(f, info, dict(lt.inflated) if lt.inflated else None), slowest)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        row['largest_cu_decode_peak_mb'] = round(peak / 1e6, 1)
    times = [t for t, _ in times]
    row['rows'] = rows
    row['decode_us_per_row'] = round(sum(times) / max(rows, 1) * 1e6, 2)
    row['cu_decode_median_ms'] = round(statistics.median(times) * 1e3, 1) if times else 0
    row['cu_decode_max_ms'] = round(max(times) * 1e3, 1) if times else 0
    row['all_cus_table_mb'] = round(lt.nbytes / 1e6, 2)
    return label, row


def bench_lines(results, cus, funcs):
    out = {}
    d = tempfile.mkdtemp(prefix='hp-linesbench-')
    try:
        if shutil.which('gcc') and cus > 0:
            t0 = time.perf_counter()
            big = _generate_dwarf_binary(d, cus, funcs)
            results['lines_generated_build_s'] = round(time.perf_counter() - t0, 1)
            files = [('generated ({} CUs x {} functions, gcc -O1 -g)'.format(cus, funcs), read_elf_info(big))]
        else:
            files = []
        for label, info in files + _largest_dwarf_files():
            k, row = _bench_line_file(label, info)
            out[k] = row
    finally:
        shutil.rmtree(d, ignore_errors=True)
    results['lines'] = out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--binaries', type=int, default=1000)
    ap.add_argument('--budget-mb', type=int, default=16)
    ap.add_argument('--json', action='store_true')
    ap.add_argument('--only', default='big,many,demangle,lines')
    ap.add_argument('--lines-cus', type=int, default=48)
    ap.add_argument('--lines-funcs', type=int, default=300)
    args = ap.parse_args()
    only = set(args.only.split(','))
    results = {}
    if 'big' in only:
        bench_big(results)
    if 'many' in only:
        bench_many(results, args.binaries, args.budget_mb)
    if 'demangle' in only:
        bench_demangle(results)
    if 'lines' in only:
        bench_lines(results, args.lines_cus, args.lines_funcs)
    results['max_rss_mb'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for k, v in results.items():
            print('{:36s} {}'.format(k, v))


if __name__ == '__main__':
    main()
