# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Self-profiling (``ddprofiling``): the installed `host-profiler` command profiles itself with
ddtrace and uploads to a local HTTP server standing in for the trace agent. The upload is
decoded as the trace agent would: multipart form, zstd-compressed pprof, decoded with the
protobuf library from a descriptor of google/pprof's profile.proto."""
import email
import email.policy
import http.server
import json
import logging
import os
import socket
import socketserver
import subprocess
import sys
import threading

import pytest
import zstandard
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from tests.workloads import compile_c, start

from datadog_checks.host_profiler.__about__ import __version__
from datadog_checks.host_profiler.runtime.self_profiling import SelfProfiling, profile_tags, upload_url
from datadog_checks.host_profiler.runtime.telemetry import Telemetry

COMMAND = os.path.join(os.path.dirname(sys.executable), 'host-profiler')


# --- the stand-in trace agent ------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
        self.server.uploads.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.send_header('Content-Length', '0')
        self.end_headers()

    def log_message(self, *_):
        pass


class _TCPAgent(http.server.ThreadingHTTPServer):
    def __init__(self):
        super().__init__(('127.0.0.1', 0), _Handler)
        self.uploads = []


class _UnixAgent(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path):
        super().__init__(path, _UnixHandler)
        self.uploads = []


class _UnixHandler(_Handler):
    def address_string(self):
        return 'unix'


@pytest.fixture
def trace_agent():
    server = _TCPAgent()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# --- decoding ------------------------------------------------------------------------------------

def _pprof_profile_class():
    """google/pprof profile.proto, the fields read here (the others are skipped as unknown fields)."""
    f = descriptor_pb2.FileDescriptorProto(name='hp_test_pprof.proto', package='hp_test_pprof', syntax='proto3')
    T = descriptor_pb2.FieldDescriptorProto

    def message(name, fields):
        m = f.message_type.add(name=name)
        for number, fname, ftype, repeated, type_name in fields:
            field = m.field.add(name=fname, number=number, type=ftype,
                                label=T.LABEL_REPEATED if repeated else T.LABEL_OPTIONAL)
            if type_name:
                field.type_name = '.hp_test_pprof.' + type_name

    message('ValueType', [(1, 'type', T.TYPE_INT64, False, None), (2, 'unit', T.TYPE_INT64, False, None)])
    message('Sample', [(1, 'location_id', T.TYPE_UINT64, True, None), (2, 'value', T.TYPE_INT64, True, None)])
    message('Line', [(1, 'function_id', T.TYPE_UINT64, False, None), (2, 'line', T.TYPE_INT64, False, None)])
    message('Location', [(1, 'id', T.TYPE_UINT64, False, None), (4, 'line', T.TYPE_MESSAGE, True, 'Line')])
    message('Function', [(1, 'id', T.TYPE_UINT64, False, None), (2, 'name', T.TYPE_INT64, False, None),
                         (4, 'filename', T.TYPE_INT64, False, None)])
    message('Profile', [(1, 'sample_type', T.TYPE_MESSAGE, True, 'ValueType'),
                        (2, 'sample', T.TYPE_MESSAGE, True, 'Sample'),
                        (4, 'location', T.TYPE_MESSAGE, True, 'Location'),
                        (5, 'function', T.TYPE_MESSAGE, True, 'Function'),
                        (6, 'string_table', T.TYPE_STRING, True, None)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName('hp_test_pprof.Profile'))


def _parts(headers, body):
    content_type = next(v for k, v in headers.items() if k.lower() == 'content-type')
    assert content_type.startswith('multipart/form-data')
    msg = email.message_from_bytes(b'Content-Type: ' + content_type.encode() + b'\r\n\r\n' + body,
                                   policy=email.policy.HTTP)
    return {part.get_param('name', header='content-disposition'): part.get_payload(decode=True)
            for part in msg.iter_parts()}


def _functions_in(pprof_bytes):
    """(function name, file name) of every function some sample's stack goes through."""
    profile = _pprof_profile_class()()
    profile.ParseFromString(pprof_bytes)
    strings = profile.string_table
    functions = {fn.id: (strings[fn.name], strings[fn.filename]) for fn in profile.function}
    locations = {loc.id: loc for loc in profile.location}
    seen = set()
    for sample in profile.sample:
        if not any(sample.value):
            continue
        for location_id in sample.location_id:
            for line in locations[location_id].line:
                seen.add(functions[line.function_id])
    return seen, [strings[t.type] for t in profile.sample_type]


def _config(tmp_path, ddprofiling):
    config = tmp_path / 'conf.yaml'
    lines = ['instances:', '  - lock_file: {}'.format(tmp_path / 'lock'), '    diagnostics_dir: {}'.format(tmp_path),
             '    tags: [team:profiling, self_test]']
    if ddprofiling is not None:
        lines.append('    ddprofiling: {}'.format(json.dumps(ddprofiling)))
    config.write_text('\n'.join(lines) + '\n')
    return config


def _run(tmp_path, config, duration):
    busy = start(compile_c('split.c', tmp_path), 30)  # something to sample, so the profiler works
    try:
        proc = subprocess.run([COMMAND, 'run', '--config', str(config), '--duration', str(duration),
                               '--interval', '4', '--output', str(tmp_path / 'out')],
                              capture_output=True, text=True, timeout=120)
    finally:
        busy.kill()
        busy.wait()
    return proc


# --- end to end ----------------------------------------------------------------------------------

@pytest.mark.integration
def test_run_uploads_profiles_of_its_own_functions(requires_bpf, tmp_path, trace_agent):
    endpoint = 'http://127.0.0.1:{}'.format(trace_agent.server_address[1])
    config = _config(tmp_path, {'enabled': True, 'period': 3, 'endpoint': endpoint})
    proc = _run(tmp_path, config, 8)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / 'out' / 'summary.json').read_text())
    assert summary['samples'] > 0  # the sampler sampled as usual

    # every 3 s over ~8 s of sampling, plus the last one at the stop
    assert len(trace_agent.uploads) >= 2, [u[0] for u in trace_agent.uploads]
    ours = set()
    for path, headers, body in trace_agent.uploads:
        assert path == '/profiling/v1/input'
        parts = _parts(headers, body)
        event = json.loads(parts['event'])
        tags = event['tags_profiler'].split(',')
        assert 'service:host-profiler' in tags
        assert 'version:{}'.format(__version__) in tags
        assert 'team:profiling' in tags  # the instance tags
        assert event['family'] == 'python'
        functions, sample_types = _functions_in(zstandard.ZstdDecompressor().decompressobj().decompress(
            parts['profile.pprof']))
        assert 'cpu-time' in sample_types or 'wall-time' in sample_types, sample_types
        ours |= {(name, filename) for name, filename in functions
                 if '/datadog_checks/host_profiler/' in filename}
    files = {os.path.basename(filename) for _, filename in ours}
    names = {name for name, _ in ours}
    # the command's main loop and the check run, at least
    assert 'cli.py' in files and 'cmd_run' in names, sorted(ours)[:40]
    assert files & {'check.py', 'profiler_pipeline.py', 'receiver.py', 'self_profiling.py'}, files
    assert 'self_test' in proc.stderr  # the tag without a value is reported, not dropped silently


