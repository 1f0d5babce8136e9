# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The check end to end on the real kernel: sampler thread, symbols, OTLP file, metrics."""
import glob
import os
import threading
import time

import pytest
from datadog_checks.dev.utils import get_metadata_metrics

from datadog_checks.host_profiler import HostProfilerCheck
from datadog_checks.host_profiler.profile.folded import folded_counts
from datadog_checks.host_profiler.profile.otlp import decode_bytes, validate

from tests.workloads import compile_c, start

pytestmark = pytest.mark.integration


def _instance(tmp_path, **receiver):
    return {
        'mode': 'standalone',
        'min_collection_interval': 2,
        'lock_file': str(tmp_path / 'host_profiler.lock'),
        'diagnostics_dir': str(tmp_path / 'diag'),
        'receiver': dict({'samples_per_second': 99}, **receiver),
        'exporters': {'file': {'directory': str(tmp_path / 'profiles'), 'formats': ['otlp']}},
    }


def _sampler_threads():
    return [t for t in threading.enumerate() if 'sampler' in t.name.lower() or 'receiver' in t.name.lower()]


def test_check_profiles_a_known_split(requires_bpf, tmp_path, aggregator, dd_run_check):
    binary = compile_c('split.c', tmp_path, defines=['SHARE_A=75'])
    proc = start(binary, 15)
    os.makedirs(tmp_path / 'diag')
    instance = dict(_instance(tmp_path, pids=[proc.pid]), min_collection_interval=5)  # heartbeat stop: 15 s
    check = HostProfilerCheck('host_profiler', {}, [instance])
    try:
        dd_run_check(check, cancel=False)  # first run starts the sampler thread
        # ~800 samples at 99 Hz: the share's standard error is 1.5 points, so 5 points is > 3 sigma.
        time.sleep(8)
        dd_run_check(check, cancel=False)
        profile = check.last_result.profile
    finally:
        check.cancel()
        proc.kill()
        proc.wait()

    counts = folded_counts(profile)
    ours = {stack: n for stack, n in counts.items() if stack.startswith('split;')}
    a = sum(n for stack, n in ours.items() if stack.endswith(';burn_a'))
    b = sum(n for stack, n in ours.items() if stack.endswith(';burn_b'))
    assert a + b >= 0.8 * sum(ours.values()) > 0, ours
    assert abs(a / (a + b) - 0.75) <= 0.05, (a, b)
    # Frame pointers on: the whole chain is there.
    assert any(';main;work;burn_a' in stack for stack in ours), sorted(ours)[:5]

    # The export on disk is a valid OTLP ProfilesData.
    files = sorted(glob.glob(str(tmp_path / 'profiles' / '**' / '*.otlp.pb'), recursive=True))
    assert files
    with open(files[-1], 'rb') as f:
        data = decode_bytes(f.read())
    assert validate(data) == []
    assert data.resource_profiles

    aggregator.assert_service_check('host_profiler.can_sample', HostProfilerCheck.OK)
    for name in ('sampler.samples', 'sampler.lost', 'processes.tracked', 'sampler.unique_stacks', 'check.duration'):
        aggregator.assert_metric('host_profiler.' + name)
    metadata = get_metadata_metrics()
    aggregator.assert_metrics_using_metadata(metadata, check_submission_type=True)
    for name in metadata:  # every submitted metric is a declared one
        aggregator.assert_metric(name, at_least=0)
    aggregator.assert_all_metrics_covered()

    # cancel() stopped the sampler thread, and with it every BPF program.
    deadline = time.monotonic() + 10
    while _sampler_threads() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _sampler_threads()


