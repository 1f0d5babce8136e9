# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""A container simulated for real: a workload moved into a kubepods-style cgroup made by the test.

The same profile goes through both modes: the Agent tagger (agent mode) and a kubelet (standalone,
a local fake serving a recorded /pods answer), and the OTLP resource's attributes are checked."""
import os
import time

import pytest
from tests.fakes.kubelet import CONTAINER_ID, POD_UID, FakeKubelet
from tests.fakes.otlp import PROFILES_PATH, FakeOtlp
from tests.workloads import compile_c, start

from datadog_checks.base.stubs import datadog_agent
from datadog_checks.base.utils.tagging import tagger
from datadog_checks.host_profiler import HostProfilerCheck

pytestmark = pytest.mark.integration

CGROUP_ROOT = '/sys/fs/cgroup/unified'
POD_SLICE = 'kubepods-besteffort-pod{}.slice'.format(POD_UID.replace('-', '_'))
CONTAINER_CGROUP = os.path.join(CGROUP_ROOT, 'kubepods.slice', 'kubepods-besteffort.slice', POD_SLICE,
                                'cri-containerd-{}.scope'.format(CONTAINER_ID))


@pytest.fixture
def containerized(requires_bpf, tmp_path):
    """The split workload, running inside the container's cgroup (v2)."""
    try:
        os.makedirs(CONTAINER_CGROUP, exist_ok=True)
    except OSError as e:
        pytest.skip('cannot create a cgroup here ({}); the processors tests cover cgroup files'.format(e))
    proc = start(compile_c('split.c', tmp_path), 30)
    try:
        with open(os.path.join(CONTAINER_CGROUP, 'cgroup.procs'), 'w') as f:
            f.write(str(proc.pid))
        yield proc
    finally:
        proc.kill()
        proc.wait()
        time.sleep(0.1)
        # cgroup directories are removed with rmdir, deepest first (their files are not real files).
        for d in sorted((dp for dp, _, _ in os.walk(os.path.join(CGROUP_ROOT, 'kubepods.slice'))), key=len,
                        reverse=True):
            try:
                os.rmdir(d)
            except OSError:
                pass


def _profile_resource(tmp_path, proc, otlp, dd_run_check, **extra):
    instance = dict({
        'min_collection_interval': 2,
        'lock_file': str(tmp_path / 'lock'),
        'diagnostics_dir': str(tmp_path),
        'receiver': {'samples_per_second': 49, 'pids': [proc.pid], 'symbol_uploader': {'enabled': False}},
        'exporters': {'otlp_http': [{'endpoint': otlp.url, 'headers': {'dd-api-key': 'x' * 32}}]},
    }, **extra)
    check = HostProfilerCheck('host_profiler', {}, [instance])
    try:
        dd_run_check(check, cancel=False)
        time.sleep(2.5)
        dd_run_check(check, cancel=False)
        assert check.pipeline.flush(10)
    finally:
        check.cancel()
    data = [r for r in otlp.accepted if r.path == PROFILES_PATH][-1].message
    for rp in data.resource_profiles:
        attrs = {kv.key: getattr(kv.value, kv.value.WhichOneof('value')) for kv in rp.resource.attributes}
        if attrs.get('process.pid') == proc.pid:
            return attrs
    raise AssertionError('the workload is not in the export')


def test_agent_mode_tags_from_the_tagger(containerized, tmp_path, dd_run_check):
    tagger.set_tags({'container_id://' + CONTAINER_ID: [
        'kube_namespace:shop', 'pod_name:checkout-1', 'kube_deployment:checkout', 'kube_container_name:app',
        'image_name:shop/checkout', 'service:checkout', 'env:prod', 'version:1.2.3', 'team:payments']})
    datadog_agent.set_hostname('agent-host')  # the fake Agent's name (its default is a placeholder, never used)
    try:
        with FakeOtlp() as otlp:
            attrs = _profile_resource(tmp_path, containerized, otlp, dd_run_check, mode='agent')
    finally:
        tagger.reset()
        datadog_agent.reset_hostname()
    assert attrs['container.id'] == CONTAINER_ID
    assert attrs['k8s.pod.uid'] == POD_UID
    assert attrs['k8s.namespace.name'] == 'shop' and attrs['k8s.pod.name'] == 'checkout-1'
    assert attrs['k8s.deployment.name'] == 'checkout' and attrs['k8s.container.name'] == 'app'
    assert attrs['container.image.name'] == 'shop/checkout'
    assert attrs['service.name'] == 'checkout' and attrs['deployment.environment.name'] == 'prod'
    assert attrs['service.version'] == '1.2.3' and attrs['team'] == 'payments'
    assert attrs['host.name'] == 'agent-host'
    assert attrs['profiler_name'] == 'host-profiler-bundled' and attrs['host.arch'] == 'amd64'


def test_standalone_mode_attributes_from_the_kubelet(containerized, tmp_path, dd_run_check):
    with FakeKubelet() as kubelet, FakeOtlp() as otlp:
        attrs = _profile_resource(tmp_path, containerized, otlp, dd_run_check, mode='standalone', processors={
            'k8sattributes': {'enabled': True, 'kubelet_url': kubelet.url, 'auth': 'none', 'labels': ['app']}})
    assert attrs['container.id'] == CONTAINER_ID and attrs['k8s.pod.uid'] == POD_UID
    assert attrs['k8s.pod.name'] == 'checkout-7d9c8b6f5-x2x7q'
    assert attrs['k8s.namespace.name'] and attrs['k8s.container.name']
    assert attrs['profiler_name'] == 'host-profiler-standalone'
    assert 'k8s.deployment.name' not in attrs or attrs['k8s.deployment.name']
