# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Python runtime, without BPF: line tables against CPython's own answers, code-object reads from
real interpreters' memory and from random bytes, interleaving, detection, BTF offsets."""
import contextlib
import json
import os
import random
import struct
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datadog_checks.host_profiler.profile.builder import interleave
from datadog_checks.host_profiler.profile.model import FRAME_CPYTHON, Frame, RuntimeStack
from datadog_checks.host_profiler.runtimes.base import MemoryReadError
from datadog_checks.host_profiler.runtimes.python.code import BadObject, CodeCache, read_code
from datadog_checks.host_profiler.runtimes.python.lines import line_310, line_311, line_lnotab
from datadog_checks.host_profiler.runtimes.python.offsets import OFFSETS

from tests.workloads.pythons import interpreters

from tests import REPO_ROOT

HERE = os.path.join(REPO_ROOT, 'tests')
WORKLOADS = os.path.join(HERE, 'workloads')


def _require(path):
    if not path or not os.path.exists(path):
        if path.startswith('/usr/bin'):
            pytest.fail('Debian python3.11 is missing: run scripts/setup.sh')
        pytest.skip('interpreter not installed here (pyenv install it to test it)')


@pytest.mark.parametrize('label,path', interpreters())
def test_line_tables_match_cpython(label, path):
    _require(path)
    out = subprocess.run([path, os.path.join(WORKLOADS, 'pylines_dump.py')], capture_output=True, check=True,
                         timeout=120).stdout
    data = json.loads(out)
    minor = data['version'][1]
    decode = line_311 if minor >= 11 else line_310 if minor == 10 else line_lnotab
    checked = mismatched = 0
    for co in data['codes']:
        table = bytes.fromhex(co['table'])
        for pos, line in co['expected']:
            checked += 1
            if decode(table, co['first'], pos) != line:
                mismatched += 1
    assert checked > 5000
    assert mismatched == 0, '{}: {} of {} positions'.format(label, mismatched, checked)


class BytesMemory:
    """A ProcessMemory over a bytes image mapped at `base` (what the fuzz test feeds the reader)."""

    def __init__(self, data, base=0x10000):
        self.data, self.base = data, base

    def read(self, pid, address, size):
        off = address - self.base
        if address <= 0 or size <= 0 or off < 0 or off + size > len(self.data):
            raise MemoryReadError(14, 'outside the image')
        return self.data[off:off + size]


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=4096), st.sampled_from(sorted(OFFSETS)), st.integers(0, 4096))
def test_code_reader_survives_random_memory(data, minor, at):
    mem = BytesMemory(data)
    try:
        info = read_code(mem, 1, 0x10000 + at, OFFSETS[minor], 0)
    except (BadObject, MemoryReadError):
        return
    assert isinstance(info.name, str) and isinstance(info.filename, str) and info.firstlineno > 0


def test_code_reader_random_pointers_into_random_heap():
    """Pointers that land inside the image: every field is garbage but readable."""
    rnd = random.Random(7)
    base = 0x10000
    for _ in range(2000):
        data = bytearray(rnd.getrandbits(8) for _ in range(2048))
        for off in range(0, 2048 - 8, 8):  # plant pointers back into the image
            if rnd.random() < 0.5:
                struct.pack_into('<Q', data, off, base + rnd.randrange(0, 2000))
        mem = BytesMemory(bytes(data), base)
        try:
            read_code(mem, 1, base + rnd.randrange(0, 1900), OFFSETS[rnd.choice(sorted(OFFSETS))], 0)
        except (BadObject, MemoryReadError):
            pass


def _frame(name):
    return Frame(name, 0, FRAME_CPYTHON, None, 'x.py', 1)


def _native(name):
    return Frame(name, 0x1000)


def test_interleave_replaces_eval_frames_in_order():
    native = [_native('leaf_c'), _native('_PyEval_EvalFrameDefault'), _native('sorted'),
              _native('_PyEval_EvalFrameDefault'), _native('main')]
    rs = RuntimeStack(((_frame('key_fn'),), (_frame('work'), _frame('<module>'))),
                      frozenset({'_PyEval_EvalFrameDefault'}))
    got = [f.function for f in interleave(native, rs)]
    assert got == ['leaf_c', 'key_fn', 'sorted', 'work', '<module>', 'main']


def test_interleave_frame_pointers_puts_the_rest_at_the_root():
    native = [_native('leaf_c'), _native('_PyEval_EvalFrameDefault'), _native('garbage')]
    segs = ((_frame('a'),), (_frame('b'),), (_frame('c'),))
    fp = RuntimeStack(segs, frozenset({'_PyEval_EvalFrameDefault'}), native_ends_at_interpreter=True)
    assert [f.function for f in interleave(native, fp)] == ['leaf_c', 'a', 'b', 'c']
    one_segment = RuntimeStack(segs[:1], frozenset({'_PyEval_EvalFrameDefault'}), native_ends_at_interpreter=True)
    assert [f.function for f in interleave(native, one_segment)] == ['leaf_c', 'a']
    dwarf = RuntimeStack(segs, frozenset({'_PyEval_EvalFrameDefault'}))
    assert [f.function for f in interleave(native, dwarf)] == ['leaf_c', 'a', 'garbage', 'b', 'c']
    # more eval frames than segments: the extra ones stay native
    native2 = [_native('_PyEval_EvalFrameDefault'), _native('_PyEval_EvalFrameDefault')]
    one = RuntimeStack(((_frame('a'),),), frozenset({'_PyEval_EvalFrameDefault'}))
    assert [f.function for f in interleave(native2, one)] == ['a', '_PyEval_EvalFrameDefault']


