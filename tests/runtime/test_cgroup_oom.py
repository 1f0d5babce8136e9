# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
import os
import subprocess
import sys

import pytest

from datadog_checks.host_profiler.runtime import cgroup, oom

GIB = 1 << 30


def _proc(tmp_path, cgroup_text, meminfo_kb=16 * 1024 * 1024):
    proc = tmp_path / 'proc'
    (proc / 'self').mkdir(parents=True)
    (proc / 'self' / 'cgroup').write_text(cgroup_text)
    (proc / 'meminfo').write_text('MemTotal:       {} kB\nMemFree: 1 kB\n'.format(meminfo_kb))
    return proc


def _v2(tmp_path, path, limits):
    root = tmp_path / 'cg'
    root.mkdir()
    (root / 'cgroup.controllers').write_text('cpu memory io\n')
    for rel, value in limits.items():
        d = root / rel if rel else root
        d.mkdir(parents=True, exist_ok=True)
        (d / 'memory.max').write_text(value + '\n')
    return root


def test_parse_limit():
    assert cgroup.parse_limit('max\n') is None
    assert cgroup.parse_limit('9223372036854771712') is None  # v1 "unlimited"
    assert cgroup.parse_limit('') is None
    assert cgroup.parse_limit('garbage') is None
    assert cgroup.parse_limit('536870912\n') == 512 << 20


def test_v2_limit_of_own_cgroup(tmp_path):
    proc = _proc(tmp_path, '0::/system.slice/datadog-agent.service\n')
    root = _v2(tmp_path, None, {'system.slice/datadog-agent.service': str(2 * GIB), 'system.slice': 'max'})
    assert cgroup.memory_limit_bytes(cgroup_root=str(root), proc_root=str(proc)) == 2 * GIB
    assert cgroup.cgroup_version(str(root)) == 2
    assert cgroup.memory_budget_bytes(
        cgroup_root=str(root), proc_root=str(proc), meminfo=str(proc / 'meminfo')
    ) == int(2 * GIB * 0.8)


def test_v2_max_is_unlimited_and_ancestor_limit_applies(tmp_path):
    proc = _proc(tmp_path, '0::/kubepods/pod1/ctr\n', meminfo_kb=4 * 1024 * 1024)
    root = _v2(tmp_path, None, {'kubepods/pod1/ctr': 'max', 'kubepods/pod1': str(GIB), 'kubepods': 'max'})
    assert cgroup.memory_limit_bytes(cgroup_root=str(root), proc_root=str(proc)) == GIB
    # all max: no limit, the budget falls back to MemTotal
    for rel in ('kubepods/pod1/ctr', 'kubepods/pod1', 'kubepods'):
        (root / rel / 'memory.max').write_text('max\n')
    assert cgroup.memory_limit_bytes(cgroup_root=str(root), proc_root=str(proc)) is None
    usable = cgroup.usable_memory_bytes(cgroup_root=str(root), proc_root=str(proc), meminfo=str(proc / 'meminfo'))
    assert usable == 4 * GIB
    assert cgroup.memory_budget_bytes(
        0.5, cgroup_root=str(root), proc_root=str(proc), meminfo=str(proc / 'meminfo')
    ) == 2 * GIB


