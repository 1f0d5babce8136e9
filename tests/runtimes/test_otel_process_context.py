# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The OTel process context (OTEP 4719) reader, against real publishers: a C program built here that
follows the spec (memfd named OTEL_CTX, header, fence, timestamp last, the update protocol), whose
payloads the tests encode with the protobuf library, and the real dd-trace-py of the venv."""
import os
import subprocess
import sys
import textwrap
import time

import pytest
from google.protobuf.internal.encoder import _VarintBytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from tests.workloads import compile_c

from datadog_checks.host_profiler.profile.builder import resource_attributes
from datadog_checks.host_profiler.receiver.processes import ProcessRegistry
from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.runtimes import otel_process_context as opc
from datadog_checks.host_profiler.runtimes.otel_process_context import (
    ContextReadError,
    ProcessContextReader,
    decode_payload,
    find_mapping,
    read_context,
)

pytestmark = pytest.mark.usefixtures('requires_root')  # reads /proc/PID/mem of other processes


# ---------------------------------------------------------------------------- payloads


def _any(value):
    if isinstance(value, list):
        return common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[_any(v) for v in value]))
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int):
        return common_pb2.AnyValue(int_value=value)
    return common_pb2.AnyValue(string_value=value)


def encode_context(resource, extra=None):
    """``ProcessContext { Resource resource = 1; repeated KeyValue attributes = 2; }`` from the official
    Resource and KeyValue messages; the two outer fields are framed as the .proto defines them
    (opentelemetry-proto 1.45 has no ProcessContext class)."""
    r = resource_pb2.Resource(attributes=[common_pb2.KeyValue(key=k, value=_any(v)) for k, v in resource.items()])
    body = r.SerializeToString()
    out = b'\x0a' + _VarintBytes(len(body)) + body
    for k, v in (extra or {}).items():
        kv = common_pb2.KeyValue(key=k, value=_any(v)).SerializeToString()
        out += b'\x12' + _VarintBytes(len(kv)) + kv
    return out


RESOURCE_V1 = {
    'service.name': 'checkout',
    'service.version': '1.4.2',
    'deployment.environment.name': 'prod',
    'service.instance.id': '7f1c9a1e-0c5b-4d1e-9e55-3f4c2c1b7a10',
    'telemetry.sdk.language': 'c',
}
EXTRA = {'threadlocal.schema_version': 'tlsdesc_v1_dev',
         'threadlocal.attribute_key_map': ['datadog.local_root_span_id', 'http.route']}


# ---------------------------------------------------------------------------- the C publisher


class Publisher:
    def __init__(self, binary, tmp_path):
        self.tmp_path = tmp_path
        self.proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.pid = self.proc.pid
        self._files = 0

    def payload_file(self, payload):
        self._files += 1
        path = self.tmp_path / 'payload{}.pb'.format(self._files)
        path.write_bytes(payload)
        return path

    def cmd(self, line):
        self.proc.stdin.write(line + '\n')
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def publish(self, payload):
        answer = self.cmd('publish {}'.format(self.payload_file(payload)))
        assert answer.startswith('ready '), answer
        return int(answer.split()[1], 16)

    def update(self, payload):
        answer = self.cmd('update {}'.format(self.payload_file(payload)))
        assert answer.startswith('updated '), answer
        return int(answer.split()[1])

    def poke(self, offset, data):
        assert self.cmd('poke {} {}'.format(offset, data.hex())) == 'poked'

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('exit\n')
                self.proc.stdin.flush()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope='module')
def publisher_binary(tmp_path_factory):
    return compile_c('otel_ctx_publisher.c', tmp_path_factory.mktemp('otel_ctx'), cflags=('-O1', '-pthread'))


@pytest.fixture
def publisher(publisher_binary, tmp_path):
    p = Publisher(publisher_binary, tmp_path)
    yield p
    p.close()


def maps_of(pid):
    with open('/proc/{}/maps'.format(pid)) as f:
        return f.read()


# ---------------------------------------------------------------------------- discovery


def test_find_mapping_matches_the_three_names_by_prefix_and_nothing_else():
    def line(start, perms, path):
        return '{:x}-{:x} {} 00000000 00:01 249 {}'.format(start, start + 0x1000, perms, path)

    assert find_mapping(line(0x7F0000001000, 'rw-p', '/memfd:OTEL_CTX (deleted)')) == 0x7F0000001000
    assert find_mapping(line(0x7F0000002000, 'rw-p', '[anon_shmem:OTEL_CTX]')) == 0x7F0000002000
    assert find_mapping(line(0x7F0000003000, 'rw-p', '[anon:OTEL_CTX]')) == 0x7F0000003000
    assert find_mapping(line(0x7F0000004000, 'r-xp', '/memfd:OTEL_CTX (deleted)')) == 0  # executable: not a context
    assert find_mapping(line(0x7F0000005000, 'rw-p', '/tmp/OTEL_CTX')) == 0
    assert find_mapping(line(0x7F0000006000, 'rw-p', '[anon:something OTEL_CTX]')) == 0
    assert find_mapping('') == 0
    text = '\n'.join([line(0x400000, 'r-xp', '/usr/bin/app'), line(0x7F0000007000, 'rw-p', '/memfd:OTEL_CTX (deleted)')])
    assert find_mapping(text) == 0x7F0000007000


def test_a_spec_publisher_is_found_in_its_maps_and_read(publisher):
    address = publisher.publish(encode_context(RESOURCE_V1, EXTRA))
    text = maps_of(publisher.pid)
    assert 'OTEL_CTX' in text
    # On kernels without CONFIG_ANON_VMA_NAME prctl fails and the memfd name shows, with ' (deleted)'.
    assert find_mapping(text) == address
    ctx = read_context(publisher.pid, address)
    assert ctx.resource == RESOURCE_V1
    assert ctx.thread_local_schema == 'tlsdesc_v1_dev'
    assert ctx.attribute_key_map == ('datadog.local_root_span_id', 'http.route')
    assert ctx.published_at_ns > 0 and ctx.address == address


def test_an_anonymous_mapping_is_found_only_when_the_kernel_could_name_it(publisher):
    assert publisher.cmd('anon') == 'anon'
    address = publisher.publish(encode_context(RESOURCE_V1))
    named = '[anon:OTEL_CTX]' in maps_of(publisher.pid)  # needs CONFIG_ANON_VMA_NAME
    assert find_mapping(maps_of(publisher.pid)) == (address if named else 0)
    # the header is there either way: only discovery depends on the name (the spec: no name, no context)
    assert read_context(publisher.pid, address).resource == RESOURCE_V1


# ---------------------------------------------------------------------------- per drain: cache, updates


def _reader():
    telemetry = Telemetry()
    return ProcessContextReader(telemetry), telemetry


def _counts(telemetry):
    return telemetry.totals()


def test_the_context_is_read_once_then_only_its_timestamp_until_it_changes(publisher):
    publisher.publish(encode_context(RESOURCE_V1, EXTRA))
    registry = ProcessRegistry()
    info, _ = registry.ensure(publisher.pid)
    assert info.otel_context_address  # found by the registry's own maps read
    reader, telemetry = _reader()

    reader.update(registry, [publisher.pid], time.monotonic())
    first = info.otel_context
    assert first.resource['service.version'] == '1.4.2'
    assert telemetry.total('otel_context.reads') == 1 and telemetry.gauges()['otel_context.processes'] == 1

    for _ in range(5):  # unchanged: an 8-byte check each drain, the same object kept
        reader.update(registry, [publisher.pid], time.monotonic())
    assert info.otel_context is first
    assert telemetry.total('otel_context.reads') == 1 and telemetry.total('otel_context.checks') == 5

    stamp = publisher.update(encode_context(dict(RESOURCE_V1, **{'service.version': '1.5.0'}), EXTRA))
    reader.update(registry, [publisher.pid], time.monotonic())
    assert info.otel_context.resource['service.version'] == '1.5.0'
    assert info.otel_context.published_at_ns == stamp > first.published_at_ns
    assert telemetry.total('otel_context.reads') == 2
    assert telemetry.total('otel_context.read_errors') == 0


def test_a_writer_stopped_mid_update_keeps_the_last_context_until_it_finishes(publisher):
    address = publisher.publish(encode_context(RESOURCE_V1))
    registry = ProcessRegistry()
    info, _ = registry.ensure(publisher.pid)
    reader, telemetry = _reader()
    reader.update(registry, [publisher.pid], time.monotonic())
    first = info.otel_context

    assert publisher.cmd('hold') == 'held'  # timestamp 0: being written
    with pytest.raises(ContextReadError) as e:
        read_context(publisher.pid, address, attempts=3)
    assert e.value.reason == 'concurrent_update'
    reader.update(registry, [publisher.pid], time.monotonic())
    assert info.otel_context is first  # kept, not dropped

    assert publisher.cmd('release').startswith('released ')
    reader.update(registry, [publisher.pid], time.monotonic())
    assert info.otel_context is not first and info.otel_context.resource == RESOURCE_V1
    assert info.otel_context.published_at_ns > first.published_at_ns


def test_reads_during_an_update_storm_are_never_torn(publisher, monkeypatch):
    """The publisher swaps between two payloads as fast as it can and scribbles over the one it just
    unpublished: every read either returns one of the two payloads whole, or gives up (counted)."""
    a = encode_context(dict(RESOURCE_V1, **{'service.version': 'A', 'pad': 'a' * 300}))
    b = encode_context(dict(RESOURCE_V1, **{'service.version': 'B'}))
    address = publisher.publish(a)
    attempts_per_read = []
    calls = [0]
    real_timestamp = opc._timestamp

    def counting_timestamp(pid, addr, proc):
        calls[0] += 1
        return real_timestamp(pid, addr, proc)

    monkeypatch.setattr(opc, '_timestamp', counting_timestamp)
    assert publisher.cmd('storm {} {}'.format(publisher.payload_file(a), publisher.payload_file(b))) == 'storming'
    seen = {'A': 0, 'B': 0}
    gave_up = 0
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            calls[0] = 0
            try:
                ctx = read_context(publisher.pid, address, attempts=3)
            except ContextReadError as e:
                assert e.reason == 'concurrent_update', e
                gave_up += 1
                continue
            version = ctx.resource['service.version']
            assert ctx.resource == (dict(RESOURCE_V1, **{'service.version': 'A', 'pad': 'a' * 300})
                                    if version == 'A' else dict(RESOURCE_V1, **{'service.version': 'B'}))
            seen[version] += 1
            attempts_per_read.append(calls[0])
            # a success after a retry: more than the 2 timestamp reads (+1 on a bad-looking header) of one pass
            if seen['A'] and seen['B'] and any(n > 3 for n in attempts_per_read) and len(attempts_per_read) > 200:
                break
    finally:
        updates = int(publisher.cmd('stop').split()[1])
    print('storm: {} updates, reads ok A={} B={}, gave up {}, retried ok {}'.format(
        updates, seen['A'], seen['B'], gave_up, sum(1 for n in attempts_per_read if n > 3)))
    assert updates > 1000, updates
    assert seen['A'] > 0 and seen['B'] > 0, (seen, gave_up)
    assert any(n > 3 for n in attempts_per_read), 'no read succeeded after a retry: {} reads, {} gave up'.format(
        len(attempts_per_read), gave_up)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize('offset,data,reason', [
    (0, b'NOT_CTX!', 'bad_signature'),
    (8, (1).to_bytes(4, 'little'), 'bad_version'),
    (12, (0).to_bytes(4, 'little'), 'bad_size'),
    (12, (65537).to_bytes(4, 'little'), 'bad_size'),
    (12, (0xFFFFFFFF).to_bytes(4, 'little'), 'bad_size'),
    (24, (0).to_bytes(8, 'little'), 'bad_pointer'),
    (24, (0xFFFFFFFFFFFFFFF0).to_bytes(8, 'little'), 'bad_pointer'),
    (24, (0x1000).to_bytes(8, 'little'), 'unreadable'),  # not mapped in the publisher
])
def test_hostile_headers_are_refused_by_reason_and_counted(publisher, offset, data, reason):
    address = publisher.publish(encode_context(RESOURCE_V1))
    registry = ProcessRegistry()
    info, _ = registry.ensure(publisher.pid)
    reader, telemetry = _reader()
    reader.update(registry, [publisher.pid], time.monotonic())
    assert info.otel_context is not None

    publisher.poke(offset, data)
    with pytest.raises(ContextReadError) as e:
        read_context(publisher.pid, address)
    assert e.value.reason == reason
    assert publisher.cmd('release').startswith('released ')  # a new timestamp: the next drain reads again
    reader.update(registry, [publisher.pid], time.monotonic())
    assert telemetry.totals()['otel_context.read_errors{reason:' + reason + '}'] == 1
    assert info.otel_context is None  # dropped: the resource falls back to env detection
    assert info.otel_context_address == 0 and info.otel_context_scan_at > time.monotonic()


def test_a_payload_that_is_not_a_process_context_is_counted(publisher):
    address = publisher.publish(b'\x0a\xff\xff\xff\xff\x0f' + b'x' * 10)  # a length running past the end
    with pytest.raises(ContextReadError) as e:
        read_context(publisher.pid, address)
    assert e.value.reason == 'bad_payload'
    publisher.update(b'\x12\x02\x0a\x80')  # a KeyValue whose key is cut mid-varint
    with pytest.raises(ContextReadError) as e:
        read_context(publisher.pid, address)
    assert e.value.reason == 'bad_payload'


def test_a_process_that_exits_is_counted_as_gone(publisher):
    address = publisher.publish(encode_context(RESOURCE_V1))
    publisher.close()
    with pytest.raises(ContextReadError) as e:
        read_context(publisher.pid, address)
    assert e.value.reason == 'gone'


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.binary(min_size=32, max_size=32), keep_signature=st.booleans())
def test_fuzzed_headers_never_escape_as_anything_but_a_read_error(publisher_binary, tmp_path, header, keep_signature):
    p = _fuzz_publisher(publisher_binary, tmp_path)
    if keep_signature:
        header = b'OTEL_CTX' + (2).to_bytes(4, 'little') + header[12:]
    p.poke(0, header)
    try:
        ctx = read_context(p.pid, p.address, attempts=2)
    except ContextReadError as e:
        assert e.reason in opc.READ_ERROR_REASONS
    else:
        assert isinstance(ctx.resource, dict)


_FUZZ = {}


def _fuzz_publisher(binary, tmp_path):
    """One publisher for every example (a process per example would dominate the run)."""
    p = _FUZZ.get('p')
    if p is None or p.proc.poll() is not None:
        p = _FUZZ['p'] = Publisher(binary, tmp_path)
        p.address = p.publish(encode_context(RESOURCE_V1))
    return p


@pytest.fixture(scope='module', autouse=True)
def _close_fuzz_publisher():
    yield
    p = _FUZZ.pop('p', None)
    if p is not None:
        p.close()


@settings(max_examples=400, deadline=None)
@given(payload=st.one_of(
    st.binary(max_size=600),
    st.builds(lambda base, i, b: base[:i] + bytes([b]) + base[i + 1:],
              st.just(encode_context(RESOURCE_V1, EXTRA)), st.integers(0, 400), st.integers(0, 255)),
))
def test_fuzzed_payloads_decode_or_fail_as_bad_payload(payload):
    try:
        resource, extra = decode_payload(payload)
    except ContextReadError as e:
        assert e.reason == 'bad_payload'
    else:
        assert isinstance(resource, dict) and isinstance(extra, dict)


# ---------------------------------------------------------------------------- precedence


def test_the_context_outranks_the_environment_but_not_what_the_profiler_observed(publisher):
    publisher.publish(encode_context(dict(RESOURCE_V1, **{
        'process.pid': 1, 'host.name': 'a-pod', 'container.id': 'f' * 64, 'threadlocal.schema_version': 'x'})))
    registry = ProcessRegistry(include_env_vars=('DD_SERVICE', 'DD_ENV', 'DD_VERSION'))
    info, _ = registry.ensure(publisher.pid)
    info.env = {'DD_SERVICE': 'from-env', 'DD_ENV': 'staging', 'DD_VERSION': '0.1'}
    without = resource_attributes(publisher.pid, 'pub', info)
    assert without['service.name'] == 'from-env'
    ProcessContextReader(Telemetry()).update(registry, [publisher.pid], time.monotonic())
    attrs = resource_attributes(publisher.pid, 'pub', info)
    assert attrs['service.name'] == 'checkout'
    assert attrs['service.version'] == '1.4.2'
    assert attrs['deployment.environment.name'] == 'prod'
    assert attrs['service.instance.id'] == RESOURCE_V1['service.instance.id']
    assert attrs['process.pid'] == publisher.pid  # observed, not claimed
    assert 'host.name' not in attrs  # the host's detection sets it
    assert attrs['container.id'] == 'f' * 64  # no container observed here (the test runs on the host)
    assert 'threadlocal.schema_version' not in attrs  # a reader setting, not a resource attribute


# ---------------------------------------------------------------------------- the real dd-trace-py

DDTRACE_APP = textwrap.dedent('''
    import os, sys, time
    go = sys.argv[2] if len(sys.argv) > 2 else ''
    while go and not os.path.exists(go):  # burn before the tracer starts: sampled before it publishes
        sum(i * i for i in range(10000))
    # what the process's environment (/proc/PID/environ) says is overridden before the tracer starts:
    # the profiler must report what the tracer publishes
    os.environ.update(DD_SERVICE='ctx-service', DD_ENV='ctx-env', DD_VERSION='9.9.9')
    import ddtrace.auto  # noqa: F401,E402
    from ddtrace.internal.runtime import get_runtime_id  # noqa: E402
    from ddtrace.trace import tracer  # noqa: E402
    print(get_runtime_id(), flush=True)
    deadline = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < deadline:
        with tracer.trace('burn'):
            x = 0
            for i in range(200000):
                x += i * i
''')


def ddtrace_env():
    return dict(os.environ, DD_SERVICE='env-service', DD_ENV='env-env', DD_VERSION='0.0.1',
                DD_TRACE_AGENT_URL='http://127.0.0.1:9', DD_INSTRUMENTATION_TELEMETRY_ENABLED='false',
                DD_REMOTE_CONFIGURATION_ENABLED='false', DD_TRACE_STARTUP_LOGS='false')


def start_ddtrace_app(tmp_path, seconds, go='', wait=True):
    script = tmp_path / 'traced_app.py'
    script.write_text(DDTRACE_APP)
    app = subprocess.Popen([sys.executable, str(script), str(seconds), str(go)], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, env=ddtrace_env())
    if not wait:
        return app, None
    runtime_id = app.stdout.readline().strip()
    assert runtime_id, 'the traced app did not start'
    return app, runtime_id


def test_the_real_dd_trace_py_publishes_a_context_we_read(tmp_path):
    import ddtrace

    app, runtime_id = start_ddtrace_app(tmp_path, 30)
    try:
        registry = ProcessRegistry(include_env_vars=('DD_SERVICE', 'DD_ENV', 'DD_VERSION'))
        info = None
        for _ in range(50):  # the tracer publishes at its start, just before the app prints
            info, _ = registry.refresh(app.pid)
            if info.otel_context_address:
                break
            time.sleep(0.1)
        assert info.otel_context_address, 'ddtrace {} published no OTEL_CTX mapping'.format(ddtrace.__version__)
        reader, telemetry = _reader()
        reader.update(registry, [app.pid], time.monotonic())
        ctx = info.otel_context
        assert ctx is not None, telemetry.totals()
        assert ctx.resource['service.name'] == 'ctx-service'
        assert ctx.resource['service.version'] == '9.9.9'
        assert ctx.resource['deployment.environment.name'] == 'ctx-env'
        assert ctx.resource['service.instance.id'] == runtime_id
        assert ctx.resource['telemetry.sdk.language'] == 'python'
        assert ctx.thread_local_schema.startswith('tlsdesc_v1')  # dd-trace-py 4.13 puts it in the resource
        assert ctx.attribute_key_map[0] == 'datadog.local_root_span_id'
        assert info.env['DD_SERVICE'] == 'env-service'  # what env detection alone would report
        attrs = resource_attributes(app.pid, 'python', info)
        assert (attrs['service.name'], attrs['service.version'], attrs['deployment.environment.name']) == (
            'ctx-service', '9.9.9', 'ctx-env')
    finally:
        app.kill()
        app.wait()


def _app_resources(pipeline, pid):
    """Resource attributes of ``pid`` in one run's OTLP export (as the exporters send it)."""
    from datadog_checks.host_profiler.profile.otlp import encode, validate

    result = pipeline.run_once()
    assert result.sampling, result.sampler_error
    if result.profile is None:
        return None
    data = encode(result.profile)
    assert validate(data) == []
    for rp in data.resource_profiles:
        attrs = {kv.key: getattr(kv.value, kv.value.WhichOneof('value')) for kv in rp.resource.attributes}
        if attrs.get('process.pid') == pid and rp.scope_profiles[0].profiles[0].samples:
            return attrs
    return None


