# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
import logging
import time

import pytest
from tests.fakes.otlp import PROFILES_PATH, FakeOtlp, decoded_seqs, proto_encode, sample_profile

from datadog_checks.host_profiler.exporters import build_exporters
from datadog_checks.host_profiler.exporters.encoding import SharedEncoder
from datadog_checks.host_profiler.exporters.otlp_http import profiles_url
from datadog_checks.host_profiler.exporters.queue import parse_retry_after
from datadog_checks.host_profiler.runtime.telemetry import Telemetry

API_KEY = 'abcdef0123456789abcdef0123456789'
FAST_RETRY = {'initial_interval': 0.01, 'max_interval': 0.05}


@pytest.fixture
def fake_otlp():
    """A local OTLP receiver (tests/fakes/otlp.py) on 127.0.0.1, answering 200 until told otherwise."""
    srv = FakeOtlp().start()
    try:
        yield srv
    finally:
        srv.stop()


class CountingEncoder:
    def __init__(self, payload_bytes=0):
        self.calls = 0
        self.payload_bytes = payload_bytes

    def __call__(self, profile):
        self.calls += 1
        return proto_encode(profile, self.payload_bytes)


def make(srv_or_url, telemetry=None, encoder=None, mode='standalone', version='1.2.3', **entry):
    url = srv_or_url if isinstance(srv_or_url, str) else srv_or_url.url
    cfg = {'endpoint': url, 'retry': dict(FAST_RETRY), 'timeout': 2}
    cfg.update(entry)
    telemetry = telemetry or Telemetry()
    exps = build_exporters(
        {'otlp_http': [cfg]},
        telemetry=telemetry,
        mode=mode,
        version=version,
        encoder=SharedEncoder(encoder or CountingEncoder()),
        log=logging.getLogger('test.exporters'),
    )
    return exps[0], telemetry


def padded_body(seq, size):
    """A decodable ProfilesData body of exactly ``size`` bytes whose profile carries ``seq``."""
    from opentelemetry.proto.profiles.v1development import profiles_pb2 as pb

    msg = pb.ProfilesData()
    msg.ParseFromString(proto_encode(sample_profile(seq, processes=1, stacks=1)))
    base = len(msg.SerializeToString())
    msg.dictionary.string_table.append('x' * (size - base - 3))
    body = msg.SerializeToString()
    while len(body) > size:  # length prefixes grow with the padding
        msg.dictionary.string_table[-1] = msg.dictionary.string_table[-1][: size - len(body) - 1]
        body = msg.SerializeToString()
    assert size - 2 <= len(body) <= size, len(body)  # a varint length may shift it by a byte
    return body


def total(t, name, *tags):
    return sum(v for k, v in t.totals().items() if k.split('{')[0] == name and all(tag in k for tag in tags))


def test_url_has_no_double_slash():
    assert profiles_url('http://h:4318/') == 'http://h:4318/v1development/profiles'
    assert profiles_url('http://h:4318') == 'http://h:4318/v1development/profiles'
    assert profiles_url('http://h/v1development/profiles') == 'http://h/v1development/profiles'


def test_datadog_site_endpoint_and_headers():
    t = Telemetry()
    exps = build_exporters(
        {'otlp_http': [{'site': 'datadoghq.eu', 'api_key': 12345678}]}, telemetry=t, mode='agent', version='7.70.0'
    )
    exp = exps[0]
    try:
        assert exp.url == 'https://otlp.datadoghq.eu/v1development/profiles'
        assert exp.headers['dd-api-key'] == '12345678'
        assert exp.headers['dd-evp-origin'] == 'host-profiler-bundled'
        assert exp.headers['dd-evp-origin-version'] == '7.70.0'
        assert exp.headers['dd-otel-metric-config'] == '{"resource_attributes_as_tags": true}'
        assert exp.tags == ('endpoint:otlp.datadoghq.eu',)
        assert '12345678' not in repr(exp.describe())
    finally:
        exp.close()


