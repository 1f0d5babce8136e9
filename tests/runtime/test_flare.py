# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Scrubbing, the diagnostics file and the flare bundle, with a canary API key everywhere."""
import json
import logging
import os
import zipfile

import pytest
import yaml

from datadog_checks.host_profiler.runtime import diagnostics as diag_mod
from datadog_checks.host_profiler.runtime import scrub
from datadog_checks.host_profiler.runtime.diagnostics import FILE_NAME, SCHEMA_PATH, Diagnostics
from datadog_checks.host_profiler.runtime.flare import FLARE_MEMBERS, build_flare
from datadog_checks.host_profiler.runtime.telemetry import Telemetry

CANARY = 'CANARY-API-KEY-0123456789abcdef'
CANARY_APP = 'CANARY-APP-KEY-fedcba9876543210'
CANARY_HEADER = 'CANARY-HEADER-VALUE-42'
CANARIES = (CANARY, CANARY_APP, CANARY_HEADER)


def canary_instance():
    return {
        'mode': 'standalone',
        'tags': ['team:profiling'],
        'receiver': {
            'sampling': {'samples_per_second': 20},
            'symbol_uploader': {
                'enabled': True,
                'symbol_endpoints': [{'site': 'datadoghq.com', 'api_key': CANARY, 'app_key': CANARY_APP}],
            },
        },
        'exporters': {
            'otlp_http': {
                'endpoint': 'https://intake.profile.datadoghq.com',
                'headers': {'dd-api-key': CANARY, 'X-Custom-Auth': CANARY_HEADER, 'dd-evp-origin': 'host-profiler'},
            },
            'otlp_http/second': {'endpoint': 'http://127.0.0.1:4318', 'headers': {'Authorization': 'Bearer ' + CANARY}},
        },
    }


def assert_no_canary(data, where):
    if isinstance(data, str):
        data = data.encode('utf-8')
    for c in CANARIES:
        assert c.encode() not in data, '{} leaked into {}'.format(c, where)
        # also not in common re-encodings
        assert c.encode('utf-16-le') not in data, where


# -- a tiny JSON-schema checker (draft-07 subset: type, enum, required, properties,
#    additionalProperties, items, minimum); jsonschema is not a dependency -----------------
_TYPES = {
    'object': dict,
    'array': list,
    'string': str,
    'boolean': bool,
    'null': type(None),
}


def _is_type(value, t):
    if t == 'integer':
        return isinstance(value, int) and not isinstance(value, bool)
    if t == 'number':
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[t])


def validate(value, schema, path='$'):
    try:
        import jsonschema  # noqa: F401
    except ImportError:
        pass
    else:
        jsonschema.validate(value, schema)
    _validate(value, schema, path)


def _validate(value, schema, path):
    types = schema.get('type')
    if types is not None:
        types = types if isinstance(types, list) else [types]
        assert any(_is_type(value, t) for t in types), '{}: {!r} is not {}'.format(path, value, types)
    if 'enum' in schema:
        assert value in schema['enum'], path
    if 'minimum' in schema and _is_type(value, 'number'):
        assert value >= schema['minimum'], path
    if isinstance(value, dict):
        for key in schema.get('required', []):
            assert key in value, '{}: missing {}'.format(path, key)
        props = schema.get('properties', {})
        extra = schema.get('additionalProperties', True)
        for k, v in value.items():
            if k in props:
                _validate(v, props[k], path + '.' + k)
            elif extra is False:
                raise AssertionError('{}: unexpected {}'.format(path, k))
            elif isinstance(extra, dict):
                _validate(v, extra, path + '.' + k)
    if isinstance(value, list) and 'items' in schema:
        for i, v in enumerate(value):
            _validate(v, schema['items'], '{}[{}]'.format(path, i))


@pytest.fixture
def schema():
    with open(SCHEMA_PATH) as f:
        return json.load(f)


