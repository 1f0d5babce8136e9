# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Symbolizer benchmarks: cold load of the biggest library found (libLLVM), warm lookups/s,
memory under budget with 1,000 distinct binaries.

    python benchmarks/symbols_bench.py [--binaries 1000] [--budget-mb 16] [--json]
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
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from datadog_checks.host_profiler.runtime.telemetry import Telemetry  # noqa: E402
from datadog_checks.host_profiler.symbols.elf import read_elf_info  # noqa: E402
from datadog_checks.host_profiler.receiver.processes import ProcMapping, ProcessInfo  # noqa: E402
from datadog_checks.host_profiler.symbols.symbolizer import Symbolizer  # noqa: E402
from datadog_checks.host_profiler.symbols.symtab import load_symbols  # noqa: E402


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--binaries', type=int, default=1000)
    ap.add_argument('--budget-mb', type=int, default=16)
    ap.add_argument('--json', action='store_true')
    args = ap.parse_args()
    results = {}
    bench_big(results)
    bench_many(results, args.binaries, args.budget_mb)
    results['max_rss_mb'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for k, v in results.items():
            print('{:36s} {}'.format(k, v))


if __name__ == '__main__':
    main()
