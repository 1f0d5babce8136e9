# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
import hashlib
import struct

import pytest

from datadog_checks.host_profiler.processors.attributes import AttributesProcessor, hash_value
from datadog_checks.host_profiler.processors.resource_detection import (
    ProfilerMetadataProcessor,
    ResourceDetectionProcessor,
    host_arch,
)
from datadog_checks.host_profiler.profile.model import Frame, Profile, Resource, Sample


def _profile(*attribute_dicts, samples=None):
    resources = [Resource(attributes=dict(a), samples=list(samples or [])) for a in attribute_dicts]
    return Profile(time_unix_nano=1, duration_nano=1, period_nano=50_000_000, resources=resources)


def _run(actions, attrs):
    profile = _profile(attrs)
    AttributesProcessor({'actions': actions}).process(profile)
    return profile.resources[0].attributes


def test_insert_update_upsert():
    base = {'a': 'old'}
    assert _run([{'key': 'a', 'value': 'new', 'action': 'insert'}], base) == {'a': 'old'}
    assert _run([{'key': 'b', 'value': 'new', 'action': 'insert'}], base) == {'a': 'old', 'b': 'new'}
    assert _run([{'key': 'a', 'value': 'new', 'action': 'update'}], base) == {'a': 'new'}
    assert _run([{'key': 'b', 'value': 'new', 'action': 'update'}], base) == {'a': 'old'}
    assert _run([{'key': 'a', 'value': 'new', 'action': 'upsert'}], base) == {'a': 'new'}
    assert _run([{'key': 'b', 'value': 3, 'action': 'upsert'}], base) == {'a': 'old', 'b': 3}


def test_from_attribute():
    attrs = {'k8s.pod.name': 'p1'}
    assert _run([{'key': 'pod', 'from_attribute': 'k8s.pod.name', 'action': 'insert'}], attrs) == {
        'k8s.pod.name': 'p1', 'pod': 'p1'}
    # an absent source attribute: nothing happens (contrib semantics)
    assert _run([{'key': 'pod', 'from_attribute': 'nope', 'action': 'upsert'}], attrs) == attrs


def test_delete_key_and_pattern():
    attrs = {'a': 1, 'k8s.pod.label.x': 'x', 'k8s.pod.label.y': 'y', 'keep': 2}
    out = _run([{'key': 'a', 'action': 'delete'}, {'pattern': r'^k8s\.pod\.label\.', 'action': 'delete'}], attrs)
    assert out == {'keep': 2}


def test_hash_is_sha256_hex_like_contrib():
    out = _run([{'key': 's', 'action': 'hash'}, {'key': 'i', 'action': 'hash'}, {'key': 'b', 'action': 'hash'},
                {'key': 'f', 'action': 'hash'}, {'key': 'absent', 'action': 'hash'}],
               {'s': 'secret', 'i': 42, 'b': True, 'f': 1.5})
    assert out['s'] == hashlib.sha256(b'secret').hexdigest()
    assert out['s'] == '2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b'
    assert out['i'] == hashlib.sha256(struct.pack('<q', 42)).hexdigest()
    assert out['b'] == hashlib.sha256(b'\x01').hexdigest()
    assert out['f'] == hashlib.sha256(struct.pack('<d', 1.5)).hexdigest()
    assert 'absent' not in out
    assert hash_value('x') == hash_value('x') != hash_value('y')


def test_hash_by_pattern():
    out = _run([{'pattern': r'^user\.', 'action': 'hash'}], {'user.email': 'a@b', 'other': 'v'})
    assert out == {'user.email': hashlib.sha256(b'a@b').hexdigest(), 'other': 'v'}


def test_extract_named_groups():
    actions = [{'key': 'process.executable.path', 'action': 'extract',
                'pattern': r'^/opt/(?P<app_name>[^/]+)/releases/(?P<app_release>[^/]+)/'}]
    out = _run(actions, {'process.executable.path': '/opt/shop/releases/42/bin/server', 'app_name': 'old'})
    assert out['app_name'] == 'shop'  # existing target keys are overridden (contrib semantics)
    assert out['app_release'] == '42'
    untouched = {'process.executable.path': '/usr/bin/python3'}
    assert _run(actions, untouched) == untouched


