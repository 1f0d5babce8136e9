# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
import pytest
from datadog_checks.base.stubs import datadog_agent
from datadog_checks.base.stubs.tagging import tagger

from datadog_checks.host_profiler.processors.infra_attributes import InfraAttributesProcessor, tags_to_attributes
from datadog_checks.host_profiler.processors.resource_detection import host_arch
from datadog_checks.host_profiler.profile.model import Profile, Resource
from datadog_checks.host_profiler.runtime.telemetry import Telemetry

CID = 'a3f8c2d1e4b5968778a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1'
TAGS = ['kube_namespace:shop', 'pod_name:checkout-7d9c8b6f5-x2x7q', 'kube_deployment:checkout',
        'kube_container_name:app', 'container_name:app', 'image_name:registry.example.com/shop/checkout',
        'image_tag:1.4.2', 'kube_cluster_name:prod-eu', 'kube_node:node-a', 'team:payments',
        'service:checkout-from-tags', 'env:prod', 'version:1.4.2', 'short_image:checkout', 'novalue']


@pytest.fixture(autouse=True)
def _stubs(agent_stubs):
    pass


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _profile(*attrs):
    return Profile(time_unix_nano=1, duration_nano=1, period_nano=1,
                   resources=[Resource(attributes=dict(a)) for a in attrs])


def test_tags_mapped_and_unmapped_kept():
    tagger.set_tags({'container_id://' + CID: TAGS})
    datadog_agent.set_hostname('agent-host')
    profile = _profile({'process.pid': 10, 'container.id': CID, 'service.name': 'from-env'},
                       {'process.pid': 11})
    InfraAttributesProcessor({'cardinality': 'orchestrator'}).process(profile)
    tagger.assert_called('container_id://' + CID, tagger.ORCHESTRATOR)
    assert profile.resources[0].attributes == {
        'process.pid': 10,
        'container.id': CID,
        'service.name': 'from-env',  # the process environment wins over the container's tag
        'deployment.environment.name': 'prod',
        'service.version': '1.4.2',
        'k8s.namespace.name': 'shop',
        'k8s.pod.name': 'checkout-7d9c8b6f5-x2x7q',
        'k8s.deployment.name': 'checkout',
        'k8s.container.name': 'app',
        'container.name': 'app',
        'container.image.name': 'registry.example.com/shop/checkout',
        'container.image.tag': '1.4.2',
        'k8s.cluster.name': 'prod-eu',
        'k8s.node.name': 'node-a',
        'team': 'payments',
        'short_image': 'checkout',
        'host.arch': host_arch(),
        'host.name': 'agent-host',
        'datadog.host.name': 'agent-host',
    }
    # a host process: no tagger call, host attributes only
    assert profile.resources[1].attributes == {'process.pid': 11, 'host.arch': host_arch(),
                                               'host.name': 'agent-host', 'datadog.host.name': 'agent-host'}
    assert len(tagger._calls) == 1


@pytest.mark.parametrize('conf,card', [('low', 'LOW'), ('high', 'HIGH'), (1, 'ORCHESTRATOR'), (None, 'ORCHESTRATOR')])
def test_cardinality(conf, card):
    config = {} if conf is None else {'cardinality': conf}
    InfraAttributesProcessor(config).process(_profile({'container.id': CID}))
    tagger.assert_called('container_id://' + CID, getattr(tagger, card))


def test_hostname_override_off():
    profile = _profile({'process.pid': 1})
    InfraAttributesProcessor({'allow_hostname_override': False}).process(profile)
    assert profile.resources[0].attributes == {'process.pid': 1, 'host.arch': host_arch()}


def test_cache_ttl_and_telemetry():
    clock = Clock()
    telemetry = Telemetry()
    tagger.set_tags({'container_id://' + CID: ['kube_namespace:a']})
    proc = InfraAttributesProcessor({'cache_ttl': 30}, clock=clock, telemetry=telemetry)
    proc.process(_profile({'container.id': CID}, {'container.id': CID}))
    assert len(tagger._calls) == 1
    tagger.set_tags({'container_id://' + CID: ['kube_namespace:b']})
    clock.t += 29
    profile = _profile({'container.id': CID})
    proc.process(profile)
    assert profile.resources[0].attributes['k8s.namespace.name'] == 'a'  # cached
    clock.t += 2
    profile = _profile({'container.id': CID})
    proc.process(profile)
    assert profile.resources[0].attributes['k8s.namespace.name'] == 'b'  # expired, asked again
    totals = telemetry.totals()
    assert totals['processors.tagger.cache.hits'] == 2
    assert totals['processors.tagger.cache.misses'] == 2
    assert totals['processors.tagger.errors'] == 0


def test_tagger_error_is_counted_and_export_continues():
    class Broken:
        LOW, ORCHESTRATOR, HIGH = range(3)

        def tag(self, entity, card):
            raise RuntimeError('tagger down')

    telemetry = Telemetry()
    profile = _profile({'container.id': CID})
    InfraAttributesProcessor({}, tagger=Broken(), hostname=lambda: 'h', telemetry=telemetry).process(profile)
    assert profile.resources[0].attributes['host.name'] == 'h'
    assert telemetry.total('processors.tagger.errors') == 1


def test_cache_is_bounded():
    proc = InfraAttributesProcessor({}, max_entries=3)
    proc.process(_profile(*({'container.id': 'c{}'.format(i)} for i in range(10))))
    assert len(proc._cache) == 3


def test_tags_to_attributes_last_value_wins():
    assert tags_to_attributes(['team:a', 'team:b', 'bad', ':x', 'y:']) == (('team', 'b'),)


def test_container_from_cgroup_file(tmp_path):
    """A container simulated by cgroup files in a temporary tree: the receiver's parser gives
    container.id, the processor then asks the tagger for it."""
    processes = pytest.importorskip('datadog_checks.host_profiler.receiver.processes')
    parse = getattr(processes, 'parse_container_id', None)
    if parse is None:
        pytest.skip('receiver.processes.parse_container_id not available yet')
    cgroup = tmp_path / 'proc' / '4242' / 'cgroup'
    cgroup.parent.mkdir(parents=True)
    cgroup.write_text('0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f1c1b0e_8a4d_4e52_9f0e_'
                      '3d2b7c9a1e01.slice/cri-containerd-{}.scope\n'.format(CID))
    try:
        found = parse(cgroup.read_text())
    except TypeError:
        found = parse(str(cgroup))
    container_id = found[0] if isinstance(found, tuple) else found
    assert container_id == CID
    tagger.set_tags({'container_id://' + CID: ['kube_namespace:shop']})
    profile = _profile({'process.pid': 4242, 'container.id': container_id})
    InfraAttributesProcessor({}).process(profile)
    assert profile.resources[0].attributes['k8s.namespace.name'] == 'shop'
