# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Process events (first sample, exec, exit) are handled on a thread of their own: a process that
lives 50 ms gets its metadata however long the drain in progress takes."""
import subprocess
import time

import pytest

from datadog_checks.host_profiler.receiver.receiver import Receiver
from datadog_checks.host_profiler.runtime.telemetry import Telemetry

from .test_sampler import receiver_config, workload  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures('requires_bpf')


def test_first_samples_are_handled_during_a_long_drain(workload, tmp_path):  # noqa: F811
    """Each drain is followed by 1.5 s of the drain thread being busy (as a drain compiling CFI
    tables on a loaded host is): 50 ms processes started meanwhile are still read at their first
    sample, within tens of ms, and their exits are seen."""
    tel = Telemetry()
    rx = Receiver(receiver_config(tmp_path, process_exit_ttl=60.0), telemetry=tel)
    rx.start()
    drain = rx._drain_once
    busy = []

    def long_drain(sampler):
        drain(sampler)
        t0 = time.monotonic()
        time.sleep(1.5)
        busy.append(time.monotonic() - t0)

    rx._drain_once = long_drain
    try:
        time.sleep(0.5)
        shorts = []
        for _ in range(6):
            shorts.append(subprocess.Popen([workload, 'busy', '0.05']))
            time.sleep(0.3)
        for p in shorts:
            assert p.wait(10) == 0
        time.sleep(0.5)
        got = [p.pid for p in shorts if rx.registry.get(p.pid) is not None
               and rx.registry.get(p.pid).exe == workload
               and any('libc' in m.path for m in rx.registry.get(p.pid).mappings)]
        delays = sorted(getattr(rx, 'first_sample_delays', ()))
        print('short processes with metadata', len(got), 'of', len(shorts), 'first sample -> /proc read (ms):',
              [round(d * 1000, 1) for d in delays[-10:]], 'busy drain thread (s):', busy)
        assert busy and max(busy) >= 1.5  # the drain thread was away the whole time
        assert len(got) >= 4, (got, delays)
    finally:
        rx.stop()
        assert rx.join(10)
