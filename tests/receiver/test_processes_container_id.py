# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""parse_container_id over real-looking /proc/PID/cgroup contents (no root needed)."""
import pytest

from datadog_checks.host_profiler.receiver.processes import parse_container_id

CID = '3c8d2f6b0e5a4f7d9b1c2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b'
CID2 = 'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2'
POD = '8f3b1c2d-4e5f-6a7b-8c9d-0e1f2a3b4c5d'
POD_US = POD.replace('-', '_')

CASES = [
    # --- not in a container
    ('0::/', ('', '')),
    ('0::/init.scope', ('', '')),
    ('0::/user.slice/user-1000.slice/session-3.scope', ('', '')),
    ('0::/system.slice/sshd.service', ('', '')),
    ('12:memory:/\n11:cpu,cpuacct:/\n1:name=systemd:/init.scope', ('', '')),
    ('', ('', '')),
    ('garbage without colons', ('', '')),
    # --- docker
    ('0::/system.slice/docker-{}.scope'.format(CID), (CID, '')),  # v2, systemd driver
    ('0::/docker/{}'.format(CID), (CID, '')),  # v2, cgroupfs driver
    (
        '12:pids:/docker/{0}\n11:memory:/docker/{0}\n1:name=systemd:/docker/{0}'.format(CID),
        (CID, ''),
    ),  # v1
    ('0::/../docker-{}.scope'.format(CID), (CID, '')),  # seen from inside a cgroup namespace
    # --- docker-in-kubernetes (dockershim)
    (
        '0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/docker-{}.scope'.format(
            POD_US, CID
        ),
        (CID, POD),
    ),
    # --- containerd / kubernetes
    (
        '0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope'.format(
            POD_US, CID
        ),
        (CID, POD),
    ),
    ('0::/kubepods/burstable/pod{}/{}'.format(POD, CID), (CID, POD)),  # cgroupfs driver
    ('0::/kubepods/pod{}/{}'.format(POD, CID), (CID, POD)),  # guaranteed QoS
    (
        '11:memory:/kubepods/besteffort/pod{0}/{1}\n10:cpu,cpuacct:/kubepods/besteffort/pod{0}/{1}\n'
        '1:name=systemd:/kubepods/besteffort/pod{0}/{1}'.format(POD, CID),
        (CID, POD),
    ),  # v1
    ('0::/system.slice/containerd.service/kubepods-pod{}.slice:cri-containerd:{}'.format(POD_US, CID), (CID, POD)),
    ('0::/system.slice/containerd-{}.scope'.format(CID), (CID, '')),  # nerdctl
    # --- cri-o
    (
        '0::/kubepods.slice/kubepods-pod{}.slice/crio-{}.scope'.format(POD_US, CID),
        (CID, POD),
    ),
    ('0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/crio-conmon-{}.scope'.format(
        POD_US, CID), ('', POD)),  # conmon of cri-o is not the container
    ('1:name=systemd:/kubepods/burstable/pod{}/crio-{}'.format(POD, CID), (CID, POD)),
    # --- podman
    ('0::/machine.slice/libpod-{}.scope'.format(CID), (CID, '')),
    ('0::/machine.slice/libpod-{}.scope/container'.format(CID), (CID, '')),  # systemd-in-container
    ('0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{}.scope'.format(CID), (CID, '')),  # rootless
    ('0::/machine.slice/libpod-conmon-{}.scope'.format(CID), ('', '')),  # conmon
    ('1:name=systemd:/libpod_parent/libpod-{}'.format(CID), (CID, '')),  # v1 cgroupfs
    # --- ECS / Fargate
    ('0::/ecs/0123456789abcdef0123456789abcdef/{}'.format(CID), (CID, '')),
    ('0::/ecs/0123456789abcdef0123456789abcdef/0123456789abcdef0123456789abcdef-1234567890', (
        '0123456789abcdef0123456789abcdef-1234567890', '')),
    # --- the first line with an id wins; pod uid found on another line
    ('5:cpuset:/\n4:memory:/docker/{}\n3:blkio:/docker/{}'.format(CID, CID2), (CID, '')),
    # --- ids must be exactly 64 hex chars
    ('0::/docker/{}'.format(CID[:63]), ('', '')),
    ('0::/docker/{}'.format(CID.upper()), ('', '')),
]


@pytest.mark.parametrize('text,expected', CASES)
def test_parse_container_id(text, expected):
    assert parse_container_id(text) == expected


def test_pod_uid_without_container():
    text = '0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice'.format(POD_US)
    assert parse_container_id(text) == ('', POD)
