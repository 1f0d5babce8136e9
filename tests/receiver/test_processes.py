# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""ProcessRegistry and /proc parsing (no root needed)."""
import os
import subprocess
import sys
import time

from datadog_checks.host_profiler.receiver.processes import (
    ProcessRegistry,
    parse_environ,
    parse_maps,
    parse_stat,
    read_process,
)


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_parse_stat_odd_comm():
    text = '1234 (a) b (c)) R 1 1234 1234 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 987654 1000 10 0 0'
    comm, start = parse_stat(text)
    assert comm == 'a) b (c)'
    assert start == 987654


def test_parse_maps_executable_only():
    text = (
        '55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234 /usr/bin/x\n'
        '55d0c0a01000-55d0c0a05000 r-xp 00001000 08:01 1234 /usr/bin/x\n'
        '7ffd1e9f0000-7ffd1e9f2000 r-xp 00000000 00:00 0 [vdso]\n'
        '7f00000000-7f00001000 rw-p 00000000 00:00 0\n'
        'bad line\n'
        '7f10000000-7f10001000 r-xp 00000000 08:01 99 /tmp/with space (deleted)\n'
    )
    maps = parse_maps(text)
    assert [m.path for m in maps] == ['/usr/bin/x', '[vdso]', '/tmp/with space (deleted)']
    m = maps[0]
    assert (m.start, m.end, m.offset, m.dev, m.inode, m.perms) == (0x55D0C0A01000, 0x55D0C0A05000, 0x1000, '08:01', 1234, 'r-xp')
    assert len(parse_maps(text, executable_only=False)) == 5


def test_parse_environ():
    data = b'A=1\0DD_SERVICE=web\0B\0DD_ENV=a=b\0'
    assert parse_environ(data, ['DD_SERVICE', 'DD_ENV', 'MISSING']) == {'DD_SERVICE': 'web', 'DD_ENV': 'a=b'}
    assert parse_environ(data, []) == {}


def test_read_self():
    os.environ['HP_TEST_VAR'] = 'yes'
    info = read_process(os.getpid(), ['HP_TEST_VAR', 'NOPE'])
    assert info is not None
    assert info.exe == os.path.realpath(sys.executable) or info.exe.endswith('python3') or 'python' in info.exe
    assert info.mappings and any('x' in m.perms for m in info.mappings)
    assert info.root == '/'  # same root as ours: files stay reachable by path after exit
    assert info.start_time > 0
    # environ is read at exec: our own change is not visible, the variable is simply absent
    assert 'NOPE' not in info.env
    assert read_process(2 ** 22 + 12345) is None  # no such pid


def test_registry_exit_ttl_and_reuse():
    clock = FakeClock()
    reg = ProcessRegistry(exit_ttl=5, clock=clock)
    p = subprocess.Popen(['sleep', '30'])
    try:
        info, gone = reg.ensure(p.pid)
        assert not gone and info.exe.endswith('sleep')
        assert reg.ensure(p.pid)[0] is info  # known: no re-read
        # pid reuse: a different start time for the same pid replaces the entry
        reg._by_pid[p.pid].exited_at = clock.t
        reg._by_pid[p.pid].start_time -= 1
        newer, _ = reg.ensure(p.pid)
        assert newer is not info and newer.exited_at is None
    finally:
        p.kill()
        p.wait()
    reg.on_exit(p.pid)
    assert reg.get(p.pid).exited_at == clock.t
    clock.t += 4
    assert reg.expire() == 0 and p.pid in reg
    clock.t += 1.5
    assert reg.expire() == 1 and p.pid not in reg


def test_registry_exec_forgets_and_the_next_read_is_fresh():
    reg = ProcessRegistry()
    p = subprocess.Popen(['sleep', '30'])
    try:
        info, _ = reg.ensure(p.pid)
        before = reg.maps_cache.misses
        reg.on_exec(p.pid)  # nothing is read at exec: most processes are never sampled
        assert p.pid not in reg and reg.maps_cache.misses == before
        again, gone = reg.ensure(p.pid)
        # read again, and parsed (not served from the layout cache: the image is new)
        assert not gone and again is not info and again.exe.endswith('sleep')
        assert reg.maps_cache.misses == before + 1
        assert reg.ensure(p.pid)[0] is again
        assert 0 <= again.age_s() < 60
    finally:
        p.kill()
        p.wait()


def test_registry_check_start_replaces_a_reused_pid_whose_exit_went_unseen():
    reg = ProcessRegistry()
    p = subprocess.Popen(['sleep', '30'])
    try:
        info, _ = reg.ensure(p.pid)
        reads = reg.reads
        assert reg.ensure(p.pid, check_start=True)[0] is info  # same process: kept
        info.start_time -= 1  # as if the pid now belonged to a newer process, exit never seen
        assert reg.ensure(p.pid)[0] is info  # without the check: trusted (no /proc read)
        newer, _ = reg.ensure(p.pid, check_start=True)
        assert newer is not info and newer.exited_at is None and reg.reads == reads + 1
    finally:
        p.kill()
        p.wait()


def test_registry_gone_counted_once():
    reg = ProcessRegistry()
    p = subprocess.Popen(['true'])
    p.wait()
    info, gone = reg.ensure(p.pid)
    assert info is None and gone
    assert reg.ensure(p.pid) == (None, False)
    assert reg.gone_before_metadata == 1