@pytest.fixture
def telemetry():
    t = Telemetry()
    t.count('sampler.samples', 1234)
    t.count('sampler.lost', 2, ['reason:stack_collision'])
    t.gauge('export.queue.bytes', 4096, ['exporter:otlp_http'])
    return t


def make_diagnostics(tmp_path, telemetry, **kw):
    d = Diagnostics(str(tmp_path), telemetry, probe=lambda: {'kernel_release': '6.1.0', 'btf_present': True}, **kw)
    d.set_config(canary_instance())
    d.set_sampler_state({'running': True, 'frequency': 20, 'cpus': 4})
    d.set_top_stacks({'python;main;work': 40, 'bash;readline': 3, 'app;leaf_' + CANARY: 1})
    d.record_error('POST failed: headers={"dd-api-key": "%s"} url=https://x/?api_key=%s' % (CANARY, CANARY))
    d.record_error('exporter otlp_http/second: 401 with Authorization: Bearer %s' % CANARY)
    d.record_error('custom header value %s rejected' % CANARY_HEADER)
    return d


# -- scrub -----------------------------------------------------------------------------------

def test_secrets_in_and_scrub_config():
    inst = canary_instance()
    secrets = scrub.secrets_in(inst)
    assert CANARY in secrets and CANARY_APP in secrets and CANARY_HEADER in secrets
    assert 'Bearer ' + CANARY in secrets
    assert 'host-profiler' not in secrets  # benign header: redacted in config, not registered
    clean = scrub.scrub_config(inst)
    assert_no_canary(json.dumps(clean), 'scrub_config')
    assert clean['exporters']['otlp_http']['headers']['dd-api-key'] == scrub.REDACTED
    assert clean['exporters']['otlp_http']['headers']['dd-evp-origin'] == scrub.REDACTED
    assert clean['exporters']['otlp_http']['endpoint'] == 'https://intake.profile.datadoghq.com'
    assert clean['receiver']['symbol_uploader']['symbol_endpoints'][0]['site'] == 'datadoghq.com'
    assert clean['receiver']['sampling']['samples_per_second'] == 20
    assert inst['exporters']['otlp_http']['headers']['dd-api-key'] == CANARY  # input untouched


@pytest.mark.parametrize(
    'text',
    [
        'dd-api-key: {}',
        '{{"api_key": "{}"}}',
        "{{'app_key': '{}'}}",
        'Authorization: Bearer {}',
        'https://intake/?dd-api-key={}&x=1',
        'https://user:{}@proxy:3128',
        'api_key={} rest',
    ],
)
def test_scrub_text_patterns_without_registration(text):
    unknown = 'Zz9-unregistered-secret-value'
    out = scrub.scrub_text(text.format(unknown))
    assert unknown not in out
    assert scrub.REDACTED in out


def test_line_scrubber_same_as_scrub_text_on_indented_json():
    """The diagnostics file's scrubber (line by line, lines remembered) gives scrub_text's text
    for json.dumps(indent=1) output, at the first call and at the next ones, and forgets what it
    remembered when a secret is registered."""
    doc = {
        'config': {'api_key': 'Zz9-unregistered-secret-value', 'nested': {'token': 'abc', 'Password': 'x y'}},
        'extra': {'a': 'Authorization: Bearer abc.def', 'b': 'https://user:pw@proxy:3128', 'c': 'token=xyz;',
                  'd': 'abcdef0123456789abcdef0123456789', 'e': 'dd-api-key: q1w2e3', 'f': 'plain'},
        'list': ['api_key=1234 rest', 'password', 'token', {'secret': ['s1', 's2']}],
    }
    text = json.dumps(doc, indent=1, sort_keys=True)
    ls = scrub.LineScrubber()
    for _ in range(2):
        assert ls.scrub(text, ['plain-ish-secret']) == scrub.scrub_text(text, ['plain-ish-secret'])
    late = 'late-registered-value'
    text2 = text.replace('plain', late)
    assert ls.scrub(text2) == scrub.scrub_text(text2)
    scrub.register_secret(late)
    assert late not in ls.scrub(text2)
    assert ls.scrub(text2) == scrub.scrub_text(text2)
    # a secret with a line break: the whole text at once
    multi = 'line one\nline two'
    assert ls.scrub('a\nline one\nline two\nb', [multi]) == scrub.scrub_text('a\nline one\nline two\nb', [multi])


