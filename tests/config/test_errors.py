# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Bad configuration: one clear line on stderr, exit code 2, no traceback, and nothing started.

The command is the installed ``host-profiler`` (a subprocess), as a user runs it; the check is the
Agent's view of the same errors (a ConfigurationError naming the key path)."""
import os
import subprocess
import sys
import threading

import pytest
import yaml
from datadog_checks.base import ConfigurationError

from datadog_checks.host_profiler.check import HostProfilerCheck
from datadog_checks.host_profiler.cli import main
from datadog_checks.host_profiler.config.loader import build_config, load_instance
from datadog_checks.host_profiler.config.validation import check_endpoints, check_known_options, instance_schema

from tests import REPO_ROOT

COMMAND = os.path.join(os.path.dirname(sys.executable), 'host-profiler')
REPO = REPO_ROOT


def _command(*args, env=None):
    proc = subprocess.run([COMMAND, *args], capture_output=True, text=True, timeout=120, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def _assert_one_line_error(rc, stderr, expected):
    assert rc == 2, stderr
    assert 'Traceback' not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith('host-profiler: configuration error: ')
    assert expected in lines[0], lines[0]


def _config(tmp_path, instance, name='conf.yaml'):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({'instances': [instance]}))
    return str(path)


@pytest.mark.parametrize('command', ['run', 'check', 'flare'])
def test_unknown_option_names_path_and_nearest(tmp_path, command):
    config = _config(tmp_path, {'receiver': {'samples_per_secnd': 50}})
    rc, _, err = _command(command, '--config', config)
    _assert_one_line_error(rc, err, 'receiver -> samples_per_secnd: unknown option; did you mean samples_per_second?')


@pytest.mark.parametrize('instance,expected', [
    ({'samples_per_second': 50}, 'samples_per_second: unknown option; valid options here:'),
    ({'exporters': {'otlp_http': [{'endpoint': 'http://127.0.0.1:9', 'retyr': {}}]}},
     'exporters -> otlp_http -> 1 -> retyr: unknown option; did you mean retry?'),
    ({'exporters': {'otlp_http': {'endpoint': 'http://127.0.0.1:9', 'compresion': 'gzip'}}},
     'exporters -> otlp_http -> 1 -> compresion: unknown option; did you mean compression?'),
    ({'exporters': {'otlphttp': [{'endpoint': 'http://127.0.0.1:9'}]}},
     'exporters -> otlphttp: unknown option; did you mean otlp_http?'),
    ({'receiver': {'symbol_uploader': {'enabeld': False}}},
     'receiver -> symbol_uploader -> enabeld: unknown option; did you mean enabled?'),
    ({'processors': {'attributes': {'actions': [{'key': 'a', 'action': 'delete', 'patern': 'x'}]}}},
     'processors -> attributes -> actions -> 1 -> patern: unknown option; did you mean pattern?'),
    ({'processors': {'resourcedetection': {'host.nmae': True}}},
     'processors -> resourcedetection -> host.nmae: unknown option; did you mean host.name?'),
])
def test_unknown_option_anywhere(instance, expected):
    with pytest.raises(ConfigurationError) as excinfo:
        load_instance(instance, 'standalone')
    assert expected in str(excinfo.value)


def test_free_form_values_stay_open():
    """Header names, tags and the HTTP client's and the Agent's own instance keys are not options
    of the spec's models, and are accepted."""
    check_known_options({
        'tags': ['team:x'], 'name': 'profiler', 'namespace': 'n', 'min_collection_interval': 15,
        'tls_verify': False, 'proxy': {'https': 'http://proxy:3128'},
        'exporters': {'otlp_http': [{'endpoint': 'http://127.0.0.1:9', 'name': 'local',
                                     'headers': {'x-any-header': 'v', 'dd-api-key': 'k'}}]},
    })