def test_btf_fsbase_offset_matches_bpftool():
    from datadog_checks.host_profiler.host.btf import task_fsbase_offset

    if not os.path.exists('/sys/kernel/btf/vmlinux'):
        pytest.skip('kernel without BTF')
    raw = subprocess.run(['bpftool', 'btf', 'dump', 'file', '/sys/kernel/btf/vmlinux', 'format', 'raw'],
                         capture_output=True, text=True, check=True).stdout.splitlines()

    def member(struct_name, name):
        start = next(i for i, text in enumerate(raw) if "STRUCT '{}'".format(struct_name) in text)
        for line in raw[start + 1:]:
            if not line.startswith('\t'):
                break
            if line.strip().startswith("'{}'".format(name)):
                return int(line.split('bits_offset=')[1].split()[0]) // 8
        raise AssertionError(name)

    assert task_fsbase_offset(cache_path=None) == member('task_struct', 'thread') + member('thread_struct', 'fsbase')


@contextlib.contextmanager
def known_method_process(path, tmp_path):
    """A Python process of ``path`` that defines ``K.method`` at line 5 of its script and prints
    its code object's address: (process, script, that address); killed on exit."""
    script = tmp_path / 'known.py'
    script.write_text('import sys, time\n\n\nclass K:\n    def method(self):\n        pass\n\n\n'
                      'sys.stdout.write("%d\\n" % id(K.method.__code__))\nsys.stdout.flush()\ntime.sleep(30)\n')
    proc = subprocess.Popen([path, str(script)], stdout=subprocess.PIPE)
    try:
        yield proc, script, int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize('label,path', interpreters())
def test_detect_and_read_code_objects_of_a_live_interpreter(label, path, tmp_path):
    """Detection (version, _PyRuntime), then the code object of a known function read from the
    process's memory gives its name, file and first line; a reused address is noticed."""
    _require(path)
    from datadog_checks.host_profiler.receiver.processes import read_process
    from datadog_checks.host_profiler.runtimes.base import ProcessMemory
    from datadog_checks.host_profiler.runtimes.python.detect import detect

    with known_method_process(path, tmp_path) as (proc, script, code_addr):
        interp = detect(read_process(proc.pid))
        assert interp is not None and interp.version == label.split('-')[1]
        off = OFFSETS[interp.file.minor]
        mem = ProcessMemory()
        info = CodeCache().get(mem, proc.pid, code_addr, off, interp.code_type, {})
        assert info.name == ('K.method' if interp.file.minor >= 11 else 'method')
        assert info.filename == str(script) and info.firstlineno == 5
        with pytest.raises(BadObject):  # the type object is no code object
            read_code(mem, proc.pid, interp.code_type, off, interp.code_type)


@pytest.mark.parametrize('label,path', interpreters()[:1] + interpreters()[-1:])
def test_resolved_stack_kept_across_drains_until_its_code_is_replaced(label, path, tmp_path):
    """A Python stack resolved at one drain is the same RuntimeStack at the next ones (not built
    again) while its code objects pass the per-drain reuse check; a code object found replaced
    (or the process dropped) builds it afresh."""
    _require(path)
    import datadog_checks.host_profiler.runtimes.python as pymod
    from datadog_checks.host_profiler.receiver.processes import read_process
    from datadog_checks.host_profiler.runtimes.python.detect import detect

    with known_method_process(path, tmp_path) as (proc, _, code_addr):
        info = read_process(proc.pid)
        interp = detect(info)
        rt = pymod.PythonRuntime()
        rt._procs[proc.pid] = (info.start_time, len(info.mappings), interp, OFFSETS[interp.file.minor])
        raw = ('cpython', ((code_addr, 0xFFFFFFFF, pymod.SEGMENT_END),), False)
        first = rt.resolve(proc.pid, raw)
        assert first.segments[0][0].function.endswith('method') and first.segments[0][0].line == 5
        rt.end_drain()
        again = rt.resolve(proc.pid, ('cpython', tuple(raw[1]), False))  # an equal tuple, another object
        assert again is first
        rt.end_drain()
        rt.codes._entries[(proc.pid, code_addr)].header = b'replaced'  # the reuse check fails next drain
        rebuilt = rt.resolve(proc.pid, raw)
        assert rebuilt is not first and rebuilt.segments == first.segments
        assert rt._counts.get('code_object_reused') == 1 and rt._counts.get('stacks') == 1
        rt.end_drain()
        assert rt.resolve(proc.pid, raw) is rebuilt
        rt._drop(proc.pid)
        assert not rt._stacks


