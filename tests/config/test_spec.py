# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""assets/configuration/spec.yaml is the single source of the configuration: the examples and the config
models are generated from it (scripts/generate_config.py) and must stay in sync; the models must carry
exactly the spec's options and defaults; bad values must name their key path. Also checks the packaging
assets that refer to the spec (manifest, service checks) and the set-up's BCC link."""

import copy
import importlib.util
import json
import os
import re

import pytest
import yaml
from pydantic import BaseModel

from datadog_checks.base import ConfigurationError
from datadog_checks.host_profiler.config_models import InstanceConfig, validators

from tests import REPO_ROOT

pytestmark = pytest.mark.unit

REPO = REPO_ROOT
# Options that come from the integrations' `instances/default` template rather than from this check.
TEMPLATE_OPTIONS = {
    'tags',
    'service',
    'min_collection_interval',
    'empty_default_hostname',
    'metric_patterns',
    'disable_generic_tags',
    'enable_legacy_tags_normalization',
}


def _import_generator():
    spec = importlib.util.spec_from_file_location(
        'generate_config', os.path.join(REPO, 'scripts', 'generate_config.py')
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def generator():
    return _import_generator()


@pytest.fixture(scope='module')
def spec_data(generator):
    return generator.load_spec()


@pytest.fixture(scope='module')
def instance_options(spec_data):
    (spec_file,) = spec_data['files']
    (instances,) = [section for section in spec_file['options'] if section['name'] == 'instances']
    return {option['name']: option for option in instances['options']}


def _plain(value):
    """Frozen model values -> plain Python (tuples -> lists, mappingproxy -> dict, floats that are ints -> int)."""
    if isinstance(value, BaseModel):
        return {(field.alias or name): _plain(getattr(value, name)) for name, field in type(value).model_fields.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, 'items'):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _spec_defaults(properties):
    """The defaults tree that the spec declares for a list of object properties."""
    tree = {}
    for prop in properties:
        if prop.get('type') == 'object' and 'properties' in prop:
            tree[prop['name']] = _spec_defaults(prop['properties']) if 'default' in prop else None
        else:
            tree[prop['name']] = copy.deepcopy(prop.get('default'))
    return tree


def _minimal_item(item_spec):
    """The smallest valid item of a list of objects: required fields set to 'x' (or their first enum value)."""
    props = {p['name']: p for p in item_spec['properties']}
    return {name: props[name].get('enum', ['x'])[0] for name in item_spec.get('required', [])}


def _walk_lists_of_objects(properties, path=()):
    for prop in properties:
        if prop.get('type') == 'array' and prop['items'].get('type') == 'object':
            yield path + (prop['name'],), prop['items']
        if prop.get('type') == 'object' and 'properties' in prop:
            yield from _walk_lists_of_objects(prop['properties'], path + (prop['name'],))
        if prop.get('type') == 'array' and prop['items'].get('type') == 'object':
            yield from _walk_lists_of_objects(prop['items'].get('properties', []), path + (prop['name'], 0))


# --------------------------------------------------------------------------------------------
# Generated files in sync
# --------------------------------------------------------------------------------------------
def test_spec_loads_without_errors(spec_data):
    assert spec_data['name'] == 'Host Profiler'
    assert [f['name'] for f in spec_data['files']] == ['host_profiler.yaml']


def test_examples_and_models_are_in_sync_with_spec(generator):
    stale = generator.out_of_sync(generator.render())
    assert not stale, 'run `.venv/bin/python scripts/generate_config.py`:\n' + '\n'.join(d for _, d in stale)


def test_top_level_example_is_the_packaged_example():
    with (
        open(os.path.join(REPO, 'conf.yaml.example')) as top,
        open(os.path.join(REPO, 'datadog_checks', 'host_profiler', 'data', 'conf.yaml.example')) as packaged,
    ):
        assert top.read() == packaged.read()


def test_check_mode_detects_drift(generator, tmp_path, monkeypatch):
    outputs = generator.render()
    path = os.path.join(REPO, 'conf.yaml.example')
    fake = tmp_path / 'conf.yaml.example'
    fake.write_text(outputs[path] + '# edited by hand\n')
    stale = generator.out_of_sync({str(fake): outputs[path]})
    assert len(stale) == 1 and '# edited by hand' in stale[0][1]


def test_uncommented_example_is_a_valid_instance(load_instance_config):
    """Every option of the example, uncommented, validates (the example values are well-typed)."""
    with open(os.path.join(REPO, 'conf.yaml.example')) as f:
        text = f.read()
    body = text.split('\ninstances:\n', 1)[1]
    lines = []
    for line in body.splitlines():
        stripped = line.lstrip()
        if stripped.startswith('##') or stripped == '#':
            continue
        lines.append(re.sub(r'^(\s*)# ', r'\1', line))
    (instance,) = yaml.safe_load('\n'.join(lines))
    assert set(instance) >= {'mode', 'receiver', 'processors', 'exporters', 'health_metrics', 'lock_file'}
    config = load_instance_config(instance)
    assert config.exporters.otlp_http[0].endpoint == 'https://otlp.datadoghq.com'
    assert config.exporters.file.formats == ('otlp',)


# --------------------------------------------------------------------------------------------
# Models <-> spec: same options, same defaults
# --------------------------------------------------------------------------------------------
def test_every_top_level_option_is_a_model_field_and_vice_versa(instance_options):
    fields = {field.alias or name for name, field in InstanceConfig.model_fields.items()}
    assert fields == set(instance_options)


@pytest.mark.parametrize('section', validators.SECTIONS)
def test_section_defaults_match_spec(section, instance_options, load_instance_config):
    value = instance_options[section]['value']
    expected = _spec_defaults(value['properties'])
    actual = _plain(getattr(load_instance_config({}), section))
    assert actual == expected


@pytest.mark.parametrize('section', ['receiver', 'processors', 'health_metrics'])
def test_section_example_shows_the_defaults(section, instance_options):
    """The example block of these sections documents the defaults: keep them equal."""
    value = instance_options[section]['value']
    def without_unset(d):  # an option with no default is not shown in the example
        return {k: without_unset(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}

    assert value['example'] == without_unset(_spec_defaults(value['properties']))


def test_top_level_defaults_match_spec(instance_options, load_instance_config):
    config = load_instance_config({})
    for name, option in instance_options.items():
        if name in validators.SECTIONS:
            continue
        value = option['value']
        expected = value.get('default', value.get('display_default'))
        actual = _plain(getattr(config, name))
        if name in TEMPLATE_OPTIONS and expected is None:
            continue
        assert actual == expected, name


def test_lists_of_objects_defaults_match_spec(instance_options, load_instance_config):
    """Items of lists of objects (otlp_http, symbol_endpoints, actions) get the spec's defaults too."""
    checked = []
    for section in validators.SECTIONS:
        for path, item_spec in _walk_lists_of_objects(instance_options[section]['value']['properties']):
            if 0 in path:
                continue  # nested lists inside list items: none today
            instance = {section: {}}
            node = instance[section]
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = [_minimal_item(item_spec)]
            config = load_instance_config(instance)
            item = getattr(config, section)
            for key in path:
                item = getattr(item, key.replace('.', '_'))
            expected = _spec_defaults(item_spec['properties'])
            expected.update(_minimal_item(item_spec))
            assert _plain(item[0]) == expected, (section,) + path
            checked.append((section,) + path)
    assert ('exporters', 'otlp_http') in checked
    assert ('receiver', 'symbol_uploader', 'symbol_endpoints') in checked
    assert ('processors', 'attributes', 'actions') in checked


def test_every_model_field_is_in_the_spec(instance_options):
    """Vice versa: no model field that the spec does not declare, at any depth."""

    def spec_names(properties):
        return {p['name']: p for p in properties}

    def check(model, properties, path):
        names = spec_names(properties)
        fields = {field.alias or name: field for name, field in model.model_fields.items()}
        assert set(fields) == set(names), path
        for key, field in fields.items():
            kind, sub_model = validators._model_of(field.annotation)
            prop = names[key]
            if kind == 'one':
                check(sub_model, prop['properties'], path + (key,))
            elif kind == 'many':
                check(sub_model, prop['items']['properties'], path + (key, '[]'))

    for section in validators.SECTIONS:
        field = InstanceConfig.model_fields[section]
        _, model = validators._model_of(field.annotation)
        check(model, instance_options[section]['value']['properties'], (section,))


# --------------------------------------------------------------------------------------------
# Behaviour of the loaded configuration
# --------------------------------------------------------------------------------------------
def test_user_values_are_kept_and_siblings_defaulted(load_instance_config):
    config = load_instance_config(
        {
            'mode': 'standalone',
            'receiver': {'samples_per_second': 99, 'symbolizer': {'perf_map': False}, 'pids': [1, 2]},
            'exporters': {'otlp_http': [{'endpoint': 'http://127.0.0.1:4318', 'compression': 'zstd'}]},
        }
    )
    assert config.mode == 'standalone'
    assert config.receiver.samples_per_second == 99
    assert config.receiver.pids == (1, 2)
    assert config.receiver.symbolizer.perf_map is False
    assert config.receiver.symbolizer.memory_budget_mb == 256
    assert config.exporters.otlp_http[0].compression == 'zstd'
    assert config.exporters.otlp_http[0].retry.max_elapsed_time == 0
    assert config.exporters.debug is None and config.exporters.file is None


def test_empty_sections_count_as_defaults(load_instance_config):
    """`receiver:` with every child commented out is None in YAML: same as absent."""
    config = load_instance_config({'receiver': None, 'processors': None, 'exporters': {'debug': None}})
    assert config.receiver.samples_per_second == 20
    assert config.processors.infraattributes.cardinality == 'orchestrator'
    assert config.exporters.debug.verbosity == 'basic'


def test_dotted_option_names(load_instance_config):
    config = load_instance_config({'processors': {'resourcedetection': {'host.arch': False}}})
    assert config.processors.resourcedetection.host_arch is False
    assert config.processors.resourcedetection.os_type is True


def test_models_are_frozen(load_instance_config):
    config = load_instance_config({})
    with pytest.raises(Exception):
        config.receiver.samples_per_second = 1
    assert isinstance(config.receiver.include_env_vars, tuple)


def test_input_is_not_mutated(load_instance_config):
    instance = {'receiver': {'symbolizer': {}}, 'exporters': {'otlp_http': [{'endpoint': 'http://x'}]}}
    before = copy.deepcopy(instance)
    load_instance_config(instance)
    assert instance == before


@pytest.mark.parametrize(
    'instance, path',
    [
        ({'mode': 'cloud'}, 'mode'),
        ({'receiver': {'samples_per_second': 0}}, 'receiver -> samples_per_second'),
        ({'receiver': {'off_cpu_threshold': 1.5}}, 'receiver -> off_cpu_threshold'),
        ({'receiver': {'stack_copy_size': 4096}}, 'receiver -> stack_copy_size'),
        ({'receiver': {'unwinding': 'lbr'}}, 'receiver -> unwinding'),
        ({'receiver': {'pids': ['init']}}, 'receiver -> pids -> 1'),
        ({'receiver': {'symbolizer': {'memory_budget_mb': 'lots'}}}, 'receiver -> symbolizer -> memory_budget_mb'),
        (
            {'receiver': {'symbol_uploader': {'symbol_endpoints': [{'site': 'datadoghq.com'}]}}},
            'receiver -> symbol_uploader -> symbol_endpoints -> 1 -> api_key',
        ),
        ({'processors': {'infraattributes': {'cardinality': 'all'}}}, 'processors -> infraattributes -> cardinality'),
        (
            {'processors': {'attributes': {'actions': [{'key': 'a'}]}}},
            'processors -> attributes -> actions -> 1 -> action',
        ),
        ({'processors': {'resourcedetection': {'host.arch': 'maybe'}}}, 'processors -> resourcedetection -> host.arch'),
        ({'exporters': {'otlp_http': [{'headers': {}}]}}, 'exporters -> otlp_http -> 1 -> endpoint'),
        (
            {'exporters': {'otlp_http': [{'endpoint': 'http://x', 'compression': 'brotli'}]}},
            'exporters -> otlp_http -> 1 -> compression',
        ),
        ({'exporters': {'file': {'formats': ['otlp']}}}, 'exporters -> file -> directory'),
        ({'exporters': {'file': {'directory': '/tmp', 'formats': ['svg']}}}, 'exporters -> file -> formats -> 1'),
        ({'exporters': {'debug': {'verbosity': 'loud'}}}, 'exporters -> debug -> verbosity'),
        ({'health_metrics': {'enabled': 'sometimes'}}, 'health_metrics -> enabled'),
        ({'receiver': []}, 'receiver'),
    ],
)
def test_validation_errors_name_the_key_path(load_instance_config, instance, path):
    with pytest.raises(ConfigurationError) as excinfo:
        load_instance_config(instance)
    assert path in str(excinfo.value).splitlines()


# --------------------------------------------------------------------------------------------
# Packaging assets that refer to the spec
# --------------------------------------------------------------------------------------------
def test_manifest_refers_to_existing_assets():
    with open(os.path.join(REPO, 'manifest.json')) as f:
        manifest = json.load(f)
    assert manifest['manifest_version'] == '2.0.0'
    integration = manifest['assets']['integration']
    assert integration['configuration']['spec'] == 'assets/configuration/spec.yaml'
    assert integration['metrics']['prefix'] == 'host_profiler.'
    assert integration['metrics']['metadata_path'] == 'metadata.csv'
    assert integration['service_checks']['metadata_path'] == 'assets/service_checks.json'
    for path in (
        integration['configuration']['spec'],
        integration['metrics']['metadata_path'],
        integration['service_checks']['metadata_path'],
    ):
        assert os.path.isfile(os.path.join(REPO, path)), path
    assert manifest['assets']['dashboards'] == {
        'Host Profiler Overview': 'assets/dashboards/host_profiler_overview.json'
    }


def test_service_checks_json():
    with open(os.path.join(REPO, 'assets', 'service_checks.json')) as f:
        service_checks = json.load(f)
    assert {sc['check'] for sc in service_checks} == {'host_profiler.can_sample', 'host_profiler.can_export'}
    for sc in service_checks:
        assert sc['integration'] == 'Host Profiler'
        assert sc['statuses'] == ['ok', 'warning', 'critical']
        assert sc['description'] and sc['name']


def test_bcc_is_debians_module():
    """The venv's `bcc` is Debian's python3-bpfcc (linked by scripts/setup.sh), never PyPI's unrelated `bcc`."""
    spec = importlib.util.find_spec('bcc')
    if spec is None:
        pytest.skip('bcc is not importable here; run scripts/setup.sh')
    assert os.path.realpath(spec.origin).startswith('/usr/lib/python3/dist-packages/bcc/')


def _receiver_option_names():
    with open(os.path.join(REPO_ROOT, 'assets', 'configuration', 'spec.yaml')) as f:
        spec = yaml.safe_load(f)
    instances = next(o for o in spec['files'][0]['options'] if o.get('template') == 'instances')
    receiver = next(o for o in instances['options'] if o.get('name') == 'receiver')
    return [p['name'] for p in receiver['value']['properties']]


def test_every_receiver_option_reaches_the_receiver_config():
    """Each `receiver:` option of spec.yaml is a ReceiverConfig field of the same name, is mapped in
    RECEIVER_RENAMED, or is listed in RECEIVER_READ_ELSEWHERE: an option the model accepts but the
    receiver never sees would be silently ignored. A new receiver option fails here until it is mapped."""
    import dataclasses

    from datadog_checks.host_profiler.config.loader import build_config
    from datadog_checks.host_profiler.profiler_pipeline import (
        RECEIVER_READ_ELSEWHERE,
        RECEIVER_RENAMED,
        receiver_config,
    )
    from datadog_checks.host_profiler.receiver.receiver import ReceiverConfig

    fields = {f.name for f in dataclasses.fields(ReceiverConfig)}
    names = _receiver_option_names()
    unmapped = [n for n in names if n not in fields and n not in RECEIVER_RENAMED and n not in RECEIVER_READ_ELSEWHERE]
    assert not unmapped, 'receiver options that reach no ReceiverConfig field: {} (map them in ' \
        'profiler_pipeline.RECEIVER_RENAMED or list them in RECEIVER_READ_ELSEWHERE)'.format(unmapped)
    assert all(target in fields for target, _ in RECEIVER_RENAMED.values())
    stale = [n for n in list(RECEIVER_RENAMED) + list(RECEIVER_READ_ELSEWHERE) if n not in names]
    assert not stale, stale
    conf = receiver_config(build_config({'receiver': {'stack_copy_ring_pages': 512, 'max_stack_keys': 4096,
                                                      'comm_patterns': ['a', 'b']}}, 'standalone'), 10.0)
    assert (conf.stack_copy_ring_pages, conf.counts_map_size, conf.comm_include) == (512, 4096, '(?:a)|(?:b)')


def test_receiver_config_defaults_are_the_spec_defaults():
    """Unset options reach the receiver with spec.yaml's defaults; the lock file follows the mode."""
    from datadog_checks.host_profiler.config.loader import AGENT_LOCK_PATH, build_config
    from datadog_checks.host_profiler.config_models.instance import Receiver
    from datadog_checks.host_profiler.profiler_pipeline import receiver_config

    conf = receiver_config(build_config({}, 'standalone'), 15.0)
    spec = Receiver.model_fields
    assert conf.samples_per_second == spec['samples_per_second'].default
    assert conf.counts_map_size == spec['max_stack_keys'].default
    # the unified service tagging variables are always read, before the (empty by default) extras
    assert list(conf.include_env_vars) == ['DD_SERVICE', 'OTEL_SERVICE_NAME', 'DD_ENV', 'DD_VERSION']
    assert list(spec['include_env_vars'].default) == []
    extra = receiver_config(build_config({'receiver': {'include_env_vars': ['APP', 'DD_ENV']}}, 'standalone'), 15.0)
    assert list(extra.include_env_vars) == ['DD_SERVICE', 'OTEL_SERVICE_NAME', 'DD_ENV', 'DD_VERSION', 'APP']
    assert conf.unwinding == spec['unwinding'].default
    assert (conf.comm_include, conf.comm_exclude, conf.check_interval) == (None, None, 15.0)
    assert conf.lock_path == '/run/host_profiler.lock'
    agent_settings = {'api_key': 'k' * 32, 'site': 'datadoghq.com'}
    agent = build_config({}, 'agent', agent_config=lambda key: agent_settings.get(key, ''))
    assert receiver_config(agent, 15.0).lock_path == AGENT_LOCK_PATH
