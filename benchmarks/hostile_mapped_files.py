# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Files a process maps, swapped after it mapped them, as the runtimes read them: CPython
detection (``runtimes/python/detect.py``) and the TLS model of modules exporting
``otel_thread_ctx_v1`` (``runtimes/otel_thread_tls.py``).

    sudo .venv/bin/python benchmarks/hostile_mapped_files.py [--repo DIR]

Each case runs a real process compiled here (a program named ``python3.12`` exporting
``Py_Version`` and ``_PyRuntime``; the OTEP 4947 publisher with static TLS), reads its mappings
while it runs, ends it (so /proc/PID/map_files is gone: the path is what is left, as for a
process whose first sample is handled after it exited), swaps the file, then times
``detect(process)`` and ``ThreadTlsRuntime.observe(process)`` on a thread (a call still blocked
after 5 s is reported as blocked). ``--repo`` runs another checkout (before/after).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

FAKE_PYTHON = r'''
#include <unistd.h>
const unsigned int Py_Version = VERSION;
char _PyRuntime[4096];
int main(void) { _PyRuntime[0] = 1; for (;;) pause(); }
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--repo', default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests.workloads.hostile import call_bounded, swap_mapped_file  # this checkout's, before --repo's

    def timed(fn, limit=5.0):
        out, took = call_bounded(limit, fn)
        if took is None:
            return 'blocked (> {:.0f} s)'.format(limit), None
        if 'error' in out:
            out['error'] = '{}: {}'.format(type(out['error']).__name__, out['error'])
        return out, round(took * 1000, 2)

    def swap(path, kind, other):
        return swap_mapped_file(path, kind, other) if kind else (lambda: None)

    sys.path.insert(0, args.repo)
    from datadog_checks.host_profiler.receiver.processes import read_process
    from datadog_checks.host_profiler.runtime.telemetry import Telemetry
    from datadog_checks.host_profiler.runtimes.otel_thread_tls import ThreadTlsRuntime
    from datadog_checks.host_profiler.runtimes.python import detect as _pkg_detect  # noqa: F401
    det = sys.modules['datadog_checks.host_profiler.runtimes.python.detect']

    tmp = tempfile.mkdtemp(prefix='hp-hostile-maps-')
    os.makedirs(tmp + '/a')
    os.makedirs(tmp + '/b')
    exes = {}
    for name, version in (('a', '0x030C01F0'), ('b', '0x030800F0')):
        src = '{}/{}.c'.format(tmp, name)
        with open(src, 'w') as f:
            f.write(FAKE_PYTHON)
        exes[name] = '{}/{}/python3.12'.format(tmp, name)
        subprocess.run(['gcc', '-O1', '-rdynamic', '-DVERSION=' + version, '-o', exes[name], src], check=True)
    pub = tmp + '/pub_static'
    subprocess.run(['gcc', '-O1', '-pthread', '-DPUB_MAIN', '-DPUB_IMPL', '-fPIE', '-pie',
                    '-Wl,--export-dynamic-symbol=otel_thread_ctx_v1', '-o', pub,
                    os.path.join(args.repo, 'tests', 'workloads', 'otel_thread_publisher.c')], check=True)

    def ended(cmd):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        time.sleep(0.3)
        info = read_process(p.pid)
        p.kill()
        p.wait()
        return info

    rows = []
    for case, kind in (('unchanged (control)', None), ('swapped copy', 'copy'), ('FIFO', 'fifo'),
                       ('symlink to /dev/zero', 'dev_zero'), ('10 GB sparse file', 'sparse')):
        info = ended([exes['a']])
        det._file_cache.clear()
        restore = swap(exes['a'], kind, exes['b'])
        try:
            out, ms = timed(lambda: det.detect(info))
        finally:
            restore()
        if isinstance(out, dict):
            v = out.get('value')
            out = ('CPython ' + v.version) if v is not None else out.get('error', 'None')
        rows.append({'reader': 'detect', 'case': case, 'result': out, 'ms': ms})

        info = ended([pub, '1', '30', '0', '3', 'swap', '-'])
        t = Telemetry()
        rt = ThreadTlsRuntime(telemetry=t)
        restore = swap(pub, kind, '/bin/true')
        try:
            out, ms = timed(lambda: rt.observe(info))
        finally:
            restore()
        if isinstance(out, dict):
            refused = {k: v for k, v in t.totals().items() if k.startswith('symbols.files.refused') and v}
            errors = {k: v for k, v in t.totals().items() if k.startswith('otel_context.tls_errors') and v}
            out = 'registered {} | refused {} | errors {}'.format(rt.processes, refused, errors)
        rows.append({'reader': 'tls', 'case': case, 'result': out, 'ms': ms})
    for r in rows:
        print(json.dumps(r))


if __name__ == '__main__':
    main()
