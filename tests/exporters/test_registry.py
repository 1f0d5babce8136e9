"""The exporter registry: one list of exporters for the factory, the command and the converters."""
import os

import yaml

from datadog_checks.host_profiler.config.converters import MSG_NO_EXPORTER, ConverterError, convert_without_agent
from datadog_checks.host_profiler.exporters import build_exporters
from datadog_checks.host_profiler.exporters.registry import EXPORTERS, all_keys, exporter_keys, is_configured
from tests import REPO_ROOT


def test_the_registry_names_the_exporters_of_the_spec():
    """spec.yaml is the schema of each exporter's options; the registry builds the same exporters."""
    with open(os.path.join(REPO_ROOT, 'assets', 'configuration', 'spec.yaml')) as f:
        spec = yaml.safe_load(f)
    instances = next(o for o in spec['files'][0]['options'] if o.get('template') == 'instances')
    exporters = next(o for o in instances['options'] if o.get('name') == 'exporters')
    assert [p['name'] for p in exporters['value']['properties']] == list(exporter_keys())
    assert set(exporter_keys()) <= set(all_keys())
    assert [k.many for k in EXPORTERS] == [p['type'] == 'array' for p in exporters['value']['properties']]


def test_is_configured():
    assert not is_configured(None)
    assert not is_configured({})
    assert not is_configured({'otlp_http': [], 'debug': None, 'file': False})
    assert is_configured({'debug': {}})
    assert is_configured({'otlphttp': [{'endpoint': 'http://x'}]})
    assert is_configured({'file': {'directory': '/tmp'}})


def test_the_converter_and_the_factory_agree(tmp_path):
    """What the converter counts as an exporter is what the factory builds."""
    section = {'debug': {}, 'file': {'directory': str(tmp_path)}}
    out, _ = convert_without_agent({'exporters': section}, require_exporter=True)
    built = build_exporters(out['exporters'])
    try:
        assert sorted(e.kind for e in built) == ['debug', 'file']
    finally:
        for e in built:
            e.close()
    try:
        convert_without_agent({'exporters': {'otlp_http': []}}, require_exporter=True)
    except ConverterError as e:
        assert MSG_NO_EXPORTER in str(e)
    else:
        raise AssertionError('an empty otlp_http list is no exporter')