def test_scrub_text_bare_api_key_keeps_last_five():
    key = 'abcdef0123456789abcdef0123456789'
    assert scrub.scrub_text('key ' + key + ' end') == 'key ' + '*' * 27 + '56789 end'


def test_agentcheck_register_secret_integration():
    from datadog_checks.base import AgentCheck

    check = AgentCheck('host_profiler', {}, [canary_instance()])
    for s in scrub.secrets_in(check.instance):
        check.register_secret(s)
    text = 'boom {} {} {}'.format(CANARY, CANARY_APP, CANARY_HEADER)
    assert_no_canary(check.sanitize(text), 'AgentCheck.sanitize')


def test_log_scrubbing_filter(caplog):
    logger = logging.getLogger('host_profiler.test_scrub')
    f = scrub.ScrubbingFilter(scrub.secrets_in(canary_instance()))
    caplog.handler.addFilter(f)
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            logger.info('sending with headers %s', {'X-Custom-Auth': CANARY_HEADER, 'dd-api-key': CANARY})
            try:
                raise ValueError('bad key ' + CANARY_APP)
            except ValueError:
                logger.exception('failed')
        assert_no_canary(caplog.text, 'logs')
    finally:
        caplog.handler.removeFilter(f)


# -- diagnostics -----------------------------------------------------------------------------

def test_diagnostics_file_scrubbed_and_valid(tmp_path, telemetry, schema):
    d = make_diagnostics(tmp_path, telemetry)
    assert d.maybe_write(1000.0)
    raw = (tmp_path / FILE_NAME).read_bytes()
    assert_no_canary(raw, FILE_NAME)
    doc = json.loads(raw)
    validate(doc, schema)
    assert doc['telemetry']['totals']['sampler.samples'] == 1234
    assert doc['telemetry']['gauges']['export.queue.bytes{exporter:otlp_http}'] == 4096
    assert doc['top_stacks'][0] == {'stack': 'python;main;work', 'count': 40}
    assert len(doc['errors']) == 3
    assert doc['sampler']['running'] is True
    assert doc['probe']['kernel_release'] == '6.1.0'


def test_diagnostics_with_real_probe_validates(tmp_path, schema):
    d = Diagnostics(str(tmp_path), Telemetry())
    validate(json.loads(d.render()), schema)


def test_diagnostics_rate_limit_and_rotation(tmp_path, telemetry):
    d = make_diagnostics(tmp_path, telemetry)
    path = tmp_path / FILE_NAME
    assert d.maybe_write(1000.0) is True
    first = path.read_text()
    telemetry.count('sampler.samples', 1)
    assert d.maybe_write(1030.0) is False  # < 60 s
    assert d.maybe_write(1059.9) is False
    assert path.read_text() == first
    assert not (tmp_path / (FILE_NAME + '.1')).exists()
    assert d.maybe_write(1060.0) is True
    assert (tmp_path / (FILE_NAME + '.1')).read_text() == first
    assert json.loads(path.read_text())['telemetry']['totals']['sampler.samples'] == 1235
    assert d.maybe_write(1200.0) is True
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [FILE_NAME, FILE_NAME + '.1']  # no temp file, no .2


