# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Hostile files a profiled process controls: what the symbolizer does with each, and what it costs.

For each case a real process (benchmarks/workloads/hostile_files.py ``jitspin``) runs chrooted
into a directory holding the hostile file; a fresh Symbolizer symbolizes one address of it
(the JIT address for perf-map cases, its own code for ELF cases), timed. Prints a markdown
table: case, resulting function name, time, the refusal counter (``symbols.files.refused``).
A case that takes longer than ``--timeout`` is reported as blocked (its thread is left behind).

    sudo python benchmarks/hostile_files_bench.py [--timeout 20] [--json]
    sudo python benchmarks/hostile_files_bench.py --opener-cost   # the opener vs open(), per file
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'workloads'))

import hostile_files as hf  # noqa: E402

from datadog_checks.host_profiler.receiver.processes import read_process  # noqa: E402
from datadog_checks.host_profiler.runtime.telemetry import Telemetry  # noqa: E402
from datadog_checks.host_profiler.symbols.symbolizer import Symbolizer  # noqa: E402

JIT = hf.ANON_ADDR + 0x10


def _perf_map(root, pid):
    return os.path.join(root, 'tmp', 'perf-{}.map'.format(pid))


def setup_cases(work, jit, secret_dir):
    """name -> (binary for the root, address, function to prepare the root once the pid is known, uid)."""
    def escape_abs(root, pid):
        os.symlink(hf.secret_host_file(os.path.join(secret_dir, 'perf-{}.map'.format(pid))), _perf_map(root, pid))

    def escape_rel(root, pid):
        secret = hf.secret_host_file(os.path.join(secret_dir, 'perf-{}.map'.format(pid)))
        os.symlink(hf.relative_up(root) + secret.lstrip('/'), _perf_map(root, pid))

    def escape_dir(root, pid):
        hf.secret_host_file(os.path.join(secret_dir, 'perf-{}.map'.format(pid)))
        os.rmdir(os.path.join(root, 'tmp'))
        os.symlink(hf.relative_up(root) + secret_dir.lstrip('/'), os.path.join(root, 'tmp'))

    def foreign(root, pid):
        with open(_perf_map(root, pid), 'w') as f:
            f.write('{:x} 100 planted_by_nobody\n'.format(hf.ANON_ADDR))
        os.chown(_perf_map(root, pid), 65534, 65534)

    def fifo(root, pid):
        os.mkfifo(_perf_map(root, pid))

    def dev_zero(root, pid):
        os.makedirs(os.path.join(root, 'dev'), exist_ok=True)
        os.mknod(os.path.join(root, 'dev', 'zero'), 0o20666, os.makedev(1, 5))
        os.symlink('../dev/zero', _perf_map(root, pid))  # relative: the same file seen from the host

    def sparse_map(root, pid):
        hf.sparse_file(_perf_map(root, pid))

    def sparse_debug(root, pid):
        d = os.path.join(root, 'usr', 'lib', 'debug', '.build-id', jit['build_id'][:2])
        os.makedirs(d, exist_ok=True)
        hf.sparse_file(os.path.join(d, jit['build_id'][2:] + '.debug'))

    def good_map(root, pid):
        with open(_perf_map(root, pid), 'w') as f:
            f.write('{:x} 100 jitted_fn\n'.format(hf.ANON_ADDR))

    bomb = hf.with_debugdata_bomb(jit['stripped'], os.path.join(work, 'bomb'))
    bomb4k = hf.with_debugdata_bomb(jit['stripped'], os.path.join(work, 'bomb4k'), prefix=hf.elf_header_claiming(4096))
    bomb60m = hf.with_debugdata_bomb(jit['stripped'], os.path.join(work, 'bomb60m'),
                                     prefix=hf.elf_header_claiming(60 << 20))

    def kib(path):
        return (os.path.getsize(path) - os.path.getsize(jit['stripped'])) // 1024
    many = hf.with_huge_section_table(jit['full'], os.path.join(work, 'many'))

    def nothing(root, pid):
        pass

    return [
        ('perf map in the root (control)', jit['full'], JIT, good_map),
        ('perf map: absolute symlink to a root-only host file', jit['full'], JIT, escape_abs),
        ('perf map: relative ../.. symlink to it', jit['full'], JIT, escape_rel),
        ('perf map: /tmp a directory symlink out of the root', jit['full'], JIT, escape_dir),
        ("perf map owned by nobody, process runs as root", jit['full'], JIT, foreign),
        ('perf map is a FIFO', jit['full'], JIT, fifo),
        ('perf map is a symlink to /dev/zero', jit['full'], JIT, dev_zero),
        ('perf map: 10 GB sparse file', jit['full'], JIT, sparse_map),
        ('debug file (by build id): 10 GB sparse file', jit['stripped'], jit['wait'], sparse_debug),
        ('.gnu_debugdata: xz bomb, 1 GiB of zeros in {} KiB'.format(kib(bomb)), bomb, jit['wait'], nothing),
        ('.gnu_debugdata: xz bomb, ELF header claiming 4 KiB + 1 GiB of zeros', bomb4k, jit['wait'], nothing),
        ('.gnu_debugdata: xz bomb, ELF header claiming 60 MiB + 1 GiB of zeros', bomb60m, jit['wait'], nothing),
        ('ELF section table claims 65,535 sections', many, jit['wait'], nothing),
        ('stripped binary, no debug file (control)', jit['stripped'], jit['wait'], nothing),
    ]


