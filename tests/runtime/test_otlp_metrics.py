# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
import io
import logging

from tests.fakes.otlp import METRICS_PATH, FakeOtlp

from datadog_checks.host_profiler.runtime.otlp_metrics import (
    OtlpMetricsExporter,
    build_metrics_request,
    metrics_url,
    tags_to_attributes,
)
from datadog_checks.host_profiler.runtime.status_line import StatusLine, human_bytes
from datadog_checks.host_profiler.runtime.telemetry import Telemetry

CANARY = 'CANARY-API-KEY-0123456789abcdef'


def _telemetry():
    t = Telemetry()
    t.count('sampler.samples', 500)
    t.count('sampler.lost', 3, ['reason:stack_collision'])
    t.declare('sampler.lost', ['reason:truncated'])
    t.gauge('process.rss', 123456789.0)
    t.gauge('export.queue.bytes', 2048, ['exporter:otlp_http'])
    t.count('python.gc.pause', 0.25)
    return t


def _attrs(kvs):
    out = {}
    for kv in kvs:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof('value'))
    return out


def test_metrics_url():
    assert metrics_url('http://h:4318') == 'http://h:4318/v1/metrics'
    assert metrics_url('http://h:4318/') == 'http://h:4318/v1/metrics'
    assert metrics_url('http://h:4318/v1/metrics') == 'http://h:4318/v1/metrics'
    assert tags_to_attributes(['a:b', 'c', 'd:e:f']) == {'a': 'b', 'c': 'true', 'd': 'e:f'}


def test_build_request_shapes():
    from opentelemetry.proto.metrics.v1 import metrics_pb2

    req = build_metrics_request(_telemetry().snapshot(), host_name='h1', start_time_unix_nano=10, time_unix_nano=20)
    rm = req.resource_metrics[0]
    res = _attrs(rm.resource.attributes)
    assert res['service.name'] == 'host-profiler' and res['host.name'] == 'h1'
    metrics = {m.name: m for m in rm.scope_metrics[0].metrics}
    samples = metrics['host_profiler.sampler.samples']
    assert samples.WhichOneof('data') == 'sum'
    assert samples.sum.is_monotonic
    assert samples.sum.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    p = samples.sum.data_points[0]
    assert (p.as_int, p.start_time_unix_nano, p.time_unix_nano) == (500, 10, 20)
    lost = {_attrs(dp.attributes)['reason']: dp.as_int for dp in metrics['host_profiler.sampler.lost'].sum.data_points}
    assert lost == {'stack_collision': 3, 'truncated': 0}
    assert metrics['host_profiler.python.gc.pause'].sum.data_points[0].as_double == 0.25
    rss = metrics['host_profiler.process.rss']
    assert rss.WhichOneof('data') == 'gauge' and rss.gauge.data_points[0].as_int == 123456789
    q = metrics['host_profiler.export.queue.bytes'].gauge.data_points[0]
    assert _attrs(q.attributes) == {'exporter': 'otlp_http'}


def test_export_to_local_server_decoded_with_official_proto():
    t = _telemetry()
    with FakeOtlp() as srv:
        exp = OtlpMetricsExporter(srv.url, headers={'dd-api-key': CANARY}, telemetry=t, host_name='h1')
        assert exp.export(t.snapshot(), now_ns=1_000) is True
        assert exp.export(t.snapshot(), now_ns=2_000) is True
        assert srv.wait_for(2, path=METRICS_PATH)
        first, second = srv.accepted[0], srv.accepted[1]
    assert first.path == METRICS_PATH
    assert first.headers['content-type'] == 'application/x-protobuf'
    assert first.headers['dd-api-key'] == CANARY  # sent to the endpoint, of course
    names = {m.name for m in first.message.resource_metrics[0].scope_metrics[0].metrics}
    assert {'host_profiler.sampler.samples', 'host_profiler.process.rss'} <= names
    assert 'host_profiler.health_metrics.errors' in names
    m2 = {m.name: m for m in second.message.resource_metrics[0].scope_metrics[0].metrics}
    dp = m2['host_profiler.sampler.samples'].sum.data_points[0]
    assert (dp.as_int, dp.start_time_unix_nano, dp.time_unix_nano) == (0, 1_000, 2_000)  # delta since the first
    assert m2['host_profiler.health_metrics.sent'].sum.data_points[0].as_int == 1
    assert t.total('health_metrics.sent') == 2


def test_export_errors_counted_never_raise_and_no_secret_logged(caplog):
    t = Telemetry()
    with FakeOtlp() as srv:
        srv.respond(503)
        exp = OtlpMetricsExporter(srv.url, headers={'dd-api-key': CANARY}, telemetry=t, timeout=2)
        with caplog.at_level(logging.DEBUG):
            assert exp.export(_telemetry().snapshot()) is False
    # connection refused: a port nobody listens on
    import socket

    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    refused = OtlpMetricsExporter('http://127.0.0.1:{}'.format(port), headers={'dd-api-key': CANARY}, telemetry=t)
    with caplog.at_level(logging.DEBUG):
        assert refused.export([]) is False

    class Boom:
        def post(self, *a, **kw):
            raise RuntimeError('proxy said no to dd-api-key=' + CANARY)

    exp2 = OtlpMetricsExporter('http://user:' + CANARY + '@127.0.0.1:9', session=Boom(), telemetry=t)
    with caplog.at_level(logging.DEBUG):
        assert exp2.export([]) is False
    totals = t.totals()
    assert totals['health_metrics.errors{reason:http_503}'] == 1
    assert totals['health_metrics.errors{reason:network}'] == 2
    assert CANARY not in caplog.text
    assert 'Could not send health metrics' in caplog.text


def test_status_line():
    t = _telemetry()
    t.gauge('processes.tracked', 153)
    t.gauge('process.cpu.user', 0.01)
    t.gauge('process.cpu.system', 0.004)
    t.count('export.errors', 2, ['exporter:otlp_http', 'reason:network'])
    now = [0.0]
    s = StatusLine(t, clock=lambda: now[0])
    now[0] = 10.0
    line = s.render()
    assert '50.0 samples/s' in line
    assert '153 procs' in line and 'lost 3' in line and 'queue 2.0 KiB' in line and 'errors 2' in line
    assert 'cpu 1.4%' in line and 'rss 117.7 MiB' in line
    assert '\n' not in line
    t.count('sampler.samples', 100)
    now[0] = 20.0
    assert '10.0 samples/s' in s.render()
    buf = io.StringIO()
    assert s.write(buf, now=30.0).startswith('host-profiler 00:00:30')
    assert buf.getvalue().endswith('\n')
    empty = StatusLine(Telemetry(), clock=lambda: 1.0).render()
    assert '- procs' in empty and 'queue -' in empty
    assert human_bytes(512) == '512 B' and human_bytes(3 * 1024**3) == '3.0 GiB'
