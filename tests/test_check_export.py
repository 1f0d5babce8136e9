# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The check end to end with its remote peers faked locally: OTLP profiles and health metrics
(decoded with the official protos), symbol uploads (multipart parsed), and the API key kept out
of every log, diagnostics file and flare."""
import logging
import os
import time
import zipfile

import pytest
from tests.fakes.otlp import METRICS_PATH, PROFILES_PATH, FakeOtlp
from tests.fakes.symbol_intake import FakeSymbolIntake
from tests.workloads import compile_c, start

from datadog_checks.host_profiler import HostProfilerCheck
from datadog_checks.host_profiler.profile.otlp import validate

pytestmark = pytest.mark.integration

CANARY = 'CANARY-API-KEY-0123456789abcdef'


def _wait(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_exports_profiles_metrics_and_symbols(requires_bpf, tmp_path, aggregator, dd_run_check, caplog):
    caplog.set_level(logging.DEBUG)
    binary = compile_c('split.c', tmp_path)
    proc = start(binary, 15)
    with FakeOtlp() as otlp, FakeSymbolIntake() as intake:
        endpoint = intake.endpoint(api_key=CANARY)
        instance = {
            'mode': 'standalone',
            'min_collection_interval': 2,
            'lock_file': str(tmp_path / 'lock'),
            'diagnostics_dir': str(tmp_path / 'diag'),
            'receiver': {
                'samples_per_second': 49,
                'pids': [proc.pid],
                'symbol_uploader': {'enabled': True, 'symbol_query_interval': 0, 'symbol_endpoints': [endpoint]},
            },
            'exporters': {
                'otlp_http': [{'endpoint': otlp.url, 'compression': 'zstd', 'headers': {'dd-api-key': CANARY}}],
                'debug': {'verbosity': 'detailed'},
            },
        }
        os.makedirs(tmp_path / 'diag')
        check = HostProfilerCheck('host_profiler', {}, [instance])
        try:
            dd_run_check(check, cancel=False)
            time.sleep(3)
            dd_run_check(check, cancel=False)
            assert check.pipeline.flush(15)
            assert _wait(lambda: any(u.event.get('filename', '').endswith('split') for u in intake.uploads))
            check.diagnostics.write()
        finally:
            check.cancel()
            proc.kill()
            proc.wait()

        profiles = [r for r in otlp.accepted if r.path == PROFILES_PATH]
        assert profiles
        data = profiles[-1].message
        assert validate(data) == []
        pids = {kv.value.int_value for rp in data.resource_profiles for kv in rp.resource.attributes
                if kv.key == 'process.pid'}
        assert proc.pid in pids
        headers = profiles[-1].headers
        assert headers['content-encoding'] == 'zstd' and headers['content-type'] == 'application/x-protobuf'
        assert headers['dd-evp-origin'] == 'host-profiler-standalone'

        # Standalone health metrics go to the same endpoint as OTLP metrics.
        metrics = [r for r in otlp.accepted if r.path == METRICS_PATH]
        assert metrics
        names = {m.name for rm in metrics[-1].message.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
        assert 'host_profiler.sampler.samples' in names and 'host_profiler.process.rss' in names

        upload = next(u for u in intake.uploads if u.event['filename'].endswith('split'))
        assert upload.event['symbol_source'] in ('debug_info', 'symbol_table')
        assert upload.event['origin'] == 'host-profiler-standalone'
        assert check.telemetry.total('symbol_upload.uploaded') >= 1
        aggregator.assert_service_check('host_profiler.can_export', HostProfilerCheck.OK)

    # The key never reaches a log line (at DEBUG, with the detailed debug exporter) or the diagnostics.
    for record in caplog.records:
        assert CANARY not in record.getMessage()
    for name in os.listdir(tmp_path / 'diag'):
        with open(tmp_path / 'diag' / name, 'rb') as f:
            assert CANARY.encode() not in f.read()


def test_auth_error_is_critical_without_the_key(requires_bpf, tmp_path, aggregator, dd_run_check):
    # A workload, so that an interval has samples to export; runs repeat until a profile was
    # refused: under load the first intervals can be empty (the sampler still compiling), and
    # an empty interval sends nothing, which leaves the status at "no export yet" (OK).
    proc = start(compile_c('split.c', tmp_path), 60)
    with FakeOtlp() as otlp:
        otlp.respond(403)
        instance = {
            'mode': 'standalone',
            'min_collection_interval': 1,
            'lock_file': str(tmp_path / 'lock'),
            'diagnostics_dir': str(tmp_path),
            'exporters': {'otlp_http': [{'endpoint': otlp.url, 'headers': {'dd-api-key': CANARY}}]},
        }
        check = HostProfilerCheck('host_profiler', {}, [instance])
        try:
            deadline = time.monotonic() + 60
            while not any(r.path == PROFILES_PATH for r in otlp.requests) and time.monotonic() < deadline:
                dd_run_check(check, cancel=False)
                _wait(lambda: any(r.path == PROFILES_PATH for r in otlp.requests), 1.5)
            assert any(r.path == PROFILES_PATH for r in otlp.requests), 'no profile was exported in 60 s'
            check.pipeline.flush(3)
            aggregator.reset()
            dd_run_check(check, cancel=False)
        finally:
            check.cancel()
            proc.kill()
            proc.wait()
    sc = aggregator.service_checks('host_profiler.can_export')[-1]
    assert sc.status == HostProfilerCheck.CRITICAL
    assert otlp.url in sc.message and '403' in sc.message and CANARY not in sc.message


def test_flare_zip_has_no_secret(requires_bpf, tmp_path):
    from datadog_checks.host_profiler.cli import main

    config = tmp_path / 'conf.yaml'
    config.write_text(
        'init_config:\n'
        'instances:\n'
        '  - lock_file: {lock}\n'
        '    diagnostics_dir: {diag}\n'
        '    exporters:\n'
        '      otlp_http:\n'
        '        - endpoint: https://otlp.datadoghq.com\n'
        '          headers: {{dd-api-key: {key}}}\n'
        '    receiver:\n'
        '      symbol_uploader:\n'
        '        enabled: false\n'
        '        symbol_endpoints: [{{site: datadoghq.com, api_key: {key}}}]\n'.format(
            lock=tmp_path / 'lock', diag=tmp_path, key=CANARY)
    )
    output = tmp_path / 'flare.zip'
    busy = start(compile_c('split.c', tmp_path), 10)  # something to see in the live profile
    try:
        assert main(['flare', '--config', str(config), '--output', str(output), '--duration', '3']) == 0
    finally:
        busy.kill()
        busy.wait()
    with zipfile.ZipFile(output) as z:
        names = set(z.namelist())
        assert {'diagnostics.json', 'config.yaml', 'probe.json', 'live_profile.folded'} <= names
        for name in names:
            assert CANARY.encode() not in z.read(name), name
        assert z.read('live_profile.folded').strip()
