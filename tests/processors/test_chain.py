# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The same profile through both modes: converter -> build_processors -> run, checking the
exact attribute set of every resource."""
from unittest import mock

import pytest
from datadog_checks.base.stubs import datadog_agent
from datadog_checks.base.stubs.tagging import tagger
from tests.fakes.kubelet import CONTAINER_ID, POD_UID, FakeKubelet

from datadog_checks.host_profiler.config.loader import load_instance
from datadog_checks.host_profiler.processors.infra_attributes import InfraAttributesProcessor
from datadog_checks.host_profiler.processors.k8s_attributes import K8sAttributesProcessor
from datadog_checks.host_profiler.processors.chain import build_processors, close_processors, run_processors
from datadog_checks.host_profiler.processors.resource_detection import host_arch
from datadog_checks.host_profiler.profile.model import Profile, Resource
from datadog_checks.host_profiler.runtime.telemetry import Telemetry

CGROUP = ('0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/'
          'cri-containerd-{}.scope\n').format(POD_UID.replace('-', '_'), CONTAINER_ID)


def _container_ids():
    try:
        from datadog_checks.host_profiler.receiver.processes import parse_container_id
    except ImportError:
        return CONTAINER_ID, POD_UID
    container_id, pod_uid = parse_container_id(CGROUP)
    assert (container_id, pod_uid) == (CONTAINER_ID, POD_UID)
    return container_id, pod_uid


def _profile():
    container_id, pod_uid = _container_ids()
    app = {'process.pid': 4242, 'process.executable.name': 'server', 'process.executable.path': '/app/server',
           'container.id': container_id, 'k8s.pod.uid': pod_uid, 'service.name': 'checkout-env'}
    host = {'process.pid': 1, 'process.executable.name': 'systemd', 'process.executable.path': '/usr/lib/systemd/systemd'}
    return Profile(time_unix_nano=1, duration_nano=1, period_nano=50_000_000,
                   resources=[Resource(attributes=dict(app)), Resource(attributes=dict(host))])


USER = {
    'processors': {
        'attributes': {'actions': [
            {'key': 'team', 'value': 'payments', 'action': 'insert'},
            {'key': 'k8s.pod.label.app', 'action': 'hash'},
            {'key': 'profiler_name', 'action': 'delete'},  # cannot remove the internal metadata
        ]},
        'infraattributes': {'cardinality': 'high'},
        'k8sattributes': {'enabled': True, 'auth': 'none', 'labels': ['app']},
    },
}


@pytest.fixture(autouse=True)
def _stubs(agent_stubs):
    pass


def test_agent_mode_exact_attributes():
    tagger.set_tags({'container_id://' + CONTAINER_ID: [
        'kube_namespace:shop', 'pod_name:checkout-7d9c8b6f5-x2x7q', 'kube_deployment:checkout',
        'kube_container_name:app', 'service:checkout-tag', 'env:prod', 'pod_phase:running']})
    datadog_agent.set_hostname('agent-host')
    telemetry = Telemetry()
    with mock.patch.dict(datadog_agent._config, {'api_key': 'k', 'site': 'datadoghq.com'}):
        instance, warnings = load_instance(USER, 'agent')
    assert any('k8sattributes' in w for w in warnings)
    chain = build_processors(instance, 'agent', telemetry=telemetry, version='7.99.0')
    assert [type(p).__name__ for p in chain] == [
        'ResourceDetectionProcessor', 'InfraAttributesProcessor', 'AttributesProcessor', 'ProfilerMetadataProcessor']
    profile = run_processors(chain, _profile())
    tagger.assert_called('container_id://' + CONTAINER_ID, tagger.HIGH)
    common = {'host.arch': host_arch(), 'os.type': 'linux', 'host.name': 'agent-host',
              'datadog.host.name': 'agent-host', 'team': 'payments',
              'profiler_name': 'host-profiler-bundled', 'profiler_version': '7.99.0'}
    assert profile.resources[0].attributes == dict(common, **{
        'process.pid': 4242, 'process.executable.name': 'server', 'process.executable.path': '/app/server',
        'container.id': CONTAINER_ID, 'k8s.pod.uid': POD_UID,
        'service.name': 'checkout-env', 'deployment.environment.name': 'prod',
        'k8s.namespace.name': 'shop', 'k8s.pod.name': 'checkout-7d9c8b6f5-x2x7q',
        'k8s.deployment.name': 'checkout', 'k8s.container.name': 'app', 'pod_phase': 'running'})
    assert profile.resources[1].attributes == dict(common, **{
        'process.pid': 1, 'process.executable.name': 'systemd',
        'process.executable.path': '/usr/lib/systemd/systemd'})
    assert telemetry.total('processors.tagger.cache.misses') == 1


def test_standalone_mode_exact_attributes():
    from datadog_checks.host_profiler.processors.attributes import hash_value

    telemetry = Telemetry()
    with FakeKubelet() as kubelet:
        user = {'processors': dict(USER['processors'])}
        user['processors']['k8sattributes'] = dict(USER['processors']['k8sattributes'], kubelet_url=kubelet.url)
        instance, warnings = load_instance(user, 'standalone')
        assert any('infraattributes' in w for w in warnings)
        chain = build_processors(instance, 'standalone', telemetry=telemetry, version='1.0.0',
                                 hostname=lambda: 'standalone-host', background=False)
        assert [type(p).__name__ for p in chain] == [
            'ResourceDetectionProcessor', 'K8sAttributesProcessor', 'AttributesProcessor',
            'ProfilerMetadataProcessor']
        k8s = chain[1]
        assert k8s.refresh()
        profile = run_processors(chain, _profile())
        close_processors(chain)
    assert tagger._calls == []
    common = {'host.arch': host_arch(), 'os.type': 'linux', 'host.name': 'standalone-host',
              'datadog.host.name': 'standalone-host', 'team': 'payments',
              'profiler_name': 'host-profiler-standalone', 'profiler_version': '1.0.0'}
    assert profile.resources[0].attributes == dict(common, **{
        'process.pid': 4242, 'process.executable.name': 'server', 'process.executable.path': '/app/server',
        'container.id': CONTAINER_ID, 'k8s.pod.uid': POD_UID, 'service.name': 'checkout-env',
        'k8s.pod.name': 'checkout-7d9c8b6f5-x2x7q', 'k8s.namespace.name': 'shop', 'k8s.node.name': 'node-a',
        'k8s.replicaset.name': 'checkout-7d9c8b6f5', 'k8s.deployment.name': 'checkout',
        'k8s.pod.label.app': hash_value('checkout'), 'k8s.container.name': 'app',
        'container.image.name': 'registry.example.com:5000/shop/checkout', 'container.image.tag': '1.4.2'})
    assert profile.resources[1].attributes == dict(common, **{
        'process.pid': 1, 'process.executable.name': 'systemd',
        'process.executable.path': '/usr/lib/systemd/systemd'})
    assert telemetry.total('processors.kubelet.cache.hits') == 1


def test_no_enrichment_when_not_configured():
    instance, _ = load_instance({}, 'standalone')
    chain = build_processors(instance, 'standalone', version='1', hostname=lambda: 'h')
    assert not any(isinstance(p, (K8sAttributesProcessor, InfraAttributesProcessor)) for p in chain)


def test_http_client_made_only_for_a_processor_that_needs_one():
    # building the Agent's HTTP client imports its HTTP stack (~0.2 s of CPU at start-up)
    made = []

    def factory():
        made.append(object())
        return made[-1]

    instance, _ = load_instance({}, 'standalone')
    build_processors(instance, 'standalone', version='1', hostname=lambda: 'h', http_factory=factory)
    assert made == []
    instance, _ = load_instance({'processors': {'k8sattributes': {'enabled': True}}}, 'standalone')
    chain = build_processors(instance, 'standalone', version='1', hostname=lambda: 'h', http_factory=factory,
                             background=False)
    k8s = [p for p in chain if isinstance(p, K8sAttributesProcessor)]
    assert len(made) == 1 and k8s and k8s[0]._get_http() is made[0]
    close_processors(chain)
