# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
import gzip
import os
import shutil
import subprocess

import pytest

from datadog_checks.host_profiler.profile import pprof
from datadog_checks.host_profiler.profile.model import FRAME_KERNEL, Frame, Mapping, Profile, Resource, Sample

EXE = Mapping(0x400000, 0x500000, 0, '/usr/bin/app', 'aa11', 'gnu')
MAIN = Frame('main', 0x401000, mapping=EXE)
HOT = Frame('hot_loop', 0x401100, mapping=EXE)
COLD = Frame('cold_path', 0x401200, mapping=EXE)
UNKNOWN = Frame('', 0x401300, mapping=EXE)
K = Frame('schedule', 0xFFFFFFFF81000000, FRAME_KERNEL)


def make_profiles(off_cpu=False):
    r = Resource(
        attributes={'process.pid': 42, 'process.executable.name': 'app'},
        samples=[
            Sample((HOT, MAIN), 80, thread_id=42, thread_name='app'),
            Sample((COLD, MAIN), 15, thread_id=43, thread_name='app-w'),
            Sample((UNKNOWN, MAIN), 5, thread_id=42, thread_name='app'),
        ],
        off_cpu_samples=[Sample((K, COLD, MAIN), 9_000_000, 42, 'app')] if off_cpu else [],
        comm='app',
    )
    p1 = Profile(time_unix_nano=10**18, duration_nano=10**10, period_nano=50_000_000, resources=[r])
    p2 = Profile(
        time_unix_nano=10**18 + 10**10,
        duration_nano=10**10,
        period_nano=50_000_000,
        resources=[Resource({'process.pid': 7}, [Sample((HOT, MAIN), 20, 7, 'other')], comm='other')],
    )
    return [p1, p2]


def test_varints():
    assert pprof.varint(0) == b'\x00'
    assert pprof.varint(300) == b'\xac\x02'
    assert pprof.varint(2**40) == pprof._varint(2**40)
    assert len(pprof._varint(-1)) == 10
    assert pprof.field_varint(1, 0) == b''


def test_gzip_and_string_table_first_entry():
    raw = pprof.encode_raw(make_profiles())
    assert gzip.decompress(pprof.encode(make_profiles())) == raw
    # The first string_table entry (field 6) is the empty string.
    assert b'\x32\x00' in raw


@pytest.mark.skipif(shutil.which('go') is None, reason='go toolchain not installed')
@pytest.mark.parametrize('off_cpu', [False, True])
def test_go_tool_pprof_reads_it(tmp_path, off_cpu):
    path = tmp_path / 'profile.pb.gz'
    pprof.write(str(path), make_profiles(off_cpu))
    env = dict(os.environ, PPROF_TMPDIR=str(tmp_path))
    out = subprocess.run(
        ['go', 'tool', 'pprof', '-top', '-nodecount=10', str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    lines = [ln.split() for ln in out.stdout.splitlines()]
    rows = [ln for ln in lines if len(ln) >= 6 and ln[1].endswith('%')]
    assert rows, out.stdout
    # Top function by flat samples: hot_loop, 100 of 120 samples.
    assert rows[0][-1] == 'hot_loop' and rows[0][0] == '100', out.stdout
    names = {r[-1] for r in rows}
    assert {'cold_path', 'app+0x1300'} <= names
    assert 'Type: samples' in out.stdout

    tags = subprocess.run(
        ['go', 'tool', 'pprof', '-tags', str(path)], capture_output=True, text=True, timeout=120,
        env=env,
    )
    assert tags.returncode == 0, tags.stderr
    for label in ('comm', 'thread_name', 'app-w', 'pid', 'thread_id'):
        assert label in tags.stdout
    if off_cpu:
        off = subprocess.run(
            ['go', 'tool', 'pprof', '-top', '-sample_index=off_cpu', str(path)], capture_output=True, text=True,
            timeout=120, env=env,
        )
        assert off.returncode == 0, off.stderr
        assert 'schedule_[k]' in off.stdout and '9ms' in off.stdout


@pytest.mark.skipif(shutil.which('go') is None, reason='go toolchain not installed')
def test_samples_in_spans_carry_trace_id_and_span_id_labels(tmp_path):
    from datadog_checks.host_profiler.profile.model import SpanLink

    link = SpanLink(bytes.fromhex('0af7651916cd43dd8448eb211c80319c'), bytes.fromhex('b7ad6b7169203331'))
    r = Resource({'process.pid': 42}, [Sample((HOT, MAIN), 6, 42, 'app', link=link), Sample((HOT, MAIN), 4, 42, 'app')],
                 comm='app')
    path = tmp_path / 'profile.pb.gz'
    pprof.write(str(path), Profile(10**18, 10**10, 50_000_000, resources=[r]))
    env = dict(os.environ, PPROF_TMPDIR=str(tmp_path))
    tags = subprocess.run(['go', 'tool', 'pprof', '-tags', str(path)], capture_output=True, text=True, timeout=120,
                          env=env)
    assert tags.returncode == 0, tags.stderr
    out = tags.stdout
    # go tool pprof -tags: one block per label key, its values with their share of the samples
    assert 'trace_id' in out and '0af7651916cd43dd8448eb211c80319c' in out, out
    assert 'span_id' in out and 'b7ad6b7169203331' in out, out
    # only the linked samples (6 of 10) carry them
    assert 'span_id: Total 6.0' in out and 'trace_id: Total 6.0' in out, out
    assert 'thread_id: Total 10.0' in out, out
