# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
import csv
import json
import os
import re

from tests import REPO_ROOT

ROOT = REPO_ROOT
DASHBOARD = os.path.join(ROOT, 'assets', 'dashboards', 'host_profiler_overview.json')
METADATA = os.path.join(ROOT, 'metadata.csv')
METRIC_RE = re.compile(r'\b(?:sum|avg|max|min|count):(host_profiler\.[a-z0-9_.]+)\{')


def _widgets(widgets):
    for w in widgets:
        yield w['definition']
        if w['definition']['type'] == 'group':
            yield from _widgets(w['definition']['widgets'])


def _load():
    with open(DASHBOARD) as f:
        return json.load(f)


def referenced_metrics():
    names = set()
    for d in _widgets(_load()['widgets']):
        for r in d.get('requests', []):
            names.update(METRIC_RE.findall(r.get('q', '')))
    return names


def test_dashboard_shape():
    dash = _load()
    assert dash['layout_type'] == 'ordered'
    assert dash['title']
    types = {d['type'] for d in _widgets(dash['widgets'])}
    assert {'group', 'timeseries', 'query_value'} <= types
    assert types <= {'group', 'timeseries', 'query_value', 'note', 'check_status'}
    checks = {d['check'] for d in _widgets(dash['widgets']) if d['type'] == 'check_status'}
    assert checks == {'host_profiler.can_sample', 'host_profiler.can_export'}
    names = referenced_metrics()
    for prefix in ('sampler.samples', 'sampler.lost', 'export.', 'symbol_upload.', 'process.cpu', 'process.rss',
                   'python.gc'):
        assert any(n.startswith('host_profiler.' + prefix) for n in names), prefix


def test_every_dashboard_metric_is_declared_in_metadata():
    with open(METADATA) as f:
        declared = {row['metric_name'] for row in csv.DictReader(f)}
    missing = sorted(referenced_metrics() - declared)
    assert not missing, 'dashboard metrics missing from metadata.csv: {}'.format(missing)


def test_runtime_metric_rows():
    with open(METADATA) as f:
        rows = {row['metric_name']: row for row in csv.DictReader(f)}
    expected = {
        'host_profiler.process.cpu.user': 'gauge',
        'host_profiler.process.cpu.system': 'gauge',
        'host_profiler.process.rss': 'gauge',
        'host_profiler.process.threads': 'gauge',
        'host_profiler.process.open_fds': 'gauge',
        'host_profiler.python.gc.collections': 'count',
        'host_profiler.python.gc.pause': 'count',
        'host_profiler.bpf.run_time': 'count',
        'host_profiler.bpf.run_count': 'count',
        'host_profiler.bpf.stats_enabled': 'gauge',
        'host_profiler.health_metrics.sent': 'count',
        'host_profiler.health_metrics.errors': 'count',
    }
    for name, mtype in expected.items():
        assert rows[name]['metric_type'] == mtype, name
        assert rows[name]['integration'] == 'host_profiler'
        assert rows[name]['description']