@pytest.mark.integration
@pytest.mark.parametrize('late', [False, True], ids=['published-before-sampling', 'published-after-first-sample'])
def test_live_samples_of_a_traced_app_land_in_a_resource_named_by_its_context(requires_bpf, tmp_path, late):
    """The real sampler profiles the real dd-trace-py app: its samples go to a resource carrying the
    service.name/version and service.instance.id the tracer published, not what its environment says;
    the user's attributes action still has the last word (deployment.environment.name). ``late``: the
    app is sampled before its tracer starts, so the context is found by a later scan of its maps."""
    from datadog_checks.host_profiler.config.loader import build_config
    from datadog_checks.host_profiler.profiler_pipeline import ProfilerPipeline

    instance = {
        'lock_file': str(tmp_path / 'lock'),
        'receiver': {'include_env_vars': ['DD_SERVICE', 'DD_ENV', 'DD_VERSION']},
        'processors': {'resourcedetection': {}, 'attributes': {'actions': [
            {'key': 'deployment.environment.name', 'action': 'upsert', 'value': 'user-env'}]}},
    }
    # a long check interval: a loaded machine must not make the sampler stop itself for lack of heartbeat
    pipeline = ProfilerPipeline(build_config(instance, 'standalone'), interval_s=60, hostname=lambda: 'test-host')
    go = tmp_path / 'go'
    app, runtime_id = start_ddtrace_app(tmp_path, 300, go=go if late else '', wait=not late)
    seen = []
    try:
        deadline = time.monotonic() + 120
        if late:  # first sampled while its environment is all there is
            while time.monotonic() < deadline and not seen:
                time.sleep(1)
                attrs = _app_resources(pipeline, app.pid)
                if attrs:
                    seen.append(attrs)
            assert seen, 'no sample of the app before its tracer started'
            assert seen[0]['service.name'] == 'env-service' and seen[0]['service.version'] == '0.0.1'
            assert 'service.instance.id' not in seen[0]
            go.write_text('')
            runtime_id = app.stdout.readline().strip()
        while time.monotonic() < deadline:
            time.sleep(1)
            attrs = _app_resources(pipeline, app.pid)
            if attrs:
                seen.append(attrs)
                if attrs.get('service.instance.id') == runtime_id:
                    break
    finally:
        pipeline.close()
        app.kill()
        app.wait()
    attrs = seen[-1] if seen else {}
    assert attrs.get('service.instance.id') == runtime_id, ([a.get('service.name') for a in seen],
                                                            pipeline.telemetry.totals())
    assert attrs['service.name'] == 'ctx-service' and attrs['service.version'] == '9.9.9'
    assert attrs['deployment.environment.name'] == 'user-env'  # the user's action wins over the context
    assert attrs['telemetry.sdk.language'] == 'python'
    assert attrs['host.name'] == 'test-host'  # the tracer's own host.name does not replace the host's
    assert not any(k.startswith('threadlocal.') for k in attrs)
    assert pipeline.telemetry.gauge_sum('otel_context.processes') >= 1
    assert pipeline.telemetry.total('otel_context.reads') >= 1
