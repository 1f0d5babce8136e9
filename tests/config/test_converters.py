# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Golden tests of the config converters.

Each case is a folder ``tests/converters/{agent,standalone}/<case>/`` with ``in.yaml`` (the
instance), and either ``out.yaml`` (+ optional ``warnings.txt``: one expected warning
substring per line; an absent file means no warning; + optional ``notes.txt``, the same for
the notes: what the converter added where the user gave no value) or ``error.txt`` (a substring of the
error message; a second line, when present, is the expected key path).
Agent cases may carry ``agent.yaml``: the Agent configuration ``datadog_agent.get_config``
returns (nested mappings, looked up with dotted keys); default ``{api_key, site}``.
Standalone cases may carry ``options.yaml`` (``require_exporter: true``).

Regenerate outputs with ``HOST_PROFILER_UPDATE_GOLDEN=1 pytest tests/test_converters.py``.
"""
import os

import pytest
import yaml
from datadog_checks.base import ConfigurationError

from datadog_checks.host_profiler.config.converters import (
    ConverterError,
    convert_with_agent,
    convert_without_agent,
    extract_site_from_url,
    is_datadog_endpoint,
)
from datadog_checks.host_profiler.__about__ import __version__
from datadog_checks.host_profiler.config.loader import expand_env, load_instance

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, 'converters')
UPDATE = os.environ.get('HOST_PROFILER_UPDATE_GOLDEN') == '1'
AGENT_VERSION = '7.99.0'
STANDALONE_VERSION = '1.0.0'
DEFAULT_AGENT_CONFIG = {'api_key': 'agentkey123', 'site': 'datadoghq.com'}


def _cases(mode):
    base = os.path.join(GOLDEN, mode)
    return sorted(d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d)))


def _read(path, default=None):
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return f.read()


def _agent_lookup(config):
    def get(key):
        if key in config:
            return config[key]
        node = config
        for part in key.split('.'):
            if not isinstance(node, dict) or part not in node:
                return ''  # what the stub and the Agent return for an unset key
            node = node[part]
        return node

    return get


def _run(mode, case_dir, notes=None):
    instance = yaml.safe_load(_read(os.path.join(case_dir, 'in.yaml'), '')) or {}
    if mode == 'agent':
        agent = yaml.safe_load(_read(os.path.join(case_dir, 'agent.yaml'), 'null'))
        agent = DEFAULT_AGENT_CONFIG if agent is None else agent
        return convert_with_agent(instance, _agent_lookup(agent), origin_version=AGENT_VERSION, notes=notes)
    options = yaml.safe_load(_read(os.path.join(case_dir, 'options.yaml'), 'null')) or {}
    return convert_without_agent(instance, origin_version=STANDALONE_VERSION, notes=notes, **options)


def _expect_lines(got, case_dir, name):
    expected = [w for w in (_read(os.path.join(case_dir, name), '') or '').splitlines() if w]
    assert len(got) == len(expected), (name, got)
    for line, want in zip(got, expected):
        assert want in line


@pytest.mark.parametrize(
    'mode,case', [('agent', c) for c in _cases('agent')] + [('standalone', c) for c in _cases('standalone')]
)
def test_golden(mode, case):
    case_dir = os.path.join(GOLDEN, mode, case)
    error = _read(os.path.join(case_dir, 'error.txt'))
    if error is not None:
        lines = [line for line in error.splitlines() if line.strip()]
        with pytest.raises(ConverterError) as excinfo:
            _run(mode, case_dir)
        assert isinstance(excinfo.value, ConfigurationError)
        assert lines[0] in excinfo.value.message
        if len(lines) > 1:
            assert excinfo.value.key_path == lines[1]
        return
    notes = []
    out, warnings = _run(mode, case_dir, notes)
    out_path = os.path.join(case_dir, 'out.yaml')
    if UPDATE:
        with open(out_path, 'w') as f:
            yaml.safe_dump(out, f, sort_keys=True, default_flow_style=False)
        for name, lines in (('warnings.txt', warnings), ('notes.txt', notes)):
            with open(os.path.join(case_dir, name), 'w') as f:
                f.write(''.join(w + '\n' for w in lines))
            if not lines:
                os.remove(os.path.join(case_dir, name))
        return
    expected = yaml.safe_load(_read(out_path))
    assert out == expected
    _expect_lines(warnings, case_dir, 'warnings.txt')
    _expect_lines(notes, case_dir, 'notes.txt')
    # without a notes list, the result is the same (notes are never mixed into the warnings)
    assert _run(mode, case_dir) == (out, warnings)


def test_enough_cases_both_modes():
    assert len(_cases('agent')) + len(_cases('standalone')) >= 25
    assert len(_cases('agent')) >= 10 and len(_cases('standalone')) >= 10


def test_input_not_mutated():
    instance = {'exporters': {'otlp_http': [{'endpoint': 'https://otlp.datadoghq.com', 'headers': {'dd-api-key': 1}}]}}
    convert_without_agent(instance)
    assert instance['exporters']['otlp_http'][0]['headers'] == {'dd-api-key': 1}


@pytest.mark.parametrize(
    'url,site',
    [
        ('https://intake.profile.datadoghq.eu/api/v2/profile', 'datadoghq.eu'),
        ('https://intake.profile.us3.datadoghq.com/api/v2/profile', 'us3.datadoghq.com'),
        ('https://intake.profile.ddog-gov.com/api/v2/profile', 'ddog-gov.com'),
        ('https://intake.profile.ap1.datadoghq.com', 'ap1.datadoghq.com'),
        ('https://example.com/profile', ''),
        ('://invalid', ''),
        ('', ''),
    ],
)
def test_extract_site_from_url(url, site):
    assert extract_site_from_url(url) == site


def test_is_datadog_endpoint(monkeypatch):
    assert is_datadog_endpoint('https://otlp.datadoghq.com')
    assert is_datadog_endpoint('https://otlp.us5.datadoghq.com:443/')
    assert is_datadog_endpoint('https://otlp.ddog-gov.com')
    assert not is_datadog_endpoint('http://localhost:4318')
    assert not is_datadog_endpoint('https://datadoghq.com.evil.example')
    monkeypatch.setenv('HP_TEST_URL', 'https://otlp.datadoghq.eu')
    assert is_datadog_endpoint('${env:HP_TEST_URL}')


def test_error_names_key_path():
    with pytest.raises(ConverterError) as excinfo:
        convert_without_agent({'processors': {'attributes': {'actions': [{'key': 'a', 'action': 'nope'}]}}})
    assert excinfo.value.key_path == 'processors.attributes.actions[0].action'
    assert 'processors.attributes.actions[0].action' in str(excinfo.value)


def test_expand_env_after_conversion_keeps_strings(tmp_path):
    conf = tmp_path / 'conf.yaml'
    conf.write_text(
        'init_config: {}\n'
        'instances:\n'
        '  - exporters:\n'
        '      otlp_http:\n'
        '        - endpoint: https://otlp.datadoghq.com\n'
        '          headers: {dd-api-key: "${env:HP_KEY}", x-literal: "$${env:HP_KEY}"}\n'
    )
    notes = []
    out, warnings = load_instance(str(conf), 'standalone', environ={'HP_KEY': '12345'}, origin_version='1.0.0',
                                  notes=notes)
    headers = out['exporters']['otlp_http'][0]['headers']
    assert headers['dd-api-key'] == '12345'  # a string, not re-typed to int
    assert headers['x-literal'] == '${env:HP_KEY}'
    assert out['mode'] == 'standalone'
    # added where the user gave no value: a note (INFO), not a warning
    assert warnings == [] and 'Added minimal resourcedetection processor' in notes[0]


def test_expand_env_unset_warns():
    warnings = []
    assert expand_env({'a': ['x${env:HP_UNSET_X}y']}, {}, warnings=warnings) == {'a': ['xy']}
    assert warnings == ['environment variable HP_UNSET_X is not set (at a[0])']


def test_loader_bare_mapping_and_agent_mode():
    from unittest import mock

    from datadog_checks.base.stubs import datadog_agent

    with mock.patch.dict(datadog_agent._config, {'api_key': 'k1', 'site': 'datadoghq.eu'}):
        out, _ = load_instance({'receiver': {'samples_per_second': 49}}, 'agent')
    exporter = out['exporters']['otlp_http'][0]
    assert exporter['endpoint'] == 'https://otlp.datadoghq.eu'
    # outside the Agent, the stubs' placeholder version is not sent: the profiler's own version is
    assert datadog_agent.get_version() == '0.0.0'
    assert exporter['headers']['dd-evp-origin-version'] == __version__
    assert out['receiver']['samples_per_second'] == 49
    assert out['mode'] == 'agent'


def test_loader_auto_mode_uses_instance_mode():
    out, _ = load_instance({'mode': 'standalone'}, 'auto')
    assert out['mode'] == 'standalone'
    out, _ = load_instance({}, 'auto')  # outside the Agent: AGENT_RUNNING is false
    assert out['mode'] == 'standalone'


def test_loader_errors_name_file_and_path(tmp_path):
    with pytest.raises(ConverterError) as excinfo:
        load_instance(str(tmp_path / 'missing.yaml'), 'standalone')
    assert 'missing.yaml' in excinfo.value.key_path
    bad = tmp_path / 'bad.yaml'
    bad.write_text('instances: []\n')
    with pytest.raises(ConverterError) as excinfo:
        load_instance(str(bad), 'standalone')
    assert excinfo.value.key_path == 'instances'
    with pytest.raises(ConverterError) as excinfo:
        load_instance({'mode': 'cloud'}, 'auto')
    assert excinfo.value.key_path == 'mode'