def test_registry_bounded_evicts_exited_first():
    reg = ProcessRegistry(max_entries=10)
    me = os.getpid()
    from datadog_checks.host_profiler.receiver.processes import ProcessInfo

    for pid in range(100, 110):
        reg._insert(ProcessInfo(pid=pid, start_time=1, read_at=time.monotonic()))
    reg.on_exit(105)
    reg._insert(ProcessInfo(pid=200, start_time=1))
    assert len(reg) == 10 and 105 not in reg and 200 in reg
    reg.refresh(me)
    assert len(reg) == 10 and me in reg
    snap = reg.snapshot()
    reg._insert(ProcessInfo(pid=300, start_time=1))
    assert 300 not in snap and snap.get(me) is reg.get(me)


def test_registry_memory_returns_after_churn():
    import tracemalloc

    from datadog_checks.host_profiler.receiver.processes import ProcMapping, ProcessInfo

    clock = FakeClock()
    reg = ProcessRegistry(exit_ttl=1, max_entries=100000, clock=clock)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for pid in range(10000):
        reg._insert(ProcessInfo(pid=pid + 10, start_time=1, mappings=[ProcMapping(1, 2, 0, '/x/' + str(pid), '0:0', 1)]))
        reg.on_exit(pid + 10)
    peak = tracemalloc.get_traced_memory()[0]
    clock.t += 2
    reg.expire()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(reg) == 0
    assert after - base < (peak - base) * 0.05, (base, peak, after)


def test_refresh_mappings_keeps_known_when_gone():
    reg = ProcessRegistry()
    reg.refresh(os.getpid())
    info = reg.get(os.getpid())
    info.mappings = []
    assert reg.refresh_mappings(os.getpid()) and info.mappings
    assert info.find_mapping(info.mappings[0].start) == info.mappings[0]
    assert info.find_mapping(1) is None
    assert not reg.refresh_mappings(2 ** 22 + 7)


def test_maps_cache_shares_one_list_per_layout():
    from datadog_checks.host_profiler.receiver.processes import MapsCache

    exec_lines = (
        '55d0c0a01000-55d0c0a05000 r-xp 00001000 08:01 1234 /usr/bin/x\n'
        '7f10000000-7f10001000 r-xp 00000000 08:01 99 /tmp/with space (deleted)\n'
    )
    a = '55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234 /usr/bin/x\n' + exec_lines + '5600-5700 rw-p 0 00:00 0 [heap]\n'
    b = exec_lines + '5600-5900 rw-p 0 00:00 0 [heap]\nbad line\n'  # another heap: the same layout
    cache = MapsCache(max_entries=4)
    la = cache.parse(a)
    assert la == parse_maps(a) and [m.path for m in la] == ['/usr/bin/x', '/tmp/with space (deleted)']
    assert cache.parse(b) is la and cache.hits == 1
    # a process that just exec'd is parsed again, and its list replaces the cached one
    lf = cache.parse(b, fresh=True)
    assert lf == la and lf is not la and cache.parse(a) is lf
    # bounded
    for i in range(10):
        cache.parse('{:x}-{:x} r-xp 0 08:01 {} /lib/{}\n'.format(0x1000 * (i + 1), 0x1000 * (i + 2), i + 1, i))
    assert len(cache) <= 4


def test_forked_children_share_mappings_and_refresh_keeps_the_list():
    code = 'import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        time.sleep(30)\n        os._exit(0)\ntime.sleep(30)\n'
    parent = subprocess.Popen([sys.executable, '-c', code])
    try:
        deadline = time.monotonic() + 10
        kids = []
        while time.monotonic() < deadline:
            try:
                with open('/proc/{}/task/{}/children'.format(parent.pid, parent.pid)) as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                kids = []
            if len(kids) == 3:
                break
            time.sleep(0.05)
        assert len(kids) == 3
        reg = ProcessRegistry()
        infos = [reg.refresh(pid)[0] for pid in kids]
        assert all(i is not None and i.mappings for i in infos)
        assert infos[1].mappings is infos[0].mappings and infos[2].mappings is infos[0].mappings
        before = infos[0].mappings
        assert reg.refresh_mappings(kids[0]) and infos[0].mappings is before  # unchanged: same object
        # exec'd: parsed afresh (equal content, its own list)
        fresh, _ = reg.refresh(kids[1], fresh=True)
        assert fresh.mappings == before and fresh.mappings is not before
    finally:
        parent.kill()
        parent.wait()


def test_read_process_non_utf8_path(tmp_path):
    # a mapped file whose name is not UTF-8 must not fail the read
    name = os.path.join(os.fsencode(str(tmp_path)), b'lib\xff.so')
    with open(name, 'wb') as f:
        f.write(b'\0' * 8192)
    code = 'import mmap, os, sys, time\nf = open(sys.argv[1], "rb")\nm = mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ | mmap.PROT_EXEC)\nprint("ok", flush=True)\ntime.sleep(30)\n'
    p = subprocess.Popen([sys.executable, '-c', code, name], stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline().strip() == b'ok'
        info = read_process(p.pid)
        assert info is not None and any('lib' in m.path and '\ufffd' in m.path for m in info.mappings)
    finally:
        p.kill()
        p.wait()