def test_delivers_and_counts(fake_otlp):
    exp, t = make(fake_otlp, headers={'dd-api-key': API_KEY})
    try:
        exp.export(sample_profile(1))
        assert exp.flush(5)
        assert decoded_seqs(fake_otlp) == [1]
        req = fake_otlp.accepted[0]
        assert req.path == PROFILES_PATH
        assert req.headers['content-type'] == 'application/x-protobuf'
        assert req.headers['content-encoding'] == 'gzip'
        assert req.headers['dd-evp-origin'] == 'host-profiler-standalone'
        assert req.headers['dd-evp-origin-version'] == '1.2.3'
        assert exp.status()[0] == 'ok'
        tag = 'endpoint:127.0.0.1:{}'.format(fake_otlp.port)
        assert total(t, 'export.count', tag, 'exporter:otlp_http') == 1
        assert total(t, 'export.bytes', tag, 'encoding:raw') == len(req.body)
        assert total(t, 'export.bytes', tag, 'encoding:compressed') == len(req.raw_body)
        names = {(m.name, m.type) for m in t.snapshot()}
        assert ('export.latency', 'gauge') in names and ('export.queue.bytes', 'gauge') in names
    finally:
        exp.close()


@pytest.mark.parametrize('failure', ['500', 'close', '503-retry-after'])
def test_outage_then_recovery_delivers_each_export_once_in_order(fake_otlp, failure):
    exp, t = make(fake_otlp)
    try:
        if failure == '500':
            fake_otlp.respond(500)
        elif failure == '503-retry-after':
            fake_otlp.respond(503, retry_after='0.05')
        else:
            fake_otlp.close_connection()
        n = 8
        worst = 0.0
        for i in range(1, n + 1):
            t0 = time.monotonic()
            exp.export(sample_profile(i))
            worst = max(worst, time.monotonic() - t0)
            time.sleep(0.02)
        assert fake_otlp.wait_requests(5, 5)
        assert not fake_otlp.accepted
        assert exp.status()[0] == 'warning'
        fake_otlp.reset_behaviour()
        assert exp.flush(10)
        assert decoded_seqs(fake_otlp) == list(range(1, n + 1))
        assert exp.status()[0] == 'ok'
        assert total(t, 'export.queue.dropped') == 0
        assert total(t, 'export.retries') >= 4
        reason = {'500': 'http_5xx', 'close': 'connection', '503-retry-after': 'http_5xx'}[failure]
        assert total(t, 'export.errors', 'reason:' + reason) >= 4
        assert worst < 0.5  # export() only encodes and enqueues
    finally:
        exp.close()


def test_dead_endpoint_never_delays_export():
    import socket

    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: connection refused
    exp, t = make('http://127.0.0.1:{}'.format(port))
    try:
        t0 = time.monotonic()
        for i in range(20):
            exp.export(sample_profile(i))
        assert time.monotonic() - t0 < 2
        assert not exp.flush(0.2)
        assert exp.status()[0] == 'warning'
        assert total(t, 'export.errors', 'reason:connection') >= 1
    finally:
        t0 = time.monotonic()
        exp.close()
        assert time.monotonic() - t0 < 3
    # what was still queued at close is counted, never silently lost
    assert total(t, 'export.queue.dropped') + total(t, 'export.count') == 20


def test_full_queue_drops_oldest_with_exact_counts(fake_otlp):
    fake_otlp.respond(500)
    # 0.001 MB = 1048 bytes: room for 3 bodies of ~300 bytes
    exp, t = make(fake_otlp, queue_size_mb=0.001, compression='none')
    try:
        for i in range(1, 11):
            body = padded_body(i, 300)
            assert exp.export_bytes(body, body)
            assert exp.queued_bytes <= 1048
        # the oldest export (in flight, abandoned when room was needed) is counted once its
        # current attempt fails; it kept its bytes until then, so 2 or 3 exports remain
        deadline = time.monotonic() + 5
        while (exp.pending > 3 or exp._queue.abandoning) and time.monotonic() < deadline:
            time.sleep(0.01)
        kept = exp.pending
        assert kept in (2, 3)
        fake_otlp.reset_behaviour()
        assert exp.flush(10)
        assert decoded_seqs(fake_otlp) == list(range(11 - kept, 11))
        assert total(t, 'export.queue.dropped', 'reason:queue_full') == 10 - kept
        assert total(t, 'export.queue.dropped') == 10 - kept
        assert total(t, 'export.count') == kept
    finally:
        exp.close()