def run_case(work, n, binary, address, prepare, timeout):
    root = hf.make_root(os.path.join(work, 'root{}'.format(n)), binary)
    p = hf.start_in_root(root)
    try:
        prepare(root, p.pid)
        proc = read_process(p.pid)
        t = Telemetry()
        out = {}

        def go():
            s = Symbolizer(t)
            t0 = time.perf_counter()
            frames = s.symbolize_user(proc, [address])
            out['seconds'] = time.perf_counter() - t0
            out['function'] = frames[0].function

        th = threading.Thread(target=go, daemon=True)
        th.start()
        th.join(timeout)
        if th.is_alive():
            return {'function': None, 'seconds': None, 'blocked': True, 'refused': {}}
        refused = {k: v for k, v in t.totals().items()
                   if (k.startswith('symbols.files.refused') or k.startswith('symbols.bad_input')) and v}
        return dict(out, blocked=False, refused=refused)
    finally:
        hf.stop(p)


def opener_cost(rounds=5, n=2000):
    """Microseconds per open+fstat+close of a library: plain open() vs the opener (by path in a
    root, openat2 and walk, and by /proc/self/map_files), best of ``rounds`` (the machine is shared)."""
    from datadog_checks.host_profiler.host import files

    libc = next(m.split()[-1] for m in open('/proc/self/maps') if 'libc.so' in m or 'libc-' in m)
    start, end = next(m.split()[0] for m in open('/proc/self/maps') if m.split()[-1] == libc).split('-')
    op = files.FileOpener()

    def plain():
        with open(libc, 'rb') as f:
            os.fstat(f.fileno())

    def in_root():
        op.open_in_root('/proc/self/root', libc)[0].close()

    def mapped():
        op.open_mapped(os.getpid(), int(start, 16), int(end, 16))[0].close()

    out = {}
    for name, fn in (('open()+fstat', plain), ('opener, in root (openat2)', in_root),
                     ('opener, by map_files', mapped), ('opener, in root (walk)', in_root)):
        if 'walk' in name:
            files._openat2_available = False
        best = min(_time(fn, n) for _ in range(rounds))
        out[name] = round(best / n * 1e6, 1)
    files._openat2_available = None
    return out


def _time(fn, n):
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--timeout', type=float, default=20.0)
    ap.add_argument('--json', action='store_true')
    ap.add_argument('--opener-cost', action='store_true')
    args = ap.parse_args()
    if args.opener_cost:
        for k, v in opener_cost().items():
            print('{}: {} us'.format(k, v))
        return
    work = tempfile.mkdtemp(prefix='hp-hostile-')
    secret_dir = tempfile.mkdtemp(prefix='hp-secret-', dir='/root')
    try:
        jit = hf.build_jitspin(work)
        rows = []
        for n, (name, binary, address, prepare) in enumerate(setup_cases(work, jit, secret_dir)):
            r = run_case(work, n, binary, address, prepare, args.timeout)
            r['case'] = name
            rows.append(r)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(secret_dir, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print('| case | function name | time | counted |')
    print('|---|---|---|---|')
    for r in rows:
        if r['blocked']:
            print('| {} | - | blocked > {:g} s | - |'.format(r['case'], args.timeout))
            continue
        name = r['function'] or '(unknown)'
        if hf.SECRET_FN in name:
            name = '**host file line: {}**'.format(name)
        refused = ', '.join('{} {{{}}}'.format(k.split('{')[0].replace('symbols.', ''), k.split('{', 1)[1].rstrip('}'))
                            for k in r['refused'])
        print('| {} | {} | {:.1f} ms | {} |'.format(r['case'], name, r['seconds'] * 1000, refused or '-'))


if __name__ == '__main__':
    main()
