# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Reliability: the intake fails for a while (500, 429, slow, connection dropped), then comes back.

Nothing is lost within the queue budget, memory stays bounded, and sampling never pauses.
The 5-minute version is `benchmarks/soak.py --fault`.
"""
import importlib.util
import os
import subprocess
import time

import pytest

from tests.fakes.otlp import FakeOtlp

from tests import REPO_ROOT

pytestmark = pytest.mark.integration

_SPEC = importlib.util.spec_from_file_location(
    'bench_workloads', os.path.join(REPO_ROOT, 'benchmarks', 'workloads', '__init__.py'))
bw = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bw)

FREQ = 99
INTERVAL = 2.0


def _oncpu_s(pid):
    with open('/proc/{}/schedstat'.format(pid)) as f:
        return int(f.read().split()[0]) / 1e9


def test_intake_outage_loses_nothing_and_never_pauses_sampling(requires_bpf, tmp_path):
    spin = bw.build('spin')
    busy = subprocess.Popen([spin, str(tmp_path / 'counter')])
    srv = FakeOtlp(decode=True, keep_bodies=False).start()
    exporters = {'otlp_http': [{
        'endpoint': srv.url, 'timeout': 2, 'queue_size_mb': 16,
        'retry': {'initial_interval': 0.2, 'max_interval': 1.0, 'max_elapsed_time': 0},
    }]}
    # Drains every 0.25 s: a window's samples then match its on-CPU time to within a quarter second
    # (with 1 s drains and 2 s windows, one drain more or less is a 12% error).
    pipeline, telemetry = bw.make_pipeline(bw.pipeline_instance(str(tmp_path), FREQ, exporters, drain_interval=0.25),
                                           INTERVAL)
    # phases: 10 s healthy, 20 s failing (5 s each of 500, 429 + Retry-After, slow, dropped), then healthy
    plan = [(10, None), (5, ('respond', 500)), (5, ('respond', 429)), (5, ('slow', 3.0)), (5, ('close',)),
            (6, 'back')]
    rates = {'normal': [], 'fault': [], 'back': []}
    exported = 0
    rss = []
    try:
        pipeline.run_once()
        time.sleep(INTERVAL)
        pipeline.run_once()  # warm
        for seconds, action in plan:
            phase = 'normal' if action is None else ('back' if action == 'back' else 'fault')
            if action == 'back':
                srv.reset_behaviour()
            elif action and action[0] == 'respond':
                srv.respond(action[1], retry_after='1' if action[1] == 429 else None)
            elif action and action[0] == 'slow':
                srv.slow(action[1])
            elif action:
                srv.close_connection()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                cpu0 = _oncpu_s(busy.pid)
                time.sleep(INTERVAL)
                result = pipeline.run_once()
                cpu1 = _oncpu_s(busy.pid)
                n = sum(s.value for r in result.profile.resources if r.pid == busy.pid for s in r.samples) \
                    if result.profile else 0
                if result.profile is not None and result.profile.resources:
                    exported += 1
                rates[phase].append((n, cpu1 - cpu0))
                rss.append(bw.rss_mb(os.getpid()))
                assert pipeline.receiver.running
        assert pipeline.flush(60), 'the queue did not drain once the intake was back'
        accepted = [r for r in srv.accepted if r.path == '/v1development/profiles']
        dropped = telemetry.total('export.queue.dropped')
        errors = telemetry.total('export.errors')
    finally:
        bw.close_pipeline(pipeline)
        busy.kill()
        busy.wait()
        srv.stop()

    # Nothing lost: every profile of the warm-up and of every phase was delivered, once the intake was back.
    assert dropped == 0
    assert len(accepted) >= exported + 1, (len(accepted), exported)
    assert errors > 0  # the failures were seen (and counted)
    # Sampling never paused: samples of the busy loop per second it ran on a CPU stay at the
    # frequency (its normal rate: a thread always on a CPU gets FREQ samples per second). The
    # first run of each phase is left out: a run holds drains up to 1 s old, so a phase's first
    # window still carries part of the previous phase.
    per_cpu_s = {k: sum(n for n, _ in v[1:]) / sum(c for _, c in v[1:]) for k, v in rates.items() if len(v) > 1}
    print('exported', exported, 'accepted', len(accepted), 'dropped', dropped, 'errors', errors,
          'samples per on-CPU second', {k: round(v, 1) for k, v in per_cpu_s.items()},
          'rss min/max', round(min(rss), 1), round(max(rss), 1))
    assert abs(per_cpu_s['fault'] / FREQ - 1) <= 0.05, per_cpu_s
    assert abs(per_cpu_s['normal'] / FREQ - 1) <= 0.10, per_cpu_s
    # Memory bounded: the queue is within its budget and RSS did not run away.
    assert max(rss) - min(rss) < 60, rss
