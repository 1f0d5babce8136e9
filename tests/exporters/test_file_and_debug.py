# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""debug and file exporters (no network)."""

import logging
import os

import pytest
from tests.fakes.otlp import proto_encode, sample_profile

from datadog_checks.host_profiler.exporters import build_exporters
from datadog_checks.host_profiler.exporters.encoding import SharedEncoder
from datadog_checks.host_profiler.profile.folded import folded_counts
from datadog_checks.host_profiler.runtime.telemetry import Telemetry


def build(config, telemetry=None):
    return build_exporters(
        config,
        telemetry=telemetry or Telemetry(),
        encoder=SharedEncoder(proto_encode),
        log=logging.getLogger('test.exporters.local'),
    )


def debug_lines(caplog, verbosity, profile):
    (exp,) = build({'debug': {'verbosity': verbosity}})
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger='test.exporters.local'):
        exp.export(profile)
    return [r.getMessage() for r in caplog.records if r.name == 'test.exporters.local']


def test_debug_levels(caplog):
    p = sample_profile(1, processes=2, stacks=3, off_cpu=True)
    basic = debug_lines(caplog, 'basic', p)
    assert len(basic) == 1
    assert '2 resources' in basic[0] and '{} samples'.format(p.total_samples) in basic[0]
    assert 'bytes (otlp)' in basic[0] and 'n/a' not in basic[0]

    normal = debug_lines(caplog, 'normal', p)
    assert normal[0] == basic[0].replace('#1', '#1')
    per_process = [line for line in normal if 'pid=' in line]
    assert len(per_process) == 2
    assert any('pid=100 name=app0 samples=33' in line for line in per_process)
    assert not any(';' in line for line in normal)

    detailed = debug_lines(caplog, 'detailed', p)
    stacks = [line.strip() for line in detailed if ';' in line]
    assert 'app0;main;app+0x2000;leaf0;do_syscall_64_[k] 10' in stacks
    assert len(stacks) == 2 * 3 * 2  # on-CPU and off-CPU stacks
    assert any('off-cpu' in line for line in detailed)


def test_debug_bad_verbosity():
    from datadog_checks.base import ConfigurationError

    with pytest.raises(ConfigurationError, match='exporters.debug.verbosity'):
        build({'debug': {'verbosity': 'loud'}})


def test_debug_counts_exports():
    t = Telemetry()
    (exp,) = build({'debug': None}, telemetry=t)
    exp.export(sample_profile(1))
    exp.export(sample_profile(2))
    assert t.total('export.count') == 2


def test_folded_lines_aggregate_and_order():
    p = sample_profile(1, processes=1, stacks=2)
    p.resources[0].samples.append(p.resources[0].samples[0])
    lines = ['{} {}'.format(k, v) for k, v in folded_counts(p).items()]
    assert lines[0] == 'app0;main;app+0x2000;leaf0;do_syscall_64_[k] 20'
    assert lines[1] == 'app0;main;app+0x2001;leaf1 11'


def test_file_exporter_writes_and_rotates(tmp_path):
    t = Telemetry()
    (exp,) = build({'file': {'directory': str(tmp_path), 'formats': ['otlp', 'folded'], 'max_files': 3}}, t)
    for i in range(1, 6):
        exp.export(sample_profile(i * 10**9))
    out = tmp_path / 'profiles'
    names = sorted(os.listdir(out))
    otlp = [n for n in names if n.endswith('.otlp.pb')]
    folded = [n for n in names if n.endswith('.folded')]
    assert len(otlp) == 3 and len(folded) == 3 and len(names) == 6
    assert [n.split('-')[1].split('.')[0] for n in otlp] == ['000003', '000004', '000005']
    assert otlp[0].startswith('19700101T000003Z-000003')
    assert (out / otlp[-1]).read_bytes() == proto_encode(sample_profile(5 * 10**9))
    from opentelemetry.proto.profiles.v1development.profiles_pb2 import ProfilesData

    ProfilesData().ParseFromString((out / otlp[-1]).read_bytes())
    text = (out / folded[-1]).read_text()
    assert text.endswith('\n') and ' 10\n' in text
    assert t.total('export.count') == 5
    assert not [n for n in names if n.endswith('.tmp')]


def test_file_exporter_keeps_everything_with_max_files_0(tmp_path):
    (exp,) = build({'file': {'directory': str(tmp_path), 'max_files': 0}})
    for i in range(5):
        exp.export(sample_profile(i))
    assert len(os.listdir(tmp_path / 'profiles')) == 5


def test_file_exporter_pprof(tmp_path):
    pytest.importorskip('datadog_checks.host_profiler.profile.pprof')
    (exp,) = build({'file': {'directory': str(tmp_path), 'formats': ['pprof'], 'max_files': 2}})
    for i in range(3):
        exp.export(sample_profile(i))
    names = sorted(os.listdir(tmp_path / 'profiles'))
    assert len(names) == 2 and all(n.endswith('.pb.gz') for n in names)
    assert (tmp_path / 'profiles' / names[0]).read_bytes()[:2] == b'\x1f\x8b'


def test_file_exporter_errors_are_counted_not_raised(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('not a directory')
    t = Telemetry()
    (exp,) = build({'file': {'directory': str(blocker)}}, t)
    exp.export(sample_profile(1))
    assert t.total('export.errors') == 1


def test_file_exporter_config_errors():
    from datadog_checks.base import ConfigurationError

    with pytest.raises(ConfigurationError, match='exporters.file.directory'):
        build({'file': {}})
    with pytest.raises(ConfigurationError, match='exporters.file.formats'):
        build({'file': {'directory': '/tmp', 'formats': ['svg']}})
