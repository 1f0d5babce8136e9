# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Reliability: start/cancel cycles of the check. Afterwards none of our BPF programs is left
loaded, no thread is left, and fds and RSS are back near their baseline.
The 100-cycle version is `benchmarks/soak.py --lifecycle`."""
import gc
import importlib.util
import os
import threading
import time

import pytest

from datadog_checks.host_profiler import HostProfilerCheck

pytestmark = pytest.mark.integration

_SPEC = importlib.util.spec_from_file_location(
    'bench_workloads', os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    'benchmarks', 'workloads', '__init__.py'))
bw = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bw)

CYCLES = 15  # each cycle compiles the BPF program (1-2 s here)


def _our_threads():
    return sorted(t.name for t in threading.enumerate() if t.name.startswith('host_profiler') or 'sampler' in t.name)


def test_start_cancel_cycles_leave_nothing_behind(requires_bpf, tmp_path):
    os.makedirs(str(tmp_path / 'diag'), exist_ok=True)
    instance = bw.pipeline_instance(str(tmp_path), 99)
    instance['min_collection_interval'] = 1
    ours = set()

    def cycle():
        check = HostProfilerCheck('host_profiler', {}, [dict(instance)])
        check.run()
        receiver = check.pipeline.receiver
        assert receiver is not None and receiver.running, check.last_result
        ours.update(receiver.program_ids())
        time.sleep(0.05)
        check.run()
        check.cancel()  # non-blocking
        return receiver

    first = cycle()  # warm imports and caches
    assert first.join(15)
    gc.collect()
    threads0, fds0, rss0 = _our_threads(), bw.fd_count(), bw.rss_mb(os.getpid())
    exit_s = []
    for _ in range(CYCLES):
        receiver = cycle()
        t0 = time.monotonic()
        # cancel() does not wait; the host lock is free only once the thread has detached
        # everything, so the next instance (as the Agent rescheduling the check) waits for it
        assert receiver.join(15), 'a sampler thread did not exit'
        exit_s.append(time.monotonic() - t0)
    gc.collect()
    loaded = set(bw.bpf_prog_ids())

    print('programs seen', len(ours), 'left', len(ours & loaded), 'threads', _our_threads(), 'fds', fds0, bw.fd_count(),
          'rss', round(rss0, 1), round(bw.rss_mb(os.getpid()), 1), 'cancel->exit s max', round(max(exit_s), 3))
    assert ours, 'program_ids() reported nothing'
    assert not (ours & loaded), 'BPF programs still loaded: {}'.format(sorted(ours & loaded))
    assert _our_threads() == threads0
    assert bw.fd_count() <= fds0 + 2, (fds0, bw.fd_count())
    assert bw.rss_mb(os.getpid()) - rss0 < 40, (rss0, bw.rss_mb(os.getpid()))
    assert max(exit_s) < 5, exit_s  # the thread leaves promptly after cancel()