def test_convert():
    out = _run([{'key': 'n', 'action': 'convert', 'converted_type': 'int'},
                {'key': 'd', 'action': 'convert', 'converted_type': 'double'},
                {'key': 's', 'action': 'convert', 'converted_type': 'string'},
                {'key': 'bad', 'action': 'convert', 'converted_type': 'int'}],
               {'n': '12', 'd': '1.5', 's': 7, 'bad': 'x'})
    assert out == {'n': 12, 'd': 1.5, 's': '7', 'bad': 'x'}


def test_actions_apply_in_order():
    out = _run([{'key': 'a', 'value': 'v', 'action': 'insert'},
                {'key': 'b', 'from_attribute': 'a', 'action': 'insert'},
                {'key': 'a', 'action': 'delete'}], {})
    assert out == {'b': 'v'}


def test_thread_keys_apply_to_samples():
    frame = Frame(function='main', address=0x1000)
    samples = [Sample(frames=(frame,), value=3, thread_id=11, thread_name='worker-1'),
               Sample(frames=(frame,), value=1, thread_id=12, thread_name='')]
    profile = _profile({'process.pid': 5}, samples=samples)
    AttributesProcessor({'actions': [
        {'key': 'thread.name', 'action': 'hash'},
        {'key': 'thread.name', 'value': 'unnamed', 'action': 'insert'},
        {'key': 'thread.id', 'action': 'delete'},
    ]}).process(profile)
    got = profile.resources[0].samples
    assert got[0].thread_name == hashlib.sha256(b'worker-1').hexdigest()
    assert got[1].thread_name == 'unnamed'
    assert [s.thread_id for s in got] == [0, 0]
    assert [s.value for s in got] == [3, 1] and got[0].frames == (frame,)
    assert profile.resources[0].attributes == {'process.pid': 5}  # resource untouched


def test_thread_id_cannot_be_hashed():
    with pytest.raises(ValueError):
        AttributesProcessor({'actions': [{'key': 'thread.id', 'action': 'hash'}]})


def test_empty_processor_is_falsy():
    assert not AttributesProcessor(None)
    assert not AttributesProcessor({'actions': []})


@pytest.mark.parametrize('machine,arch', [('x86_64', 'amd64'), ('aarch64', 'arm64'), ('armv7l', 'arm32'),
                                          ('i686', 'x86'), ('ppc64le', 'ppc64'), ('s390x', 's390x')])
def test_host_arch_otel_values(machine, arch):
    assert host_arch(machine) == arch


def test_resource_detection_never_overwrites_and_is_switchable():
    profile = _profile({'process.pid': 1}, {'process.pid': 2, 'host.name': 'from-receiver'})
    ResourceDetectionProcessor({'host.arch': True, 'os.type': True, 'host.name': True},
                               hostname=lambda: 'myhost', machine='x86_64', system='Linux').process(profile)
    assert profile.resources[0].attributes == {'process.pid': 1, 'host.arch': 'amd64', 'os.type': 'linux',
                                               'host.name': 'myhost', 'datadog.host.name': 'myhost'}
    assert profile.resources[1].attributes['host.name'] == 'from-receiver'
    profile = _profile({'process.pid': 1})
    ResourceDetectionProcessor({'host.arch': False, 'os.type': True, 'host.name': False},
                               system='Linux').process(profile)
    assert profile.resources[0].attributes == {'process.pid': 1, 'os.type': 'linux'}


def test_profiler_metadata_upserts():
    profile = _profile({'profiler_name': 'user-wrote-this'})
    ProfilerMetadataProcessor('host-profiler-standalone', '1.2.3').process(profile)
    assert profile.resources[0].attributes == {'profiler_name': 'host-profiler-standalone',
                                               'profiler_version': '1.2.3'}
