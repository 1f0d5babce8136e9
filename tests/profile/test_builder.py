# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
from types import SimpleNamespace

from datadog_checks.host_profiler.profile.builder import TRUNCATED_FRAME, USER_STACK_LOST_FRAME, build_profile
from datadog_checks.host_profiler.profile.merge import merge_samples
from datadog_checks.host_profiler.profile.model import (
    FRAME_ABORT,
    FRAME_KERNEL,
    OFF_CPU_TIME,
    Frame,
    Mapping,
    RawSample,
)

LIBC = Mapping(0x7F0000000000, 0x7F0000100000, 0x2000, '/usr/lib/libc.so.6', 'cafe', 'gnu')


class Recorder:
    """Fake registry + symbolizers that record their calls."""

    def __init__(self, processes=None):
        self.processes = processes or {}
        self.resolved = []
        self.user_calls = []
        self.kernel_calls = []

    def resolve(self, pid):
        self.resolved.append(pid)
        return self.processes.get(pid)

    def user(self, process, addresses):
        self.user_calls.append((process.pid if process else None, tuple(addresses)))
        return [Frame('u_%x' % a if a < 0x9000 else '', a, mapping=LIBC) for a in addresses]

    def kernel(self, addresses):
        self.kernel_calls.append(tuple(addresses))
        return [Frame('k_%x' % a, a, FRAME_KERNEL) for a in addresses]

    def build(self, samples):
        return build_profile(
            samples, self.resolve, self.user, self.kernel, time_unix_nano=10, duration_nano=20, period_nano=50_000_000
        )


def proc(pid, comm='app', exe='/usr/bin/app', container_id='', env=None):
    return SimpleNamespace(pid=pid, comm=comm, exe=exe, container_id=container_id, env=env or {}, start_time=1)


def test_stack_order_kernel_on_top_of_user():
    r = Recorder({10: proc(10)})
    p = r.build([RawSample(10, 11, 'worker', (0x1001, 0x1002), (0xFFFF0001, 0xFFFF0002), 3)])
    (res,) = p.resources
    (s,) = res.samples
    assert [f.function for f in s.frames] == ['k_ffff0001', 'k_ffff0002', 'u_1001', 'u_1002']
    assert [f.kind for f in s.frames][:2] == [FRAME_KERNEL, FRAME_KERNEL]
    assert s.value == 3 and s.thread_id == 11 and s.thread_name == 'worker'
    assert (p.time_unix_nano, p.duration_nano, p.period_nano) == (10, 20, 50_000_000)


def test_symbolizes_each_distinct_stack_and_address_once():
    r = Recorder({10: proc(10), 20: proc(20)})
    samples = [
        RawSample(10, 10, 'a', (0x1001, 0x1002), (0xFFFF0001,), 1),
        RawSample(10, 12, 'a', (0x1001, 0x1002), (0xFFFF0001,), 2),  # same stacks, other thread
        RawSample(10, 10, 'a', (0x1001, 0x1002), (0xFFFF0001,), 4),  # same key: merged
        RawSample(10, 10, 'a', (0x1003, 0x1002), (), 1),  # shares 0x1002
        RawSample(20, 20, 'b', (0x1001, 0x1002), (0xFFFF0001,), 1),  # other process: symbolized apart
    ]
    p = r.build(merge_samples(samples))  # the receiver's collect() merges equal keys
    assert sorted(r.resolved) == [10, 20]
    assert r.user_calls == [(10, (0x1001, 0x1002)), (10, (0x1003,)), (20, (0x1001, 0x1002))]
    assert r.kernel_calls == [(0xFFFF0001,)]
    res10 = p.resources[0]
    assert sorted((s.thread_id, s.value) for s in res10.samples) == [(10, 1), (10, 5), (12, 2)]
    # Samples with the same stack share the frames tuple; equal frames are the same object.
    by_len = {len(s.frames): s for s in res10.samples}
    a, b = [s for s in res10.samples if len(s.frames) == 3]
    assert a.frames is b.frames
    assert by_len[2].frames[1] is a.frames[2]
    assert p.total_samples == 9


