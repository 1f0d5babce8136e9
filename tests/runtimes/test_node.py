# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Node.js through the real sampler: JavaScript frames of a node with --perf-basic-prof are named and
typed v8js; a node without it is named, with how to enable it, in the diagnostics file and the flare."""
import json
import os
import shutil
import subprocess
import time
import zipfile

import pytest

from datadog_checks.host_profiler import HostProfilerCheck
from datadog_checks.host_profiler.profile.model import FRAME_V8JS
from datadog_checks.host_profiler.runtime.flare import build_flare

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not shutil.which('node'), reason='needs node')]

HOT_JS = r'''
function hotJsFunction(n) { let s = 0; for (let i = 0; i < n; i++) { s += Math.sqrt(i) * (i % 7); } return s; }
let total = 0;
const end = Date.now() + 1000 * Number(process.argv[2]);
function tick() { for (let k = 0; k < 50; k++) total += hotJsFunction(5000); if (Date.now() < end) setImmediate(tick); }
tick();
'''


def test_node_frames_typed_v8js_and_node_without_map_named(requires_bpf, tmp_path, dd_run_check):
    script = tmp_path / 'hot.js'
    script.write_text(HOT_JS)
    # cwd: with perf maps on, V8 also writes an isolate-*-v8.log beside it
    with_map = subprocess.Popen(['node', '--perf-basic-prof', str(script), '120'], cwd=str(tmp_path),
                                stdout=subprocess.DEVNULL)
    without = subprocess.Popen(['node', str(script), '120'], cwd=str(tmp_path), stdout=subprocess.DEVNULL)
    instance = {
        'mode': 'standalone',
        'min_collection_interval': 5,
        'lock_file': str(tmp_path / 'lock'),
        'diagnostics_dir': str(tmp_path / 'diag'),
        'receiver': {'samples_per_second': 99, 'pids': [with_map.pid, without.pid],
                     'symbol_uploader': {'enabled': False}},
    }
    check = HostProfilerCheck('host_profiler', {}, [instance])
    named = {}  # kind -> samples with a frame named after a function of hot.js
    try:
        dd_run_check(check, cancel=False)
        for _ in range(3):
            time.sleep(3)
            dd_run_check(check, cancel=False)
            for resource in check.last_result.profile.resources:
                if resource.pid != with_map.pid:
                    continue
                for sample in resource.samples:
                    for f in sample.frames:
                        # TurboFan inlines hotJsFunction into tick: either names a function of the script
                        if 'hot.js:' in f.function:
                            named[f.kind] = named.get(f.kind, 0) + sample.value
                            break
        runtimes = check.diagnostics.payload()['extra']['runtimes']
        check.diagnostics.write()
        with open(check.diagnostics.path) as f:
            written = json.load(f)
        flare = build_flare(str(tmp_path / 'flare.zip'), instance=check.instance,
                            diagnostics_payload=check.diagnostics.payload())
    finally:
        check.cancel()
        for p in (with_map, without):
            p.kill()
            p.wait()
        try:
            os.unlink('/tmp/perf-{}.map'.format(with_map.pid))
        except OSError:
            pass

    assert set(named) == {FRAME_V8JS} and named[FRAME_V8JS] > 0, named
    listed = {n['pid']: n for n in runtimes['node_without_perf_map']}
    assert set(listed) == {without.pid}, listed
    assert '--perf-basic-prof' in listed[without.pid]['how_to_fix']
    assert 'NODE_OPTIONS' in listed[without.pid]['how_to_fix']
    assert listed[without.pid]['executable'].endswith('node')
    assert [n['pid'] for n in written['extra']['runtimes']['node_without_perf_map']] == [without.pid]
    assert check.telemetry.gauges()['node.processes.without_perf_map'] == 1
    with zipfile.ZipFile(flare) as z:
        text = z.read('runtimes.txt').decode()
    assert 'node process {} '.format(without.pid) in text and '--perf-basic-prof' in text
    assert str(with_map.pid) not in text
