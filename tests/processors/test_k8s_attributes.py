# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
import time

import pytest
import requests
from tests.fakes.kubelet import CONTAINER_ID, DS_CONTAINER_ID, DS_POD_UID, POD_UID, SIDECAR_ID, FakeKubelet

from datadog_checks.host_profiler.processors.k8s_attributes import K8sAttributesProcessor, split_image, strip_runtime
from datadog_checks.host_profiler.profile.model import Profile, Resource
from datadog_checks.host_profiler.runtime.telemetry import Telemetry


def _profile(*attrs):
    return Profile(time_unix_nano=1, duration_nano=1, period_nano=1,
                   resources=[Resource(attributes=dict(a)) for a in attrs])


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / 'token'
    path.write_text('s3cr3t-token\n')
    return str(path)


APP_ATTRIBUTES = {
    'process.pid': 7,
    'container.id': CONTAINER_ID,
    'k8s.pod.uid': POD_UID,
    'k8s.pod.name': 'checkout-7d9c8b6f5-x2x7q',
    'k8s.namespace.name': 'shop',
    'k8s.node.name': 'node-a',
    'k8s.replicaset.name': 'checkout-7d9c8b6f5',
    'k8s.deployment.name': 'checkout',
    'k8s.pod.label.app': 'checkout',
    'k8s.pod.annotation.team': 'payments',
    'k8s.container.name': 'app',
    'container.image.name': 'registry.example.com:5000/shop/checkout',
    'container.image.tag': '1.4.2',
}


def test_serviceaccount_lookup(token_file):
    telemetry = Telemetry()
    with FakeKubelet(token='s3cr3t-token') as kubelet:
        proc = K8sAttributesProcessor(
            {'enabled': True, 'kubelet_url': kubelet.url, 'auth': 'serviceaccount', 'labels': ['app', 'absent'],
             'annotations': ['team']},
            http=requests.Session(), token_path=token_file, telemetry=telemetry, background=False)
        assert proc.refresh()
        assert kubelet.requests == [('/pods', 'Bearer s3cr3t-token')]
        profile = _profile({'process.pid': 7, 'container.id': CONTAINER_ID},
                           {'process.pid': 8, 'container.id': SIDECAR_ID, 'k8s.pod.uid': POD_UID},
                           {'process.pid': 9, 'k8s.pod.uid': DS_POD_UID, 'container.id': DS_CONTAINER_ID},
                           {'process.pid': 1})
        proc.process(profile)
    assert profile.resources[0].attributes == APP_ATTRIBUTES
    sidecar = profile.resources[1].attributes
    assert sidecar['k8s.container.name'] == 'envoy'
    assert sidecar['container.image.name'] == 'envoyproxy/envoy' and 'container.image.tag' not in sidecar
    ds = profile.resources[2].attributes
    assert ds['k8s.daemonset.name'] == 'node-exporter' and ds['k8s.namespace.name'] == 'monitoring'
    assert 'k8s.pod.label.app' in ds and 'k8s.deployment.name' not in ds
    assert profile.resources[3].attributes == {'process.pid': 1}
    assert telemetry.total('processors.kubelet.cache.hits') == 3
    assert telemetry.total('processors.kubelet.requests') == 1
    assert telemetry.total('processors.kubelet.errors') == 0


def test_read_only_port_no_token_and_wildcard_labels():
    with FakeKubelet() as kubelet:
        proc = K8sAttributesProcessor({'enabled': True, 'kubelet_url': kubelet.url + '/', 'auth': 'none', 'labels': ['*']},
                                      background=False)
        assert proc.url == kubelet.url + '/pods'
        assert proc.refresh()
        assert kubelet.requests == [('/pods', None)]
    profile = _profile({'k8s.pod.uid': POD_UID})
    proc.process(profile)
    attrs = profile.resources[0].attributes
    assert attrs['k8s.pod.label.tier'] == 'backend' and attrs['k8s.pod.label.pod-template-hash'] == '7d9c8b6f5'
    assert 'k8s.container.name' not in attrs  # only the pod is known from a pod uid


def test_errors_counted_and_stale_cache_kept(token_file):
    telemetry = Telemetry()
    with FakeKubelet(token='s3cr3t-token') as kubelet:
        proc = K8sAttributesProcessor({'enabled': True, 'kubelet_url': kubelet.url}, token_path=token_file, telemetry=telemetry,
                                      background=False)
        assert proc.refresh()
        kubelet.status = 500
        assert not proc.refresh()
        kubelet.token = 'rotated'
        kubelet.status = 200
        assert not proc.refresh()  # 401
    profile = _profile({'container.id': CONTAINER_ID})
    proc.process(profile)
    assert profile.resources[0].attributes['k8s.pod.name'] == 'checkout-7d9c8b6f5-x2x7q'
    assert telemetry.total('processors.kubelet.errors') == 2
    # unreachable kubelet
    proc2 = K8sAttributesProcessor({'enabled': True, 'kubelet_url': 'http://127.0.0.1:1', 'auth': 'none'}, telemetry=telemetry,
                                   background=False)
    assert not proc2.refresh()
    assert telemetry.total('processors.kubelet.errors') == 3


