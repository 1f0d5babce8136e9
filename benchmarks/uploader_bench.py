# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Benchmark: extract and upload the symbols of a ~30 MB binary with DWARF to a local fake intake.

    python benchmarks/uploader_bench.py [--binary PATH] [--keep]

Builds (once, cached under /tmp/hp-uploader-bench/) a C program with -g3 of about 30 MB unless
``--binary`` is given, runs the fake intake in a separate process (so its memory is not
counted), then measures, in this process, the seconds from ``report`` to the upload being
acknowledged and the peak extra RSS (VmHWM after resetting it through /proc/self/clear_refs,
minus the RSS before). objcopy's own peak RSS (a child, killable first by the OOM killer) is
reported apart. Run twice: objcopy compressing the debug sections (zstd), and the whole-body
zstd path used when objcopy cannot.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'tests'))

CACHE = os.path.join(tempfile.gettempdir(), 'hp-uploader-bench')


def build_big(units: int = 9) -> str:
    out = os.path.join(CACHE, 'big_{}'.format(units))
    if os.path.exists(out):
        return out
    os.makedirs(CACHE, exist_ok=True)
    objs = []
    procs = []
    for f in range(units):
        src = os.path.join(CACHE, 'u{}.c'.format(f))
        with open(src, 'w') as w:
            for i in range(1000):
                fields = ''.join(' long f{0}_{1}_{2}; double d{0}_{1}_{2};'.format(f, i, j) for j in range(20))
                w.write('struct s{0}_{1} {{{2} }};\n'.format(f, i, fields))
                w.write('long fn{0}_{1}(struct s{0}_{1} *p) {{ long t = 0; for (int k = 0; k < {2}; k++) '
                        't += p->f{0}_{1}_{3} * k; return t; }}\n'.format(f, i, i % 7 + 1, i % 20))
            for i in range(40000):
                w.write('#define BENCH_MACRO_{0}_{1}(x, y) ((x) * {1} + (y) - {0} /* macro info */)\n'.format(f, i))
        obj = src[:-2] + '.o'
        objs.append(obj)
        procs.append(subprocess.Popen(['gcc', '-g3', '-O1', '-c', src, '-o', obj]))
    for p in procs:
        if p.wait() != 0:
            raise SystemExit('gcc failed')
    main = os.path.join(CACHE, 'main.c')
    with open(main, 'w') as w:
        w.write('int main(void){return 0;}\n')
    subprocess.run(['gcc', '-g3', '-o', out + '.tmp', main] + objs, check=True)
    os.replace(out + '.tmp', out)
    return out


def rss_kb(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return 0


def reset_peak() -> bool:
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def run_once(binary: str, port: int, body_zstd: bool, tag: str) -> dict:
    from datadog_checks.host_profiler.runtime.telemetry import Telemetry
    from datadog_checks.host_profiler.uploader import SymbolUploader

    url = 'http://127.0.0.1:{}'.format(port)
    t = Telemetry()
    up = SymbolUploader({'symbol_endpoints': [{'site': 'bench', 'api_key': 'x', 'url': url, 'query_url': url}],
                         'symbol_query_interval': 0}, telemetry=t, mode='standalone', version='bench')
    up.start()
    if body_zstd:
        up.copier._zstd = False  # as if objcopy lacked --compress-debug-sections=zstd
    # warm-up with a small binary so imports/sessions are not counted
    small = os.path.join(CACHE, 'small')
    if not os.path.exists(small):
        with open(small + '.c', 'w') as w:
            w.write('int main(void){return 0;}\n')
        subprocess.run(['gcc', '-g', '-o', small, small + '.c'], check=True)
    import shutil

    warm = os.path.join(CACHE, 'small-' + tag)
    shutil.copyfile(small, warm)
    with open(warm, 'ab') as f:
        f.write(tag.encode())  # distinct file hash
    up.report_file(warm)
    up.wait_idle(30)
    before = rss_kb('VmRSS')
    peak_ok = reset_peak()
    t0 = time.monotonic()
    copy = os.path.join(CACHE, 'big-' + tag)
    shutil.copyfile(binary, copy)
    with open(copy, 'ab') as f:
        f.write(tag.encode())  # a new file hash each run (the fake intake remembers build ids)
    t0 = time.monotonic()
    up.report_file(copy)
    ok = up.wait_idle(120)
    seconds = time.monotonic() - t0
    peak = rss_kb('VmHWM')
    up.close()
    os.unlink(copy)
    os.unlink(warm)
    totals = t.totals()
    return {
        'mode': 'body zstd (objcopy without zstd)' if body_zstd else 'objcopy --compress-debug-sections=zstd',
        'ok': ok and totals.get('symbol_upload.uploaded{symbol_source:debug_info}', 0) >= 2,
        'elf_bytes': os.path.getsize(binary),
        'uploaded_bytes': int(totals.get('symbol_upload.bytes', 0)),
        'seconds': round(seconds, 2),
        'peak_extra_rss_mb': round((peak - before) / 1024, 1) if peak_ok else None,
        # the only waited-for children of this process are objcopy runs
        'objcopy_peak_rss_mb': round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }


def measure(binary: str, body_zstd: bool) -> dict:
    """One run in a fresh process with its own fake intake (which remembers uploaded build ids)."""
    intake = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(HERE), 'tests', 'fakes', 'symbol_intake.py')],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(intake.stdout.readline())
        return run_once(binary, port, body_zstd, 'b' if body_zstd else 'a')
    finally:
        intake.terminate()
        intake.wait(5)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--binary')
    ap.add_argument('--measure', choices=['objcopy_zstd', 'body_zstd'])
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.binary, args.measure == 'body_zstd')))
        return 0
    binary = args.binary or build_big()
    ok = True
    for mode in ('objcopy_zstd', 'body_zstd'):
        out = subprocess.run([sys.executable, os.path.abspath(__file__), '--binary', binary, '--measure', mode],
                             stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
        print(out)
        ok = ok and json.loads(out)['ok']
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