def test_export_larger_than_queue_is_refused_and_counted(fake_otlp):
    exp, t = make(fake_otlp, queue_size_mb=0.0001)
    try:
        assert not exp.export_bytes(b'x' * 1000, b'x' * 1000)
        assert total(t, 'export.queue.dropped', 'reason:too_large') == 1
    finally:
        exp.close()


def test_reserved_headers_not_overridden(fake_otlp):
    user = {
        'dd-evp-origin': 'evil',
        'DD-EVP-ORIGIN-VERSION': '0.0.0-evil',
        'dd-otel-metric-config': '{}',
        'Content-Type': 'text/plain',
        'content-encoding': 'br',
        'X-Custom': 'kept',
        'dd-api-key': API_KEY,
    }
    exp, _ = make(fake_otlp, headers=user, mode='agent', version='7.99.0')
    try:
        exp.export(sample_profile(1))
        assert exp.flush(5)
        h = fake_otlp.accepted[0].headers
        assert h['dd-evp-origin'] == 'host-profiler-bundled'
        assert h['dd-evp-origin-version'] == '7.99.0'
        assert h['dd-otel-metric-config'] == '{"resource_attributes_as_tags": true}'
        assert h['content-type'] == 'application/x-protobuf'
        assert h['content-encoding'] == 'gzip'
        assert h['x-custom'] == 'kept'
        assert h['dd-api-key'] == API_KEY
    finally:
        exp.close()


def test_gzip_zstd_none_decode_to_the_same_profile_encoded_once(fake_otlp):
    enc = CountingEncoder()
    shared = SharedEncoder(enc)
    t = Telemetry()
    exps = build_exporters(
        {
            'otlp_http': [
                {'endpoint': fake_otlp.url, 'compression': 'gzip'},
                {'endpoint': fake_otlp.url + '/', 'compression': 'zstd'},
                {'endpoint': fake_otlp.url, 'compression': 'none'},
            ]
        },
        telemetry=t,
        encoder=shared,
    )
    try:
        p = sample_profile(42, processes=3, stacks=5)
        for e in exps:
            e.export(p)
        for e in exps:
            assert e.flush(5)
        assert enc.calls == 1  # encoded once, shared by every endpoint
        reqs = fake_otlp.accepted
        assert sorted(r.headers.get('content-encoding', 'none') for r in reqs) == ['gzip', 'none', 'zstd']
        assert reqs[0].body == reqs[1].body == reqs[2].body
        assert reqs[0].message == reqs[1].message == reqs[2].message
        assert len({r.raw_body for r in reqs}) == 3
        assert len({e.name for e in exps}) == 3
    finally:
        for e in exps:
            e.close()


def test_several_endpoints_each_get_every_profile_dead_one_does_not_block(fake_otlp):
    with FakeOtlp() as other:
        other.respond(500)
        t = Telemetry()
        exps = build_exporters(
            {
                'otlp_http': [
                    {'endpoint': fake_otlp.url, 'retry': FAST_RETRY},
                    {'endpoint': other.url, 'retry': FAST_RETRY},
                ]
            },
            telemetry=t,
            encoder=SharedEncoder(CountingEncoder()),
        )
        try:
            for i in range(1, 4):
                for e in exps:
                    e.export(sample_profile(i))
            assert exps[0].flush(5)
            assert decoded_seqs(fake_otlp) == [1, 2, 3]
            deadline = time.monotonic() + 3
            while exps[1].status()[0] != 'warning' and time.monotonic() < deadline:
                time.sleep(0.01)
            assert exps[0].status()[0] == 'ok' and exps[1].status()[0] == 'warning'
            other.reset_behaviour()
            assert exps[1].flush(5)
            assert decoded_seqs(other) == [1, 2, 3]
        finally:
            for e in exps:
                e.close()