def test_missing_token_is_an_error_not_a_crash(tmp_path):
    proc = K8sAttributesProcessor({'enabled': True, 'kubelet_url': 'http://127.0.0.1:1'}, token_path=str(tmp_path / 'none'),
                                  background=False)
    assert not proc.refresh()


def test_background_refresh_never_blocks_process(token_file):
    with FakeKubelet(token='s3cr3t-token') as kubelet:
        kubelet.delay = 0.5
        proc = K8sAttributesProcessor({'enabled': True, 'kubelet_url': kubelet.url, 'cache_ttl': 60}, token_path=token_file,
                                      min_refresh_interval=0.05)
        try:
            profile = _profile({'container.id': CONTAINER_ID})
            start = time.monotonic()
            proc.process(profile)
            assert time.monotonic() - start < 0.2  # the kubelet answers in 0.5 s; process() did not wait
            assert 'k8s.pod.name' not in profile.resources[0].attributes  # first export: nothing yet
            assert kubelet.served.wait(5)
            deadline = time.monotonic() + 5
            while not proc._index.pods and time.monotonic() < deadline:
                time.sleep(0.01)
            profile = _profile({'container.id': CONTAINER_ID})
            proc.process(profile)
            assert profile.resources[0].attributes['k8s.pod.name'] == 'checkout-7d9c8b6f5-x2x7q'
        finally:
            proc.close()
        proc._thread.join(5)
        assert not proc._thread.is_alive()


def test_unknown_container_triggers_one_refresh_only():
    now = [100.0]
    with FakeKubelet() as kubelet:
        proc = K8sAttributesProcessor({'enabled': True, 'kubelet_url': kubelet.url, 'auth': 'none', 'cache_ttl': 60},
                                      background=False, clock=lambda: now[0], min_refresh_interval=5)
        proc.process(_profile({'container.id': 'outside-k8s'}))  # stale: first fetch
        assert len(kubelet.requests) == 1
        for _ in range(5):
            now[0] += 10
            proc.process(_profile({'container.id': 'outside-k8s'}))
        assert len(kubelet.requests) == 1  # still unknown after a newer fetch: no request storm
        now[0] += 1
        proc.process(_profile({'container.id': 'new-container'}))
        assert len(kubelet.requests) == 2  # a new unknown id refreshes early
        now[0] += 61
        proc.process(_profile({'container.id': CONTAINER_ID}))
        assert len(kubelet.requests) == 3  # TTL expiry


def test_index_is_bounded():
    with FakeKubelet() as kubelet:
        proc = K8sAttributesProcessor({'enabled': True, 'kubelet_url': kubelet.url, 'auth': 'none'}, background=False, max_pods=1)
        proc.refresh()
    assert len(proc._index.pods) == 1


def test_default_urls(monkeypatch):
    monkeypatch.setenv('NODE_NAME', 'node-a')
    assert K8sAttributesProcessor({'enabled': True}).url == 'https://node-a:10250/pods'
    assert K8sAttributesProcessor({'enabled': True, 'auth': 'none'}).url == 'http://node-a:10255/pods'


def test_helpers():
    assert strip_runtime('containerd://abc') == 'abc' and strip_runtime('cri-o://x') == 'x'
    assert split_image('localhost:5000/a/b:1.0@sha256:ff') == ('localhost:5000/a/b', '1.0')
    assert split_image('localhost:5000/a/b') == ('localhost:5000/a/b', '')


def test_disabled():
    proc = K8sAttributesProcessor({'enabled': False})
    profile = _profile({'container.id': CONTAINER_ID})
    proc.process(profile)
    assert profile.resources[0].attributes == {'container.id': CONTAINER_ID}


def test_lookup_off_by_default_keeps_cgroup_ids():
    proc = K8sAttributesProcessor({'kubelet_url': 'http://127.0.0.1:1'}, background=False)
    profile = _profile({'container.id': CONTAINER_ID, 'k8s.pod.uid': POD_UID})
    proc.process(profile)
    assert profile.resources[0].attributes == {'container.id': CONTAINER_ID, 'k8s.pod.uid': POD_UID}
    assert proc._thread is None
