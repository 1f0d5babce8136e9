# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Short-lived processes keep their symbols: exec/exit tracepoints read metadata in time, and it
outlives the process until the next export."""
import subprocess
import time

import pytest
from tests.workloads import compile_c

from datadog_checks.host_profiler import HostProfilerCheck

pytestmark = pytest.mark.integration

PROCESSES = 500


def test_500_short_lived_processes_are_symbolized(requires_bpf, tmp_path, dd_run_check):
    binary = compile_c('shortlived.c', tmp_path)
    instance = {
        'mode': 'standalone',
        'min_collection_interval': 5,
        'lock_file': str(tmp_path / 'lock'),
        'diagnostics_dir': str(tmp_path),
        'receiver': {'samples_per_second': 99, 'comm_patterns': ['^shortlived$']},
    }
    check = HostProfilerCheck('host_profiler', {}, [instance])
    try:
        dd_run_check(check, cancel=False)
        running = []
        for _ in range(PROCESSES):  # two at a time: one per core
            running.append(subprocess.Popen([binary, '25']))
            if len(running) == 2:
                running.pop(0).wait()
        for p in running:
            p.wait()
        time.sleep(1.5)  # one more drain
        dd_run_check(check, cancel=False)
        profile = check.last_result.profile
    finally:
        check.cancel()

    total = symbolized = in_burn = 0
    pids = set()
    for resource in profile.resources:
        if resource.comm != 'shortlived':
            continue
        pids.add(resource.pid)
        for sample in resource.samples:
            user = [f for f in sample.frames if f.kind != 'kernel']
            total += sample.value
            if user and user[0].function:  # the leaf is named (not only mapping + address)
                symbolized += sample.value
            if any(f.function == 'burn_short' for f in user):
                in_burn += sample.value
    assert len(pids) >= 0.8 * PROCESSES, len(pids)
    assert total >= PROCESSES  # ~2 samples each at 99 Hz
    assert symbolized >= 0.95 * total, (symbolized, total)
    # Most of their life is spent in burn_short (the rest: the loader and exit).
    assert in_burn >= 0.8 * total, (in_burn, total)