@pytest.mark.parametrize('code', [401, 403])
def test_auth_error_is_critical_and_not_retried(fake_otlp, code):
    fake_otlp.respond(code)
    exp, t = make(fake_otlp, headers={'dd-api-key': API_KEY})
    try:
        exp.export(sample_profile(1))
        assert exp.flush(5)
        time.sleep(0.2)
        assert len(fake_otlp.requests) == 1
        level, message = exp.status()
        assert level == 'critical'
        assert '127.0.0.1:{}'.format(fake_otlp.port) in message
        assert str(code) in message
        assert API_KEY not in message
        assert total(t, 'export.errors', 'reason:auth') == 1
        assert total(t, 'export.retries') == 0
        assert total(t, 'export.queue.dropped', 'reason:rejected') == 1
        # recovers to OK once the key is accepted again
        fake_otlp.reset_behaviour()
        exp.export(sample_profile(2))
        assert exp.flush(5)
        assert exp.status()[0] == 'ok'
    finally:
        exp.close()


def test_other_4xx_rejected_not_retried_with_body_excerpt(fake_otlp, caplog):
    fake_otlp.respond(400, body=b'bad profile: missing string table ' + b'y' * 1000)
    exp, t = make(fake_otlp)
    try:
        with caplog.at_level(logging.DEBUG):
            exp.export(sample_profile(1))
            assert exp.flush(5)
        time.sleep(0.1)
        assert len(fake_otlp.requests) == 1
        assert exp.status()[0] == 'warning'
        assert total(t, 'export.errors', 'reason:http_4xx') == 1
        assert 'HTTP 400: bad profile: missing string table' in caplog.text
        assert 'y' * 300 not in caplog.text  # a short excerpt only
    finally:
        exp.close()


def test_retry_after_is_honoured(fake_otlp):
    fake_otlp.respond(429, retry_after='1', count=1)
    exp, t = make(fake_otlp, retry={'initial_interval': 0.01, 'max_interval': 0.01})
    try:
        exp.export(sample_profile(1))
        assert exp.flush(5)
        assert len(fake_otlp.requests) == 2
        gap = fake_otlp.requests[1].time - fake_otlp.requests[0].time
        assert gap >= 0.95, gap
        assert total(t, 'export.errors', 'reason:http_429') == 1
        assert total(t, 'export.retries') == 1
        assert decoded_seqs(fake_otlp) == [1]
    finally:
        exp.close()


def test_parse_retry_after():
    assert parse_retry_after('3') == 3.0
    assert parse_retry_after(' 0.5 ') == 0.5
    assert parse_retry_after('-4') == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after('soon') is None
    import email.utils

    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after(date, now=now) <= 31
    assert parse_retry_after('100000') == 600.0  # capped


def test_slow_endpoint_times_out_and_retries(fake_otlp):
    fake_otlp.slow(1.0, count=1)
    exp, t = make(fake_otlp, timeout=0.3)
    try:
        t0 = time.monotonic()
        exp.export(sample_profile(1))
        assert time.monotonic() - t0 < 0.2
        assert exp.flush(5)
        assert total(t, 'export.errors', 'reason:timeout') == 1
        # the slow answer came after the client gave up: the body was sent twice (at-least-once
        # on the wire is the best HTTP allows); the second attempt is the one the client counts
        assert total(t, 'export.count') == 1
    finally:
        exp.close()