def test_v2_namespaced_container_sees_root(tmp_path):
    # in a cgroup namespace /proc/self/cgroup says '/' and the limit is at the mount root
    proc = _proc(tmp_path, '0::/\n')
    root = _v2(tmp_path, None, {'': str(GIB // 2)})
    assert cgroup.memory_limit_bytes(cgroup_root=str(root), proc_root=str(proc)) == GIB // 2


def test_v2_host_path_missing_in_container(tmp_path):
    proc = _proc(tmp_path, '0::/docker/abcdef\n')
    root = _v2(tmp_path, None, {'': str(3 * GIB)})  # the container's mount has no docker/abcdef dir
    assert cgroup.memory_limit_bytes(cgroup_root=str(root), proc_root=str(proc)) == 3 * GIB


def test_v1_limit(tmp_path):
    proc = _proc(tmp_path, '12:cpu,cpuacct:/docker/x\n9:memory:/docker/x\n0::/\n')
    root = tmp_path / 'cg'
    mem = root / 'memory'
    (mem / 'docker' / 'x').mkdir(parents=True)
    (mem / 'memory.limit_in_bytes').write_text('9223372036854771712\n')
    (mem / 'docker' / 'memory.limit_in_bytes').write_text('9223372036854771712\n')
    (mem / 'docker' / 'x' / 'memory.limit_in_bytes').write_text('{}\n'.format(GIB))
    assert cgroup.cgroup_version(str(root)) == 1
    assert cgroup.cgroup_paths('self', str(proc)) == {'memory': '/docker/x', 'v2': '/'}
    assert cgroup.memory_limit_bytes(cgroup_root=str(root), proc_root=str(proc)) == GIB
    (mem / 'docker' / 'x' / 'memory.limit_in_bytes').write_text('9223372036854771712\n')
    assert cgroup.memory_limit_bytes(cgroup_root=str(root), proc_root=str(proc)) is None


def test_unreadable_everything_is_none(tmp_path):
    assert cgroup.memory_limit_bytes(cgroup_root=str(tmp_path / 'x'), proc_root=str(tmp_path / 'y')) is None
    assert cgroup.budget_of(None) is None
    assert cgroup.budget_of(1000) == 800


def test_real_host_does_not_crash():
    limit = cgroup.memory_limit_bytes()
    assert limit is None or limit > 0
    assert cgroup.memory_budget_bytes() is None or cgroup.memory_budget_bytes() > 0


def test_oom_helpers_on_a_child_process():
    child = oom.spawn_expendable([sys.executable, '-c', 'import sys; sys.stdin.read()'], stdin=subprocess.PIPE)
    try:
        assert oom.read_oom_score_adj(child.pid) == 1000
        oom.set_oom_score_adj(500, child.pid)
        assert oom.read_oom_score_adj(child.pid) == 500
        oom.set_oom_score_adj(5000, child.pid)  # clamped
        assert oom.read_oom_score_adj(child.pid) == 1000
    finally:
        child.stdin.close()
        child.wait(10)
    assert oom.read_oom_score_adj(child.pid) is None  # gone


def test_spawn_expendable_runs_no_python_in_the_child_while_a_lock_is_held():
    """The hang this replaced: a preexec_fn runs Python (and libraries' at-fork hooks) in the
    child, where a lock held by another thread at fork stays held forever. With the lock held
    by another thread during every spawn, the tools still start and exit."""
    import threading
    import time

    held = threading.Lock()
    held.acquire()
    active = [True]  # at-fork hooks cannot be unregistered: this one does nothing after the test
    os.register_at_fork(after_in_child=lambda: held.acquire(timeout=30) if active[0] else None)
    try:
        for _ in range(3):
            started = time.monotonic()
            child = oom.spawn_expendable(['sleep', '0.2'])
            # Popen returns once the child exec'd: a child stuck on the lock would take 30 s
            assert time.monotonic() - started < 10
            assert oom.read_oom_score_adj(child.pid) == 1000
            assert child.wait(10) == 0
    finally:
        active[0] = False
        held.release()
    out = oom.spawn_expendable(['cat', '/proc/self/oom_score_adj'], stdout=subprocess.PIPE).communicate(timeout=10)[0]
    assert out.strip() == b'1000'  # the tool itself starts with the score, not a moment later


def test_keep_own_oom_score_sane_in_a_child():
    # run in a child so the test process's own score is never touched
    code = (
        'from datadog_checks.host_profiler.runtime import oom\n'
        'oom.set_oom_score_adj(700)\n'
        'a = oom.keep_own_oom_score_sane()\n'
        'b = oom.keep_own_oom_score_sane()\n'
        'print(a, b, oom.read_oom_score_adj())\n'
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run(
        [sys.executable, '-c', code], stdout=subprocess.PIPE, env=env, check=True
    ).stdout.decode().split()
    assert out == ['True', 'False', '0']


def test_keep_own_oom_score_sane_with_fake_proc(tmp_path):
    (tmp_path / 'self').mkdir()
    f = tmp_path / 'self' / 'oom_score_adj'
    f.write_text('-500\n')
    assert oom.keep_own_oom_score_sane(str(tmp_path)) is False
    assert f.read_text() == '-500\n'
    f.write_text('300\n')
    assert oom.keep_own_oom_score_sane(str(tmp_path)) is True
    assert oom.read_oom_score_adj('self', str(tmp_path)) == 0
    with pytest.raises(OSError):
        oom.set_oom_score_adj(1, 'self', str(tmp_path / 'missing'))