def test_python_frames_in_otlp_pprof_and_folded():
    """A built profile with interleaved Python frames, through the real encoders."""
    from datadog_checks.host_profiler.profile import otlp, pprof
    from datadog_checks.host_profiler.profile.builder import build_profile
    from datadog_checks.host_profiler.profile.folded import to_folded
    from datadog_checks.host_profiler.profile.model import RawSample

    py = RuntimeStack(((Frame('Worker.spin', 0, FRAME_CPYTHON, None, '/app/w.py', 12),
                        Frame('<module>', 0, FRAME_CPYTHON, None, '/app/w.py', 30)),),
                      frozenset({'_PyEval_EvalFrameDefault'}))
    raw = RawSample(7, 7, 'python3', (0x10, 0x20, 0x30), (), 5, runtime_stack=py)
    names = {0x10: 'PyLong_FromLong', 0x20: '_PyEval_EvalFrameDefault', 0x30: 'Py_RunMain'}
    profile = build_profile([raw], lambda pid: None, lambda proc, addrs: [Frame(names[a], a) for a in addrs],
                            lambda addrs: [], time_unix_nano=1, duration_nano=1, period_nano=1)
    assert to_folded(profile).strip() == 'python3;Py_RunMain;<module>;Worker.spin;PyLong_FromLong 5'
    data = otlp.decode_bytes(otlp.encode_bytes(profile))
    assert not otlp.validate(data)
    d = data.dictionary
    found = {}
    for loc in d.location_table[1:]:
        fn = d.function_table[loc.lines[0].function_index]
        types = {d.string_table[d.attribute_table[i].key_strindex]: d.attribute_table[i].value.string_value
                 for i in loc.attribute_indices}
        found[d.string_table[fn.name_strindex]] = (d.string_table[fn.filename_strindex], loc.lines[0].line,
                                                   loc.mapping_index, types['profile.frame.type'])
    assert found['Worker.spin'] == ('/app/w.py', 12, 0, 'cpython')
    assert found['<module>'] == ('/app/w.py', 30, 0, 'cpython')
    assert found['PyLong_FromLong'][3] == 'native'
    assert b'Worker.spin' in pprof.encode_raw(profile) and b'/app/w.py' in pprof.encode_raw(profile)


def test_prefetch_looks_less_often_once_nothing_is_new(monkeypatch):
    """After IDLE_AFTER_LOOKS looks that read nothing, the prefetch looks once per IDLE_LOOK_S;
    a process registered meanwhile (eager) brings the full cadence back."""
    import datadog_checks.host_profiler.runtimes.python as pymod

    class FakeSampler:
        looks = 0

        def peek_python_stacks(self, seen):
            self.looks += 1
            return []

    clock = [1000.0]
    monkeypatch.setattr(pymod.time, 'monotonic', lambda: clock[0])
    rt = pymod.PythonRuntime()
    s = FakeSampler()
    for _ in range(10):  # every 0.2 s, as the receiver's thread calls it
        rt.prefetch(s)
        clock[0] += 0.2
    # 3 looks, then one per second: at 1000.6 (3 < 1 s after 1000.4: no), 1001.4 (yes)
    assert s.looks == pymod.IDLE_AFTER_LOOKS + 1
    rt._registered_at = clock[0]  # a process registered: eager
    before = s.looks
    rt.prefetch(s)
    clock[0] += 0.2
    rt.prefetch(s)
    assert s.looks == before + 2


def test_py_epoch_is_bumped_after_each_change_to_py_procs():
    """Each CPU keeps copies of py_procs entries (bpf/sampler.c, py_cached_t), believed while
    py_epoch is unchanged: every delete from py_procs must bump it (writes: the live tests, whose
    processes registered after their first sample are walked)."""
    import ctypes as ct

    import datadog_checks.host_profiler.runtimes.python as pymod

    class Table(dict):
        def __init__(self, key, leaf):
            super().__init__()
            self.Key, self.Leaf = key, leaf

        def __getitem__(self, k):
            return super().__getitem__(k.value)

        def __setitem__(self, k, v):
            super().__setitem__(k.value, v)

        def __delitem__(self, k):
            super().__delitem__(k.value)

    class FakeSampler:
        def __init__(self):
            self.procs = Table(ct.c_uint, ct.c_ulonglong)
            self.epoch = Table(ct.c_uint, ct.c_ulonglong)
            self.epoch[ct.c_uint(0)] = ct.c_ulonglong(0)

        def table(self, name):
            return {'py_procs': self.procs, 'py_epoch': self.epoch}.get(name)

    s = FakeSampler()
    rt = pymod.PythonRuntime()
    rt.attach(s)
    s.procs[ct.c_uint(42)] = ct.c_ulonglong(1)
    rt._drop_kernel_state(42)
    assert 42 not in s.procs and s.epoch[ct.c_uint(0)].value == 1
    rt._drop_kernel_state(43)  # not there: still bumped (harmless)
    assert s.epoch[ct.c_uint(0)].value == 2
    rt2 = pymod.PythonRuntime()  # a sampler without the map (older program, fakes): no error
    rt2._bump_epoch()