def test_truncated_and_lost_stacks_get_abort_marker_at_root():
    r = Recorder({10: proc(10)})
    p = r.build(
        [
            RawSample(10, 10, 'a', (0x1001,), (), 1, truncated=True),
            RawSample(10, 10, 'a', (), (0xFFFF0001,), 1, user_stack_lost=True),
            RawSample(10, 10, 'a', (0x1002,), (), 1),
        ]
    )
    samples = {s.frames[0].address: s for s in p.resources[0].samples}
    t = samples[0x1001]
    assert t.frames[-1] is TRUNCATED_FRAME and t.frames[-1].kind == FRAME_ABORT and t.truncated
    lost = samples[0xFFFF0001]
    assert lost.frames[-1] is USER_STACK_LOST_FRAME and lost.truncated
    complete = samples[0x1002]
    assert all(f.kind != FRAME_ABORT for f in complete.frames) and not complete.truncated


def test_resource_attributes_from_process_and_env():
    env = {'DD_SERVICE': 'web', 'OTEL_SERVICE_NAME': 'ignored', 'DD_ENV': 'prod', 'DD_VERSION': '1.2'}
    r = Recorder({10: proc(10, comm='web', exe='/srv/bin/web-server', container_id='abc123', env=env)})
    p = r.build([RawSample(10, 10, 'web', (0x1001,), (), 1)])
    res = p.resources[0]
    assert res.attributes == {
        'process.pid': 10,
        'process.executable.name': 'web-server',
        'process.executable.path': '/srv/bin/web-server',
        'container.id': 'abc123',
        'service.name': 'web',
        'deployment.environment.name': 'prod',
        'service.version': '1.2',
    }
    assert res.comm == 'web' and res.pid == 10


def test_otel_service_name_fallback_and_vanished_process():
    r = Recorder({10: proc(10, exe='/usr/bin/py (deleted)', env={'OTEL_SERVICE_NAME': 'svc'})})
    p = r.build(
        [
            RawSample(10, 10, 'py', (0x1001,), (), 1),
            RawSample(30, 31, 'gone-thread', (0x1001,), (), 1),
            RawSample(30, 30, 'gone', (0x1001,), (), 1),
        ]
    )
    a, b = p.resources
    assert a.attributes['service.name'] == 'svc'
    assert a.attributes['process.executable.name'] == 'py'
    # Vanished process: the resource comes from the raw sample (main thread's comm preferred).
    assert b.attributes == {'process.pid': 30, 'process.executable.name': 'gone'}
    assert b.comm == 'gone'
    assert (None, (0x1001,)) in r.user_calls


def test_off_cpu_samples_are_separate():
    r = Recorder({10: proc(10)})
    p = r.build(
        [
            RawSample(10, 10, 'a', (0x1001,), (), 2),
            RawSample(10, 10, 'a', (0x1001,), (), 5_000_000, value_type=OFF_CPU_TIME),
        ]
    )
    res = p.resources[0]
    assert [s.value for s in res.samples] == [2]
    assert [s.value for s in res.off_cpu_samples] == [5_000_000]
    assert p.has_off_cpu and p.total_samples == 2


def test_failing_symbolizers_leave_frames_unknown():
    def boom(*args):
        raise RuntimeError('bad ELF')

    p = build_profile(
        [RawSample(10, 10, 'a', (0x1001,), (0xFFFF0001,), 1)],
        lambda pid: None,
        boom,
        boom,
        time_unix_nano=0,
        duration_nano=0,
        period_nano=1,
    )
    frames = p.resources[0].samples[0].frames
    assert [(f.function, f.address, f.kind) for f in frames] == [('', 0xFFFF0001, 'kernel'), ('', 0x1001, 'native')]


def test_inline_expanding_symbolizer_is_respected():
    def user(process, addresses):
        out = []
        for a in addresses:
            out += [Frame('inlined_%x' % a, a), Frame('outer_%x' % a, a)]
        return out

    p = build_profile(
        [RawSample(10, 10, 'a', (0x1001, 0x1002), (), 1)],
        lambda pid: None,
        user,
        lambda a: [],
        time_unix_nano=0,
        duration_nano=0,
        period_nano=1,
    )
    assert [f.function for f in p.resources[0].samples[0].frames] == [
        'inlined_1001',
        'outer_1001',
        'inlined_1002',
        'outer_1002',
    ]


def test_empty_input():
    p = Recorder().build([])
    assert p.resources == [] and p.total_samples == 0
