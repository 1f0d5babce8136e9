# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
import gc
import time

from datadog_checks.host_profiler.runtime.process_metrics import ProcessMetrics
from datadog_checks.host_profiler.runtime.telemetry import COUNT, GAUGE, Telemetry


def _by_name(snapshot):
    out = {}
    for m in snapshot:
        out.setdefault(m.name, []).append(m)
    return out


def test_collect_puts_every_metric_with_its_type():
    t = Telemetry()
    pm = ProcessMetrics(t)
    try:
        pm.collect()
        # burn a little CPU and force collections so the second collect has deltas
        deadline = time.process_time() + 0.05
        while time.process_time() < deadline:
            sum(range(1000))
        garbage = [[i] for i in range(1000)]
        for gen in (0, 1, 2):
            gc.collect(gen)
        del garbage
        pm.collect()
        snap = _by_name(t.snapshot())
    finally:
        pm.close()

    for name in ('process.cpu.user', 'process.cpu.system', 'process.rss', 'process.threads', 'process.open_fds'):
        assert name in snap, name
        assert [m.type for m in snap[name]] == [GAUGE], name
    assert snap['process.rss'][0].value > 1 << 20
    assert snap['process.threads'][0].value >= 1
    assert snap['process.open_fds'][0].value >= 3
    assert snap['process.cpu.user'][0].value > 0
    assert 0 <= snap['process.cpu.user'][0].value < 64

    gens = {m.tags: m for m in snap['python.gc.collections']}
    assert set(gens) == {('generation:0',), ('generation:1',), ('generation:2',)}
    assert all(m.type == COUNT for m in gens.values())
    assert all(m.value >= 1 for m in gens.values())
    pause = snap['python.gc.pause']
    assert [m.type for m in pause] == [COUNT]
    assert 0 < pause[0].value < 10


def test_counts_are_deltas_and_gc_callback_removed_on_close():
    t = Telemetry()
    pm = ProcessMetrics(t)
    pm.collect()
    t.snapshot()
    pm.collect()  # nothing forced in between: generation 2 delta is most likely 0
    snap = _by_name(t.snapshot())
    assert all(m.value >= 0 for m in snap['python.gc.collections'])
    assert pm._gc_timer in gc.callbacks
    pm.close()
    pm.close()
    assert pm._gc_timer not in gc.callbacks


def test_cpu_rate_uses_elapsed_time_between_collects():
    t = Telemetry()
    now = [100.0]
    pm = ProcessMetrics(t, measure_gc_pause=False, clock=lambda: now[0])
    times = iter([(1.0, 0.5), (3.0, 1.5)])
    pm._cpu_times = lambda: next(times)
    pm.collect()
    now[0] = 104.0
    pm.collect()
    gauges = t.gauges()
    assert gauges['process.cpu.user'] == 0.5  # 2 CPU s over 4 s
    assert gauges['process.cpu.system'] == 0.25
    assert 'python.gc.pause' not in t.totals()


def test_dropped_instance_removes_its_gc_hook():
    before = len(gc.callbacks)
    pm = ProcessMetrics(Telemetry())
    assert len(gc.callbacks) == before + 1
    del pm
    gc.collect()
    assert len(gc.callbacks) == before