def test_diagnostics_size_bound(tmp_path, telemetry, schema):
    d = make_diagnostics(tmp_path, telemetry, max_bytes=64 * 1024, max_errors=500, top_stacks=5000)
    d.set_top_stacks({';'.join('frame_{}_{}'.format(i, j) for j in range(40)): i for i in range(3000)})
    for i in range(500):
        d.record_error('error {} '.format(i) + 'x' * 1500)
    assert d.write(5000.0)
    raw = (tmp_path / FILE_NAME).read_bytes()
    assert len(raw) <= 64 * 1024
    doc = json.loads(raw)
    validate(doc, schema)
    assert doc['truncated'] is True
    assert doc['top_stacks'] or doc['errors'] or doc['config']
    assert_no_canary(raw, 'truncated diagnostics')


def test_diagnostics_error_deque_is_bounded(tmp_path):
    d = Diagnostics(str(tmp_path), None, max_errors=3, probe=dict)
    for i in range(10):
        d.record_error('e{}'.format(i))
    assert [e['message'] for e in d.errors] == ['e7', 'e8', 'e9']


def test_diagnostics_unwritable_directory_never_raises(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    d = Diagnostics(str(blocker / 'sub'), Telemetry(), probe=dict)
    assert d.maybe_write(1.0) is False
    assert d.write_errors == 1


def test_default_log_directory(tmp_path, monkeypatch):
    from datadog_checks.base.stubs import datadog_agent

    logdir = tmp_path / 'agentlogs'
    logdir.mkdir()
    monkeypatch.setitem(datadog_agent._config, 'log_file', str(logdir / 'agent.log'))
    assert diag_mod.default_log_directory() == str(logdir)
    monkeypatch.setitem(datadog_agent._config, 'log_file', '')
    assert os.path.isdir(diag_mod.default_log_directory())


# -- flare -----------------------------------------------------------------------------------

def test_flare_zip_members_scrubbed_and_valid(tmp_path, telemetry, schema):
    d = make_diagnostics(tmp_path / 'diag', telemetry)
    log = tmp_path / 'host_profiler.log'
    log.write_text('2026-01-01 INFO start\n2026-01-01 ERROR request with dd-api-key={} failed\n'
                   'header X-Custom-Auth={}\n'.format(CANARY, CANARY_HEADER))
    folded = {'python;main;work': 40, 'curl;send_' + CANARY: 2}
    out = build_flare(
        str(tmp_path / 'out' / 'flare.zip'),
        instance=canary_instance(),
        diagnostics_payload=d.payload(),
        live_profile_folded=folded,
        logs=[str(log), str(tmp_path / 'missing.log')],
    )
    assert out == str(tmp_path / 'out' / 'flare.zip')
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o600)
    raw = open(out, 'rb').read()
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert set(FLARE_MEMBERS) <= set(names)
        assert 'logs/host_profiler.log' in names and 'logs/missing.log' in names
        for name in names:
            assert_no_canary(zf.read(name), name)
        validate(json.loads(zf.read('diagnostics.json')), schema)
        config = yaml.safe_load(zf.read('config.yaml'))
        assert config['exporters']['otlp_http']['headers']['dd-api-key'] == scrub.REDACTED
        assert config['receiver']['sampling']['samples_per_second'] == 20
        telemetry_doc = json.loads(zf.read('telemetry.json'))
        assert telemetry_doc['totals']['sampler.samples'] == 1234
        assert json.loads(zf.read('probe.json'))['kernel_release'] == '6.1.0'
        lines = zf.read('live_profile.folded').decode().splitlines()
        assert lines[0] == 'python;main;work 40'
        assert 'INFO start' in zf.read('logs/host_profiler.log').decode()
        assert 'diagnostics.json' in zf.read('README.txt').decode()
    # the deflated bytes of the whole archive
    assert_no_canary(raw, 'flare zip')
    assert not os.path.exists(out + '.partial')


def test_flare_without_profile_uses_real_probe(tmp_path):
    out = build_flare(str(tmp_path / 'f.zip'), instance={}, diagnostics_payload=None, live_profile_folded=None, logs=[])
    with zipfile.ZipFile(out) as zf:
        assert 'live_profile.folded' not in zf.namelist()
        assert json.loads(zf.read('probe.json'))['kernel_release'] == os.uname().release
