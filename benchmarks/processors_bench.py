# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Enrichment of 2,000 processes in one export with warm caches, both modes (target <= 50 ms).

    python benchmarks/processors_bench.py [--processes 2000] [--containers 50] [--repeat 30]

Agent mode: resourcedetection + infraattributes (tagger stub, 10 tags per container) + 3 user
actions + profiler metadata. Standalone: resourcedetection + k8sattributes (index warmed from
the fake kubelet's pod list scaled to the container count) + the same actions + metadata.
Each run builds a fresh Profile (resources with the receiver's attributes), outside the timing.
"""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'tests'))

from datadog_checks.base.stubs import datadog_agent  # noqa: E402
from datadog_checks.base.stubs.tagging import tagger  # noqa: E402

from datadog_checks.host_profiler.processors.k8s_attributes import PodIndex  # noqa: E402
from datadog_checks.host_profiler.processors.chain import build_processors, run_processors  # noqa: E402
from datadog_checks.host_profiler.profile.model import Profile, Resource  # noqa: E402

ACTIONS = [
    {'key': 'team', 'value': 'payments', 'action': 'insert'},
    {'key': 'k8s.pod.name', 'action': 'hash'},
    {'key': 'process.executable.path', 'action': 'extract', 'pattern': r'^/(?P<app_root>[^/]+)/'},
]


def container_id(i):
    return '{:064x}'.format(0xC0FFEE0000 + i)


def pod_uid(i):
    return '00000000-0000-0000-0000-{:012d}'.format(i)


def make_profile(processes, containers):
    resources = []
    for pid in range(processes):
        attrs = {'process.pid': pid + 100, 'process.executable.name': 'app{}'.format(pid % 37),
                 'process.executable.path': '/opt/app{}/bin/server'.format(pid % 37)}
        if pid % 4:  # three processes out of four run in a container
            c = pid % containers
            attrs['container.id'] = container_id(c)
            attrs['k8s.pod.uid'] = pod_uid(c)
        resources.append(Resource(attributes=attrs))
    return Profile(time_unix_nano=1, duration_nano=1, period_nano=50_000_000, resources=resources)


def pod_list(containers):
    items = []
    for c in range(containers):
        items.append({
            'metadata': {'name': 'pod-{}'.format(c), 'namespace': 'ns{}'.format(c % 5), 'uid': pod_uid(c),
                         'labels': {'app': 'app{}'.format(c), 'pod-template-hash': 'abc12'},
                         'annotations': {'team': 't{}'.format(c % 3)},
                         'ownerReferences': [{'kind': 'ReplicaSet', 'name': 'dep{}-abc12'.format(c)}]},
            'spec': {'nodeName': 'node-a', 'containers': [{'name': 'main', 'image': 'repo/app:{}'.format(c)}]},
            'status': {'containerStatuses': [{'name': 'main', 'containerID': 'containerd://' + container_id(c)}]},
        })
    return {'items': items}


def timed(chain, processes, containers, repeat):
    times = []
    for _ in range(repeat):
        profile = make_profile(processes, containers)
        start = time.perf_counter()
        run_processors(chain, profile)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--processes', type=int, default=2000)
    parser.add_argument('--containers', type=int, default=50)
    parser.add_argument('--repeat', type=int, default=30)
    args = parser.parse_args()
    results = {}

    tagger.set_tags({'container_id://' + container_id(c): [
        'kube_namespace:ns{}'.format(c % 5), 'pod_name:pod-{}'.format(c), 'kube_deployment:dep{}'.format(c),
        'kube_container_name:main', 'container_name:main', 'image_name:repo/app', 'image_tag:{}'.format(c),
        'kube_cluster_name:prod', 'service:svc{}'.format(c), 'env:prod'] for c in range(args.containers)})
    datadog_agent.set_hostname('bench-host')
    agent_instance = {'processors': {'infraattributes': {'cardinality': 'orchestrator', 'cache_ttl': 3600},
                                     'attributes': {'actions': ACTIONS}}}
    chain = build_processors(agent_instance, 'agent', version='bench')
    run_processors(chain, make_profile(args.processes, args.containers))  # warm the tagger cache
    results['agent'] = timed(chain, args.processes, args.containers, args.repeat)

    standalone_instance = {'processors': {
        'resourcedetection': {'host.arch': True, 'host.name': True, 'os.type': True},
        'k8sattributes': {'enabled': True, 'auth': 'none', 'kubelet_url': 'http://127.0.0.1:1', 'labels': ['app'],
                          'annotations': ['team'], 'cache_ttl': 3600},
        'attributes': {'actions': ACTIONS}}}
    chain = build_processors(standalone_instance, 'standalone', version='bench', hostname=lambda: 'bench-host',
                             background=False)
    k8s = chain[1]
    k8s._index = PodIndex.build(pod_list(args.containers), ['app'], ['team'], k8s._clock(), 5000)  # warm
    results['standalone'] = timed(chain, args.processes, args.containers, args.repeat)

    out = {'processes': args.processes, 'containers': args.containers, 'repeat': args.repeat}
    for mode, times in results.items():
        out[mode] = {'median_ms': round(statistics.median(times), 2), 'max_ms': round(max(times), 2)}
    print(json.dumps(out, indent=2))


if __name__ == '__main__':
    main()