def test_partial_success_counted_and_logged(fake_otlp, caplog):
    fake_otlp.partial_success(2, 'two profiles had no samples', count=1)
    exp, t = make(fake_otlp)
    try:
        with caplog.at_level(logging.WARNING):
            exp.export(sample_profile(1))
            assert exp.flush(5)
        assert total(t, 'export.rejected_profiles') == 2
        assert 'two profiles had no samples' in caplog.text
    finally:
        exp.close()


def test_max_elapsed_time_gives_up(fake_otlp):
    fake_otlp.respond(500)
    exp, t = make(fake_otlp, retry={'initial_interval': 0.02, 'max_interval': 0.05, 'max_elapsed_time': 0.3})
    try:
        exp.export(sample_profile(1))
        assert exp.flush(3)
        assert total(t, 'export.queue.dropped', 'reason:max_elapsed_time') == 1
    finally:
        exp.close()


def test_close_is_bounded_with_a_request_in_flight(fake_otlp):
    fake_otlp.slow(3.0)
    exp, t = make(fake_otlp, timeout=10)
    exp.export(sample_profile(1))
    exp.export(sample_profile(2))
    time.sleep(0.3)
    t0 = time.monotonic()
    exp.close(timeout_s=0.5)
    assert time.monotonic() - t0 < 1.0
    assert total(t, 'export.queue.dropped', 'reason:closed') == 1


def test_requests_wrapper_session(fake_otlp):
    from datadog_checks.base.utils.http import RequestsWrapper

    wrapper = RequestsWrapper({}, {}, logger=logging.getLogger('test.http'))
    t = Telemetry()
    exps = build_exporters(
        {'otlp_http': [{'endpoint': fake_otlp.url, 'headers': {'dd-api-key': API_KEY}}]},
        http_factory=lambda cfg: wrapper,
        telemetry=t,
        mode='agent',
        version='7.1.0',
        encoder=SharedEncoder(CountingEncoder()),
    )
    try:
        exps[0].export(sample_profile(5))
        assert exps[0].flush(5)
        h = fake_otlp.accepted[0].headers
        assert h['dd-api-key'] == API_KEY and h['dd-evp-origin'] == 'host-profiler-bundled'
        assert h['content-encoding'] == 'gzip'
        assert 'datadog agent' in h.get('user-agent', '').lower()
        assert decoded_seqs(fake_otlp) == [5]
    finally:
        exps[0].close()


def test_config_errors_name_the_key():
    from datadog_checks.base import ConfigurationError

    with pytest.raises(ConfigurationError, match=r'exporters.otlp_http\[0\].compression'):
        build_exporters({'otlp_http': [{'endpoint': 'http://x', 'compression': 'lz4'}]})
    with pytest.raises(ConfigurationError, match=r'exporters.otlp_http\[0\].endpoint'):
        build_exporters({'otlp_http': [{'headers': {}}]})
    with pytest.raises(ConfigurationError, match=r'exporters.otlp_http\[0\].retry.initial_interval'):
        build_exporters({'otlp_http': [{'endpoint': 'http://x', 'retry': {'initial_interval': 'soon'}}]})
    with pytest.raises(ConfigurationError, match='unknown exporter'):
        build_exporters({'kafka': {}})
    assert build_exporters({}) == []


