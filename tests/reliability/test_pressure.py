# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Reliability: the BPF stack map filled on purpose (tiny `stack_storage_size`, thousands of
distinct stacks at a high rate). Every loss is counted exactly (the kernel's own counters
against `sampler.lost`), and sampling recovers by itself once the pressure drops."""
import ctypes as ct
import importlib.util
import os
import signal
import subprocess
import time

import pytest

from tests import REPO_ROOT

pytestmark = pytest.mark.integration

_SPEC = importlib.util.spec_from_file_location(
    'bench_workloads', os.path.join(REPO_ROOT, 'benchmarks', 'workloads', '__init__.py'))
bw = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bw)


def _kernel_stats(receiver):
    from datadog_checks.host_profiler.receiver.sampler import STATS

    table = receiver._sampler._stats  # the per-CPU `stats` array of the BPF program
    return {name: int(sum(table[ct.c_int(i)])) for i, name in enumerate(STATS)}


def test_stack_map_pressure_counted_exactly_then_recovers(requires_bpf, tmp_path):
    stacks = bw.build('stacks')
    spin = bw.build('spin')
    pressure = [subprocess.Popen([stacks, '20000', '10']) for _ in range(2)]
    calm = subprocess.Popen([spin, str(tmp_path / 'counter')])
    calm.send_signal(signal.SIGSTOP)  # joins in once the pressure is gone
    pids = [p.pid for p in pressure] + [calm.pid]
    # frame-pointer unwinding: user stacks go through the BPF stack map (with `auto`/`dwarf` they
    # are copied and unwound in user space instead, and the stack map only holds kernel stacks)
    pipeline, telemetry = bw.make_pipeline(bw.pipeline_instance(
        str(tmp_path), 999, pids=pids, stack_storage_size=1024, max_stack_keys=4096,
        unwinding='frame_pointers'), 2.0)
    try:
        pipeline.run_once()
        receiver = pipeline.receiver
        for _ in range(4):
            time.sleep(2)
            pipeline.run_once()
        for p in pressure:
            p.kill()
            p.wait()
        time.sleep(2.5)  # two more drains: nothing in the filter runs now, the counters are frozen
        pipeline.run_once()
        kernel = _kernel_stats(receiver)
        counted = {k.split('reason:', 1)[1].rstrip('}'): v for k, v in telemetry.totals().items()
                   if k.startswith('sampler.lost{')}
        samples_during = telemetry.total('sampler.samples')

        calm.send_signal(signal.SIGCONT)
        lost_before = sum(v for k, v in counted.items() if k != 'user_stack_truncated')
        time.sleep(2)
        pipeline.run_once()
        profiles = []
        for _ in range(2):
            time.sleep(2)
            profiles.append(pipeline.run_once().profile)
        lost_after = sum(v for k, v in telemetry.totals().items()
                         if k.startswith('sampler.lost{') and 'truncated' not in k)
        assert receiver.running
    finally:
        bw.close_pipeline(pipeline)
        for p in pressure + [calm]:
            if p.poll() is None:
                p.kill()
                p.wait()

    print('kernel:', {k: v for k, v in kernel.items() if v}, 'counted:', {k: v for k, v in counted.items() if v},
          'samples:', samples_during, 'lost before/after recovery:', lost_before, lost_after)
    # pressure happened
    stack_losses = kernel['user_stack_collision'] + kernel['user_stack_nomem']
    assert stack_losses > 100, kernel
    # every kernel-side loss is reported, exactly
    for reason in ('user_stack_collision', 'user_stack_nomem', 'user_stack_error', 'kernel_stack_collision',
                   'kernel_stack_nomem', 'kernel_stack_error', 'counts_map_full', 'events_lost'):
        assert counted.get(reason, 0) == kernel[reason], (reason, counted, kernel)
    # samples whose stack was lost are still counted as samples (no silent drop)
    assert samples_during + kernel['counts_map_full'] == kernel['_samples'], (samples_during, kernel)
    # recovery: no new loss once the pressure is gone, and complete stacks again
    assert lost_after == lost_before, (lost_before, lost_after)
    calm_stacks = [s for prof in profiles if prof for r in prof.resources if r.pid == calm.pid for s in r.samples]
    assert sum(s.value for s in calm_stacks) > 50
    names = {f.function for s in calm_stacks for f in s.frames}
    assert {'chunk', 'main'} <= names, names  # gcc gives the leaf chunk() no frame, so run() is skipped
