# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
import ctypes
import os
import struct

import pytest

from datadog_checks.host_profiler.runtime import bpf_stats
from datadog_checks.host_profiler.runtime.bpf_stats import BpfStats
from datadog_checks.host_profiler.runtime.telemetry import COUNT, GAUGE, Telemetry


def _load_trivial_prog(name=b'hp_rt_test'):
    """A 2-instruction socket filter (r0 = 0; exit), loaded with bpf(BPF_PROG_LOAD)."""
    insns = struct.pack('<BBhi', 0xB7, 0, 0, 0) + struct.pack('<BBhi', 0x95, 0, 0, 0)
    ibuf = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b'GPL')
    attr = ctypes.create_string_buffer(64)
    struct.pack_into('<IIQQ', attr, 0, 1, 2, ctypes.addressof(ibuf), ctypes.addressof(lic))
    attr[48:48 + len(name)] = name
    return bpf_stats._bpf(bpf_stats.BPF_PROG_LOAD, attr)


def _test_run(fd, repeat):
    data = ctypes.create_string_buffer(64)
    attr = ctypes.create_string_buffer(80)
    struct.pack_into('<IIIIQQII', attr, 0, fd, 0, 64, 0, ctypes.addressof(data), 0, repeat, 0)
    bpf_stats._bpf(10, attr)  # BPF_PROG_TEST_RUN


@pytest.fixture
def prog_fd():
    try:
        fd = _load_trivial_prog()
    except OSError as e:
        pytest.skip('cannot load a BPF program here: {}'.format(e))
    yield fd
    os.close(fd)


def test_stats_disabled_reports_gauge_only(tmp_path):
    sysctl = tmp_path / 'bpf_stats_enabled'
    sysctl.write_text('0\n')
    t = Telemetry()
    s = BpfStats(t, lambda: [1, 2], sysctl_path=str(sysctl))
    s.collect()
    snap = t.snapshot()
    assert [(m.name, m.type, m.value) for m in snap] == [('bpf.stats_enabled', GAUGE, 0)]


def test_run_time_and_count_deltas_from_the_kernel(prog_fd, tmp_path):
    sysctl = tmp_path / 'bpf_stats_enabled'
    sysctl.write_text('0\n')
    prog_id = bpf_stats.prog_id_of_fd(prog_fd)
    t = Telemetry()
    s = BpfStats(t, lambda: {prog_id: 'sampler_prog'}, enable_bpf_stats=True, sysctl_path=str(sysctl))
    try:
        if not s.stats_enabled:
            pytest.skip('BPF stats cannot be enabled: {}'.format(s.enable_error))
        _test_run(prog_fd, 7)
        s.collect()
        snap = {(m.name, m.tags): m for m in t.snapshot()}
        assert snap[('bpf.stats_enabled', ())].value == 1
        count = snap[('bpf.run_count', ('program:sampler_prog',))]
        assert count.type == COUNT and count.value == 7
        run_time = snap[('bpf.run_time', ('program:sampler_prog',))]
        assert run_time.type == COUNT and 0 < run_time.value < 1
        _test_run(prog_fd, 3)
        s.collect()
        snap = {(m.name, m.tags): m for m in t.snapshot()}
        assert snap[('bpf.run_count', ('program:sampler_prog',))].value == 3
    finally:
        s.close()
    # the fd-based enablement went away with close(); the fake sysctl was never touched
    assert sysctl.read_text() == '0\n'
    assert s._stats_fd is None


def test_kernel_name_used_when_provider_gives_ids(prog_fd, tmp_path):
    sysctl = tmp_path / 'bpf_stats_enabled'
    sysctl.write_text('1\n')  # "enabled globally"
    prog_id = bpf_stats.prog_id_of_fd(prog_fd)
    t = Telemetry()
    s = BpfStats(t, lambda: [prog_id, 987654321], sysctl_path=str(sysctl))
    s.collect()
    names = {(m.name, m.tags) for m in t.snapshot()}
    assert ('bpf.run_count', ('program:hp_rt_test',)) in names
    assert not any('987654321' in str(tags) for _, tags in names)  # vanished program: skipped


def test_probe_kernel_shape():
    from datadog_checks.host_profiler.receiver import kernel

    p = kernel.probe()
    assert p['kernel_release'] == os.uname().release
    for key in ('btf_present', 'tracepoints_available', 'kprobes_available'):
        assert isinstance(p[key], bool)
    caps = p['capabilities']
    assert set(caps) >= {'cap_eff', 'CAP_BPF', 'CAP_PERFMON', 'CAP_SYS_ADMIN'}


def test_capability_decoding(tmp_path):
    from datadog_checks.host_profiler.receiver import kernel

    status = tmp_path / 'status'
    # CAP_SYS_ADMIN (21) and CAP_BPF (39) only
    status.write_text('Name:\tx\nCapEff:\t{:016x}\n'.format((1 << 21) | (1 << 39)))
    caps = kernel.capabilities(str(status))
    assert caps['CAP_SYS_ADMIN'] is True and caps['CAP_BPF'] is True and caps['CAP_PERFMON'] is False
    missing = kernel.capabilities(str(tmp_path / 'nope'))
    assert missing['CAP_BPF'] is None