def test_api_key_never_logged_at_any_verbosity(fake_otlp, caplog, tmp_path):
    key_echo = 'invalid key ' + API_KEY
    with caplog.at_level(logging.DEBUG):
        for verbosity in ('basic', 'normal', 'detailed'):
            t = Telemetry()
            exps = build_exporters(
                {
                    'otlp_http': [
                        {
                            'endpoint': fake_otlp.url,
                            'headers': {'dd-api-key': API_KEY, 'Content-Type': 'x'},
                            'retry': FAST_RETRY,
                        },
                        {'endpoint': fake_otlp.url, 'api_key': API_KEY, 'retry': FAST_RETRY},
                    ],
                    'debug': {'verbosity': verbosity},
                    'file': {'directory': str(tmp_path), 'formats': ['otlp', 'folded']},
                },
                telemetry=t,
                log=logging.getLogger('test.exporters'),
                encoder=SharedEncoder(CountingEncoder()),
            )
            try:
                fake_otlp.respond(500, count=2)
                fake_otlp.close_connection(count=1)
                fake_otlp.respond(400, body=key_echo.encode(), count=1)
                fake_otlp.respond(403, body=key_echo.encode(), count=1)
                fake_otlp.partial_success(1, key_echo, count=1)
                for i in range(3):
                    for e in exps:
                        e.export(sample_profile(i, off_cpu=True))
                for e in exps:
                    e.flush(5)
                statuses = [e.status() for e in exps]
                described = [e.describe() for e in exps if hasattr(e, 'describe')]
            finally:
                for e in exps:
                    e.close()
            assert API_KEY not in repr(statuses)
            assert API_KEY not in repr(described)
            assert API_KEY not in repr(t.totals())
    assert caplog.records  # something was logged
    assert 'invalid key ***' in caplog.text  # the echo was scrubbed, not dropped
    assert API_KEY not in caplog.text


def test_metric_names_are_in_metadata(fake_otlp, tmp_path):
    import csv
    import os

    from tests import REPO_ROOT

    with open(os.path.join(REPO_ROOT, 'metadata.csv')) as f:
        declared = {row['metric_name'] for row in csv.DictReader(f)}
    fake_otlp.respond(500, count=1)
    fake_otlp.partial_success(1, 'x', count=1)
    t = Telemetry()
    exps = build_exporters(
        {
            'otlp_http': [{'endpoint': fake_otlp.url, 'retry': FAST_RETRY, 'queue_size_mb': 1}],
            'debug': {},
            'file': {'directory': str(tmp_path)},
        },
        telemetry=t,
        encoder=SharedEncoder(CountingEncoder()),
    )
    try:
        for i in range(2):
            for e in exps:
                e.export(sample_profile(i))
        exps[0].flush(5)
        exps[0].export_bytes(b'x' * (2 << 20), b'x' * (2 << 20))  # too large: dropped
    finally:
        for e in exps:
            e.close()
    names = {m.name for m in t.snapshot()}
    assert {
        'export.count',
        'export.bytes',
        'export.errors',
        'export.latency',
        'export.queue.bytes',
        'export.queue.dropped',
        'export.retries',
        'export.rejected_profiles',
    } <= names
    missing = {'host_profiler.' + n for n in names} - declared
    assert not missing, missing


def test_real_otlp_encoder_end_to_end(fake_otlp):
    """Without an injected encoder the exporter uses profile.otlp.encode_bytes."""
    pytest.importorskip('datadog_checks.host_profiler.profile.otlp')
    t = Telemetry()
    (exp,) = build_exporters(
        {'otlp_http': [{'endpoint': fake_otlp.url, 'compression': 'zstd'}]}, telemetry=t, version='9.9.9'
    )
    try:
        exp.export(sample_profile(7, off_cpu=True))
        assert exp.flush(5)
        msg = fake_otlp.accepted[0].message
        assert len(msg.resource_profiles) == 2
        scope = msg.resource_profiles[0].scope_profiles[0]
        assert scope.scope.name == 'host_profiler' and scope.scope.version == '9.9.9'
        assert msg.dictionary.string_table
    finally:
        exp.close()


def test_defaults_hold_a_five_minute_outage():
    """Defaults: gzip, 64 MB queue, retry until the queue bound drops (max_elapsed_time 0):
    a 5-minute outage (5 exports at 60 s) is held whole and delivered once the endpoint is back."""
    (exp,) = build_exporters({'otlp_http': [{'endpoint': 'http://127.0.0.1:9'}]}, telemetry=Telemetry())
    try:
        assert exp.compression == 'gzip'
        assert exp.retry.max_elapsed_time == 0
        assert exp._queue.max_bytes == 64 << 20
        assert (exp.retry.initial_interval, exp.retry.max_interval) == (5.0, 30.0)
    finally:
        exp.close()