def test_every_option_of_the_example_is_known():
    """The known options come from the generated models: every option of conf.yaml.example (which
    the spec generates too), uncommented, passes."""
    with open(os.path.join(REPO, 'conf.yaml.example')) as f:
        body = f.read().split('\ninstances:\n', 1)[1]
    lines = [line.replace('# ', '', 1) if line.lstrip().startswith('# ') else line
             for line in body.splitlines() if not line.lstrip().startswith('##') and line.strip() != '#']
    (instance,) = yaml.safe_load('\n'.join(lines))
    assert 'receiver' in instance and 'hostname' in instance
    check_known_options(instance)
    from datadog_checks.host_profiler.config_models.instance import InstanceConfig, Receiver

    assert {f.alias or n for n, f in InstanceConfig.model_fields.items()} <= set(instance_schema())
    assert set(instance_schema()['receiver'][1]) == {f.alias or n for n, f in Receiver.model_fields.items()}


@pytest.mark.parametrize('endpoint', ['not a url', 'otlp.datadoghq.com', 'ftp://otlp.datadoghq.com', 'http://',
                                      'https://:443/x', 'http://host:port'])
def test_exporter_endpoint_must_be_an_http_url_with_a_host(tmp_path, endpoint):
    config = _config(tmp_path, {'exporters': {'otlp_http': [{'endpoint': endpoint}]}})
    rc, _, err = _command('run', '--config', config, '--duration', '1')
    _assert_one_line_error(rc, err, 'exporters -> otlp_http -> 1 -> endpoint: ')


@pytest.mark.parametrize('instance,path', [
    ({'health_metrics': {'endpoint': 'localhost:4318'}}, 'health_metrics -> endpoint'),
    ({'receiver': {'symbol_uploader': {'enabled': True, 'symbol_endpoints': [
        {'site': 'datadoghq.com', 'api_key': 'k', 'url': 'sourcemap-intake.datadoghq.com'}]}}},
     'receiver -> symbol_uploader -> symbol_endpoints -> 1 -> url'),
    ({'receiver': {'symbol_uploader': {'enabled': True, 'symbol_endpoints': [
        {'site': 'https://datadoghq.com', 'api_key': 'k'}]}}},
     'receiver -> symbol_uploader -> symbol_endpoints -> 1 -> site'),
    ({'processors': {'k8sattributes': {'kubelet_url': 'kubelet:10250'}}}, 'processors -> k8sattributes -> kubelet_url'),
])
def test_every_endpoint_is_checked(instance, path):
    with pytest.raises(ConfigurationError) as excinfo:
        load_instance(instance, 'standalone')
    assert str(excinfo.value).startswith(path + ': ')


def test_endpoint_from_the_environment_is_checked_after_expansion():
    instance = {'exporters': {'otlp_http': [{'endpoint': '${env:HP_TEST_ENDPOINT}'}]}}
    with pytest.raises(ConfigurationError, match='exporters -> otlp_http -> 1 -> endpoint'):
        load_instance(instance, 'standalone', environ={'HP_TEST_ENDPOINT': 'not a url'})
    out, _ = load_instance(instance, 'standalone', environ={'HP_TEST_ENDPOINT': 'https://otlp.datadoghq.eu'})
    assert out['exporters']['otlp_http'][0]['endpoint'] == 'https://otlp.datadoghq.eu'
    check_endpoints({'exporters': {'otlp_http': [{'endpoint': 'http://[::1]:4318/'}]}})


def test_missing_file(tmp_path):
    rc, _, err = _command('run', '--config', str(tmp_path / 'missing.yaml'))
    _assert_one_line_error(rc, err, '{}: cannot read the configuration file: No such file or directory'.format(
        tmp_path / 'missing.yaml'))


def test_unreadable_file(tmp_path):
    # root reads any file whatever its mode: a directory is what root cannot read as a file
    rc, _, err = _command('check', '--config', str(tmp_path))
    _assert_one_line_error(rc, err, '{}: cannot read the configuration file: Is a directory'.format(tmp_path))
    binary = tmp_path / 'binary.yaml'
    binary.write_bytes(b'instances:\n  - receiver: {}\n\xff\xfe\n')
    rc, _, err = _command('check', '--config', str(binary))
    _assert_one_line_error(rc, err, '{}: cannot read the configuration file: not UTF-8 text'.format(binary))