def test_second_instance_refuses_to_sample(requires_bpf, tmp_path, aggregator, dd_run_check):
    first = HostProfilerCheck('host_profiler', {}, [_instance(tmp_path)])
    second = HostProfilerCheck('host_profiler', {}, [_instance(tmp_path)])
    try:
        dd_run_check(first, cancel=False)
        dd_run_check(second, cancel=False)
        aggregator.assert_service_check('host_profiler.can_sample', HostProfilerCheck.OK, count=1)
        aggregator.assert_service_check('host_profiler.can_sample', HostProfilerCheck.CRITICAL, count=1)
        critical = [sc for sc in aggregator.service_checks('host_profiler.can_sample')
                    if sc.status == HostProfilerCheck.CRITICAL][0]
        assert 'already' in critical.message.lower() and str(os.getpid()) in critical.message
        # The refused instance keeps reporting its own metrics.
        aggregator.assert_metric('host_profiler.process.rss')
    finally:
        first.cancel()
        second.cancel()


def test_bad_config_names_the_key(tmp_path, dd_run_check):
    instance = _instance(tmp_path)
    instance['receiver']['samples_per_second'] = 'fast'
    check = HostProfilerCheck('host_profiler', {}, [instance])
    with pytest.raises(Exception, match='samples_per_second'):
        dd_run_check(check)


def test_missing_headers_is_critical_then_recovers(requires_bpf, tmp_path, aggregator, dd_run_check, monkeypatch, caplog):
    """Headers missing: one actionable line, CRITICAL, metrics still reported, no traceback loop.
    Headers back: the next run samples and the service check turns OK."""
    from datadog_checks.host_profiler.receiver import kernel

    real_headers_dir = kernel.headers_dir
    monkeypatch.setattr(kernel, 'headers_dir', lambda release=None: None)
    check = HostProfilerCheck('host_profiler', {}, [_instance(tmp_path)])
    try:
        dd_run_check(check, cancel=False)
        dd_run_check(check, cancel=False)
        critical = aggregator.service_checks('host_profiler.can_sample')
        assert [sc.status for sc in critical] == [HostProfilerCheck.CRITICAL] * 2
        message = critical[0].message
        assert 'headers' in message and 'scripts/setup.sh' in message and '\n' not in message
        aggregator.assert_metric('host_profiler.process.rss')
        aggregator.assert_metric('host_profiler.check.duration')
        # Logged once, without a traceback, however many runs fail the same way.
        errors = [r for r in caplog.records if 'cannot sample' in r.getMessage()]
        assert len(errors) == 1 and errors[0].exc_info is None

        monkeypatch.setattr(kernel, 'headers_dir', real_headers_dir)
        aggregator.reset()
        dd_run_check(check, cancel=False)
        aggregator.assert_service_check('host_profiler.can_sample', HostProfilerCheck.OK, count=1)
    finally:
        check.cancel()


def test_off_cpu_time_is_a_second_profile(requires_bpf, tmp_path, dd_run_check):
    from datadog_checks.host_profiler.profile.otlp import encode

    proc = start(compile_c('sleeper.c', tmp_path), 10)
    check = HostProfilerCheck('host_profiler', {}, [_instance(tmp_path, pids=[proc.pid], off_cpu_threshold=1.0)])
    try:
        dd_run_check(check, cancel=False)
        time.sleep(3)
        dd_run_check(check, cancel=False)
        profile = check.last_result.profile
    finally:
        check.cancel()
        proc.kill()
        proc.wait()
    (resource,) = [r for r in profile.resources if r.pid == proc.pid]
    off_cpu_ns = sum(s.value for s in resource.off_cpu_samples)
    # ~3 s of wall time, nearly all of it asleep in nanosleep (the first drain may miss the start).
    assert 1.0e9 <= off_cpu_ns <= 4.0e9, off_cpu_ns
    assert any('nanosleep' in f.function or f.function == 'nap' for s in resource.off_cpu_samples for f in s.frames)

    data = encode(profile)
    (rp,) = [rp for rp in data.resource_profiles
             if any(kv.key == 'process.pid' and kv.value.int_value == proc.pid for kv in rp.resource.attributes)]
    strings = data.dictionary.string_table
    types = sorted(strings[p.sample_type.type_strindex] for p in rp.scope_profiles[0].profiles)
    assert types == ['off_cpu', 'samples']
