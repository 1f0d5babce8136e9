# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Reliability: many short-lived processes (half of them exec). No crash, and the process
metadata (registry, `processes.tracked`) is back to its baseline after `process_exit_ttl`.
The 10,000-process / 2-minute version is `benchmarks/soak.py --churn`."""
import importlib.util
import os
import shutil
import subprocess
import time

import pytest

from tests import REPO_ROOT

pytestmark = pytest.mark.integration

_SPEC = importlib.util.spec_from_file_location(
    'bench_workloads', os.path.join(REPO_ROOT, 'benchmarks', 'workloads', '__init__.py'))
bw = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bw)

TOTAL = 2000
SECONDS = 20
TTL = 2.0


def test_churn_of_short_lived_processes(requires_bpf, tmp_path):
    # a comm of our own, so that another churn on the same host does not count
    churn = str(tmp_path / 'chrn{}'.format(os.getpid() % 100000))
    shutil.copy(bw.build('churn'), churn)
    comm = os.path.basename(churn)
    pipeline, telemetry = bw.make_pipeline(bw.pipeline_instance(str(tmp_path), 99, process_exit_ttl=TTL), 2.0)
    try:
        pipeline.run_once()
        time.sleep(2.5)
        pipeline.run_once()
        receiver = pipeline.receiver
        baseline = len(receiver.registry)
        half = TOTAL // 2
        forks = subprocess.Popen([churn, str(half), str(SECONDS), '2'], stdout=subprocess.PIPE, text=True)
        execs = subprocess.Popen([churn, str(TOTAL - half), str(SECONDS), '2', churn], stdout=subprocess.PIPE,
                                 text=True)
        peak = baseline
        seen_pids = set()
        while forks.poll() is None or execs.poll() is None:
            time.sleep(2)
            result = pipeline.run_once()
            assert result.sampling and receiver.running
            peak = max(peak, len(receiver.registry))
            if result.profile:
                seen_pids.update(r.pid for r in result.profile.resources if r.comm == comm)
        started = sum(int(p.stdout.read().split()[-1]) for p in (forks, execs))
        assert started == TOTAL
        after = None
        deadline = time.monotonic() + 3 * TTL + 6
        while time.monotonic() < deadline:
            time.sleep(1.5)
            pipeline.run_once()
            after = len(receiver.registry)
            churn_left = [info.pid for info in receiver.registry if info.comm == comm]
            if not churn_left:
                break
        tracked = telemetry.gauges().get('processes.tracked')
        exits = telemetry.total('processes.exit_events')
        exec_events = telemetry.total('processes.exec_events')
        assert receiver.running and receiver.error is None
    finally:
        bw.close_pipeline(pipeline)

    print('started', started, 'registry baseline/peak/after', baseline, peak, after, 'tracked gauge', tracked,
          'exec/exit events', exec_events, exits, 'churn pids sampled', len(seen_pids))
    # The short-lived processes were seen and tracked, then forgotten after the TTL.
    assert peak > baseline + 10, (peak, baseline)
    assert len(seen_pids) > 10, len(seen_pids)
    assert exits >= TOTAL * 0.95 and exec_events >= (TOTAL - half) * 0.95, (exits, exec_events)
    # every churn process is forgotten; the rest is back near the baseline (other processes of a
    # shared CI host come and go too)
    assert not churn_left, churn_left
    assert after - baseline < (peak - baseline) / 2, (after, baseline, peak)
    assert tracked - baseline < (peak - baseline) / 2, (tracked, baseline, peak)