@pytest.mark.integration
def test_nothing_is_sent_when_off(requires_bpf, tmp_path, trace_agent):
    endpoint = 'http://127.0.0.1:{}'.format(trace_agent.server_address[1])
    config = _config(tmp_path, {'enabled': False, 'period': 1, 'endpoint': endpoint})
    proc = _run(tmp_path, config, 4)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / 'out' / 'summary.json').exists()
    assert trace_agent.uploads == []
    assert 'ddtrace' not in proc.stderr


@pytest.mark.integration
def test_refused_uploads_are_counted_and_sampling_goes_on(requires_bpf, tmp_path):
    endpoint = 'http://127.0.0.1:{}'.format(_free_port())  # nothing listens
    config = _config(tmp_path, {'enabled': True, 'period': 1, 'endpoint': endpoint})
    busy = start(compile_c('split.c', tmp_path), 30)
    try:
        proc = subprocess.run([COMMAND, 'check', '--config', str(config), '--times', '4', '--pause', '1.5',
                               '--interval', '15', '--json'], capture_output=True, text=True, timeout=120)
    finally:
        busy.kill()
        busy.wait()
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    metrics = report['metrics']

    def total(name, tag=None):
        return sum(m['value'] for m in metrics if m['metric'] == 'host_profiler.' + name
                   and (tag is None or tag in m['tags']))

    assert total('self_profiling.upload_errors', 'reason:connection') >= 1
    assert total('self_profiling.uploads') == 0
    assert total('sampler.samples') > 0
    assert {sc['status'] for sc in report['service_checks'] if sc['check'] == 'host_profiler.can_sample'} == {'OK'}
    assert 'self-profiling upload to {}/profiling/v1/input failed'.format(endpoint) in proc.stderr
    # the metadata says self-profiling is a feature of this instance
    assert 'self_profiling' in json.dumps(report['metadata'])

    proc = subprocess.run([COMMAND, 'run', '--config', str(config), '--duration', '4', '--interval', '4',
                           '--output', str(tmp_path / 'out')], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 'wrote' in proc.stderr


# --- in-process units ----------------------------------------------------------------------------

def test_agent_integration_profiling_on_means_no_second_profiler(caplog):
    telemetry = Telemetry()
    sp = SelfProfiling({'enabled': True, 'endpoint': 'http://localhost:8126'}, mode='agent', telemetry=telemetry,
                       agent_config={'integration_profiling': True}.get)
    with caplog.at_level(logging.INFO):
        assert sp.start() is False
    assert "integration_profiling is on" in sp.status()['state']
    assert any(r.levelno == logging.INFO and 'integration_profiling' in r.getMessage() for r in caplog.records)
    assert telemetry.gauge_sum('self_profiling.running') == 0


def test_off_is_inert():
    sp = SelfProfiling(None, mode='standalone')
    assert sp.start() is False
    assert sp.status() == {'enabled': False, 'state': 'off'}
    sp.stop()  # nothing to stop


def test_status_is_scrubbed():
    key = 'abcdef0123456789abcdef0123456789'
    sp = SelfProfiling({'enabled': True, 'endpoint': 'https://intake.profile.datadoghq.eu', 'api_key': key},
                       mode='standalone')
    status = sp.status()
    assert status['endpoint'] == 'https://intake.profile.datadoghq.eu/api/v2/profile'
    assert status['agentless'] is True
    assert key not in json.dumps(status)
    sp2 = SelfProfiling({'enabled': True, 'endpoint': 'http://user:secretpw@proxy:8126'}, mode='standalone')
    assert 'secretpw' not in json.dumps(sp2.status())


def test_upload_url_and_tags():
    assert upload_url('http://localhost:8126/') == 'http://localhost:8126/profiling/v1/input'
    assert upload_url('https://intake.profile.us5.datadoghq.com') == \
        'https://intake.profile.us5.datadoghq.com/api/v2/profile'
    assert upload_url('http://collector:9000/custom/path') == 'http://collector:9000/custom/path'
    assert profile_tags(['env:prod', 'a:b:c', 'bare', '']) == ({'env': 'prod', 'a': 'b:c'}, ['bare', ''])


def test_relay_forwards_to_a_unix_socket_trace_agent(tmp_path):
    """Agent mode's default when the Agent sets apm_config.receiver_socket: the relay speaks HTTP
    over that socket; the upload arrives byte for byte with ddtrace's headers."""
    path = str(tmp_path / 'apm.socket')
    server = _UnixAgent(path)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    telemetry = Telemetry()
    try:
        sp = SelfProfiling({'enabled': True, 'endpoint': 'unix://' + path}, mode='agent', telemetry=telemetry)
        status = sp._forward(b'--b\r\nbody', {'Content-Type': 'multipart/form-data; boundary=b',
                                              'DD-EVP-ORIGIN': 'dd-trace-py'})
    finally:
        server.shutdown()
        server.server_close()
    assert status == 200
    assert [(p, b) for p, _, b in server.uploads] == [('/profiling/v1/input', b'--b\r\nbody')]
    assert server.uploads[0][1]['DD-EVP-ORIGIN'] == 'dd-trace-py'
    assert telemetry.total('self_profiling.uploads') == 1
    assert 'DD-API-KEY' not in server.uploads[0][1]  # never sent to a trace agent


# --- lifecycle: it lives exactly as long as the sampler thread -----------------------------------

def _check_instance(tmp_path, endpoint, **extra):
    instance = {
        'mode': 'standalone',
        'min_collection_interval': 3,  # the sampler stops itself after 9 s without a run (a loaded machine)
        'lock_file': str(tmp_path / 'host_profiler.lock'),
        'diagnostics_dir': str(tmp_path),
        'exporters': {'file': {'directory': str(tmp_path / 'profiles'), 'formats': ['otlp']}},
        'ddprofiling': {'enabled': True, 'period': 1, 'endpoint': endpoint},
    }
    instance.update(extra)
    return instance


def _wait(predicate, timeout):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.integration
def test_starts_and_stops_with_the_sampler(requires_bpf, tmp_path, trace_agent, dd_run_check, aggregator):
    import time

    from datadog_checks.dev.utils import get_metadata_metrics
    from ddtrace.profiling.profiler import Profiler

    from datadog_checks.host_profiler import HostProfilerCheck

    endpoint = 'http://127.0.0.1:{}'.format(trace_agent.server_address[1])
    check = HostProfilerCheck('host_profiler', {}, [_check_instance(tmp_path, endpoint)])
    try:
        dd_run_check(check, cancel=False)
        sp = check.pipeline.self_profiling
        assert sp.status()['running'] and sp.status()['state'] == 'running'
        dd_run_check(check, cancel=False)  # its metrics, declared in metadata.csv with their types
        aggregator.assert_metric('host_profiler.self_profiling.running', value=1)
        aggregator.assert_metric('host_profiler.self_profiling.uploads')
        aggregator.assert_metric_has_tag('host_profiler.self_profiling.upload_errors', 'reason:connection')
        aggregator.assert_metrics_using_metadata(get_metadata_metrics(), check_submission_type=True)
        assert check.diagnostics.payload()['extra']['self_profiling']['endpoint'] == endpoint + '/profiling/v1/input'

        # no run for 3 intervals: the sampler thread stops itself, and self-profiling with it
        assert _wait(lambda: not check.pipeline.receiver.running, 40)
        assert sp.join(20) and not sp.status()['running'] and sp.state == 'stopped'
        assert Profiler._active_instance is None
        assert len(trace_agent.uploads) >= 1  # its last profile was flushed on the way out

        # the next run starts both again
        dd_run_check(check, cancel=False)
        assert check.pipeline.receiver.running and sp.status()['running']
        before = len(trace_agent.uploads)
        started = time.monotonic()
        check.cancel()
        assert time.monotonic() - started < 1.0  # cancel() does not wait for the last upload
        assert sp.join(20) and not sp.status()['running']
        assert len(trace_agent.uploads) > before
        assert Profiler._active_instance is None
    finally:
        check.cancel()


@pytest.mark.integration
def test_agent_mode_defaults_to_the_trace_receiver_and_yields_to_integration_profiling(
        requires_bpf, tmp_path, dd_run_check, caplog):
    from unittest import mock

    from datadog_checks.base.stubs import datadog_agent

    from datadog_checks.host_profiler import HostProfilerCheck

    instance = _check_instance(tmp_path, None, mode='agent', receiver={'symbol_uploader': {'enabled': False}})
    del instance['ddprofiling']['endpoint']
    agent = {'api_key': 'agentkey123', 'site': 'datadoghq.com', 'integration_profiling': True,
             'apm_config': {'receiver_port': 8127}}
    lookup = {'api_key': 'agentkey123', 'site': 'datadoghq.com', 'integration_profiling': True,
              'apm_config.receiver_port': 8127}
    with mock.patch.dict(datadog_agent._config, agent), \
            mock.patch.object(datadog_agent, 'get_config', side_effect=lambda k: lookup.get(k, '')):
        check = HostProfilerCheck('host_profiler', {}, [instance])
        try:
            with caplog.at_level(logging.INFO):
                dd_run_check(check, cancel=False)
            status = check.pipeline.self_profiling.status()
        finally:
            check.cancel()
    assert status['endpoint'] == 'http://localhost:8127/profiling/v1/input'
    assert status['running'] is False and 'integration_profiling is on' in status['state']
    assert any('integration_profiling' in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)


@pytest.mark.integration
def test_a_signal_stops_it_with_a_last_upload(requires_bpf, tmp_path, trace_agent):
    """SIGTERM to `host-profiler run`: ddtrace's own signal handler is not left in the way, the run
    exits 0 with its outputs, and the profile of the last seconds is uploaded on the way out."""
    import signal
    import time

    endpoint = 'http://127.0.0.1:{}'.format(trace_agent.server_address[1])
    config = _config(tmp_path, {'enabled': True, 'period': 60, 'endpoint': endpoint})  # no periodic upload
    busy = start(compile_c('split.c', tmp_path), 30)
    try:
        proc = subprocess.Popen([COMMAND, 'run', '--config', str(config), '--duration', '100', '--interval', '4',
                                 '--output', str(tmp_path / 'out')], stderr=subprocess.PIPE, text=True)
        # once sampling (and so self-profiling) runs: the first export is written (BPF compile first)
        assert _wait(lambda: any((tmp_path / 'out' / 'profiles').glob('*.otlp.pb'))
                     if (tmp_path / 'out' / 'profiles').exists() else False, 60)
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        busy.kill()
        busy.wait()
    assert proc.returncode == 0, err
    assert (tmp_path / 'out' / 'summary.json').exists()
    assert len(trace_agent.uploads) == 1, err  # the last upload only, sent once
    event = json.loads(_parts(trace_agent.uploads[0][1], trace_agent.uploads[0][2])['event'])
    assert 'service:host-profiler' in event['tags_profiler'].split(',')


@pytest.mark.integration
def test_flare_says_where_it_sends_and_sends_nothing(requires_bpf, tmp_path, trace_agent):
    import zipfile

    key = 'feedface0123456789abcdef01234567'
    config = _config(tmp_path, {'enabled': True, 'period': 1, 'endpoint': 'https://intake.profile.datadoghq.eu',
                                'api_key': key})
    output = tmp_path / 'flare.zip'
    proc = subprocess.run([COMMAND, 'flare', '--config', str(config), '--output', str(output), '--duration', '2'],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(output) as zf:
        everything = b''.join(zf.read(n) for n in zf.namelist())
        diagnostics = json.loads(zf.read('diagnostics.json'))
    status = diagnostics['extra']['self_profiling']
    assert status['enabled'] is True and status['running'] is False
    assert status['state'].startswith('held: host-profiler flare')
    assert status['endpoint'] == 'https://intake.profile.datadoghq.eu/api/v2/profile' and status['agentless']
    assert key.encode() not in everything and key not in proc.stderr


def test_held_never_starts():
    sp = SelfProfiling({'enabled': True, 'endpoint': 'http://localhost:8126'}, mode='standalone')
    sp.hold('test')
    assert sp.start() is False and sp.status()['state'] == 'held: test'


class _FakeIntakeSession:
    """The agentless intake (a remote Datadog service): records what it is sent, answers `status`."""

    def __init__(self, status):
        self.status = status
        self.sent = []

    def post(self, url, data=None, headers=None, timeout=None):
        self.sent.append((url, dict(headers or {}), data))

        class Response:
            status_code = self.status

        return Response()


def test_agentless_uploads_carry_the_key_and_failures_are_counted(caplog):
    key = 'c0ffee0123456789abcdef0123456789'
    telemetry = Telemetry()
    session = _FakeIntakeSession(202)
    sp = SelfProfiling({'enabled': True, 'endpoint': 'https://intake.profile.datadoghq.eu', 'api_key': key},
                       mode='standalone', telemetry=telemetry, http_factory=lambda _conf: session)
    headers = {'Content-Type': 'multipart/form-data; boundary=b'}
    assert sp._forward(b'payload', dict(headers)) == 202
    url, sent_headers, body = session.sent[0]
    assert url == 'https://intake.profile.datadoghq.eu/api/v2/profile'
    assert sent_headers['DD-API-KEY'] == key and body == b'payload'
    assert telemetry.total('self_profiling.uploads') == 1

    session.status = 403
    with caplog.at_level(logging.WARNING):
        assert sp._forward(b'payload', dict(headers)) == 403
        assert sp._forward(b'payload', dict(headers)) == 403
    assert telemetry.totals()['self_profiling.upload_errors{reason:http_403}'] == 2
    warnings = [r.getMessage() for r in caplog.records if 'self-profiling upload' in r.getMessage()]
    assert len(warnings) == 1 and 'HTTP 403' in warnings[0]  # once per kind of failure
    assert key not in caplog.text and key not in json.dumps(sp.status())


def test_start_leaves_the_signal_handlers_as_they_were(trace_agent):
    """ddtrace chains SIGTERM/SIGINT handlers on import and on start (main thread); ours stay."""
    import signal

    def handler(*_):
        pass

    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    endpoint = 'http://127.0.0.1:{}'.format(trace_agent.server_address[1])
    sp = SelfProfiling({'enabled': True, 'period': 60, 'endpoint': endpoint}, mode='standalone')
    try:
        for s in saved:
            signal.signal(s, handler)
        assert sp.start() is True
        assert signal.getsignal(signal.SIGTERM) is handler and signal.getsignal(signal.SIGINT) is handler
    finally:
        sp.stop(block=True, timeout=20)
        for s, h in saved.items():
            signal.signal(s, h)
    assert len(trace_agent.uploads) == 1  # the last profile, at stop