@pytest.mark.parametrize('text,where', [
    ('instances:\n  - receiver: [\n', 'line 3, column 1: invalid YAML: expected the node content'),
    ('instances:\n  - receiver:\n      samples_per_second: 50\n     pids: [1]\n', 'line 4, column 6: invalid YAML'),
    ('instances:\n\t- {}\n', 'line 2, column 1: invalid YAML: found character \'\\t\''),
])
def test_invalid_yaml_names_line_and_column(tmp_path, text, where):
    config = tmp_path / 'conf.yaml'
    config.write_text(text)
    rc, _, err = _command('flare', '--config', str(config))
    _assert_one_line_error(rc, err, '{}, {}'.format(config, where))


def test_wrong_type_is_one_line(tmp_path):
    config = _config(tmp_path, {'receiver': {'samples_per_second': 'fast', 'drain_interval': -1}})
    rc, _, err = _command('run', '--config', config)
    _assert_one_line_error(rc, err, 'receiver -> samples_per_second: Input should be a valid integer')
    assert 'receiver -> drain_interval: Input should be greater than 0' in err


def test_nothing_starts_before_the_error(tmp_path, capsys):
    """In process: the error comes before any thread (sampler, exporters, uploader) exists."""
    before = {t.ident for t in threading.enumerate()}
    config = _config(tmp_path, {'exporters': {'otlp_http': [{'endpoint': 'not a url'}]},
                                'receiver': {'symbol_uploader': {'enabled': False}}})
    assert main(['run', '--config', config, '--duration', '1', '--output', str(tmp_path / 'out')]) == 2
    assert {t.ident for t in threading.enumerate()} == before
    assert not (tmp_path / 'out' / 'summary.json').exists()
    assert 'endpoint: must be an http(s) URL' in capsys.readouterr().err


def test_the_check_raises_a_configuration_error(dd_run_check):
    check = HostProfilerCheck('host_profiler', {}, [{'mode': 'standalone', 'receiver': {'samples_per_secnd': 50}}])
    with pytest.raises(Exception, match='receiver -> samples_per_secnd: unknown option; did you mean samples_per_second'):
        dd_run_check(check)
    assert check.pipeline is None  # nothing was built


@pytest.mark.parametrize('value,expected', [
    (['python', 'ruby'], "receiver -> interpreters -> 2: unknown runtime 'ruby': valid values are python"),
    # not a list: refused by the typed configuration (the models generated from spec.yaml), with its key path
    ('python', 'receiver -> interpreters\n  Input should be a valid tuple'),
])
def test_unknown_interpreter_names_the_valid_ones(value, expected):
    from datadog_checks.host_profiler.profiler_pipeline import receiver_config

    with pytest.raises(ConfigurationError) as excinfo:
        receiver_config(build_config({'receiver': {'interpreters': value}}, 'standalone'), 10.0)
    assert expected in str(excinfo.value)


def test_unknown_interpreter_is_one_line_from_the_command(tmp_path):
    config = _config(tmp_path, {'receiver': {'interpreters': ['python', 'ruby']}})
    rc, _, err = _command('run', '--config', config, '--duration', '1')
    _assert_one_line_error(rc, err, "receiver -> interpreters -> 2: unknown runtime 'ruby': valid values are python")


def test_interpreters_select_runtimes_from_the_registry():
    """The receiver builds its runtimes from receiver.interpreters: the default names Python, an
    empty list switches it off, and a name the registry lacks is refused with the valid ones."""
    from datadog_checks.host_profiler.profiler_pipeline import receiver_config
    from datadog_checks.host_profiler.runtimes import runtime_classes
    from datadog_checks.host_profiler.runtimes.python import PythonRuntime

    assert [c.name for c in runtime_classes(receiver_config(build_config({}, 'standalone'), 10.0).interpreters)] == [
        'python']
    assert runtime_classes(
        receiver_config(build_config({'receiver': {'interpreters': []}}, 'standalone'), 10.0).interpreters) == []
    with pytest.raises(ConfigurationError, match='valid values are python'):
        runtime_classes(['php'])
    assert runtime_classes(['python']) == [PythonRuntime]
