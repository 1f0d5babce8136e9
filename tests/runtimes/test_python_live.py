# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Python functions in real stacks, end to end: the real BPF sampler walks the frames of every
CPython on this machine at once (pyenv 3.8-3.13, shared libpython; Debian's static, stripped,
non-PIE 3.11; an interpreter run through a symlink), user space names them, and the profile builder
puts them where the native `_PyEval_EvalFrameDefault` frames were."""
import collections
import os
import subprocess

import pytest

from datadog_checks.host_profiler.profile.builder import build_profile
from datadog_checks.host_profiler.profile.model import FRAME_CPYTHON
from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.symbols.symbolizer import Symbolizer
from tests.workloads.pythons import DEBIAN_PYTHON, interpreters, pyenv_python, wait_python_registered

from tests import REPO_ROOT

pytestmark = [pytest.mark.integration]

HERE = os.path.join(REPO_ROOT, 'tests')
PYSPLIT = os.path.join(HERE, 'workloads', 'pysplit.py')
PYMIX = os.path.join(HERE, 'workloads', 'pymix.py')
SECONDS = 12.0
# The known split at 2 points (issue #16): a share over n samples has a standard deviation of
# 43.3/sqrt(n) points (p = 0.75), so 2 points is 3 standard deviations from n = 4,200 on. The split
# workloads run SPLIT_CPU seconds of their main thread's CPU time (not wall time: the count does not
# depend on the host's load) under a receiver at SPLIT_HZ: ~6,000 samples each, sigma 0.56 points.
SPLIT_HZ = 999
SPLIT_CPU = 6
SPLIT_TOLERANCE = 2.0
SPLIT_MIN_SAMPLES = 4200
# how long the workloads may take (CPU-time bound workloads on a loaded 2-core host)
WAIT = 300
# the workloads wait for a start file, written once the receiver runs (WARM_UP is replaced by its path)
WARM_UP = '<go>'
EVAL = '_PyEval_EvalFrameDefault'




def _profile(tmp_path, commands, whole_host=False, **receiver):
    """{label: [(root-first frames, count, tid)]} of the commands run at once under one receiver
    (and {'pid:N': ...} for every other process sampled, with ``whole_host``). The pysplit.py
    workloads start their program once the profiler walks their frames (their warm-up thread gets
    them sampled, hence registered) and only their main thread's samples are kept: every sample
    of the program comes from a process the profiler knew, as for a long-running service."""
    from datadog_checks.host_profiler.receiver.receiver import Receiver, ReceiverConfig

    tel = Telemetry()
    go = tmp_path / 'go'  # the workloads wait for it: they run once the program is loaded
    procs = {label: subprocess.Popen([str(go) if a == WARM_UP else a for a in cmd], stdout=subprocess.DEVNULL)
             for label, cmd in commands.items()}
    main_only = {label for label, cmd in commands.items() if PYSPLIT in cmd and WARM_UP in cmd}
    cfg = dict(samples_per_second=99, drain_interval=0.5, check_interval=0, lock_path=str(tmp_path / 'hp.lock'),
               pids=[] if whole_host else [p.pid for p in procs.values()])
    cfg.update(receiver)
    rx = Receiver(ReceiverConfig(**cfg), telemetry=tel)
    try:
        rx.start()
        registered = wait_python_registered(rx, [procs[label].pid for label in main_only], 30)
        print('pysplit workloads registered before the start signal:', registered)
        go.write_text('')
        for p in procs.values():
            p.wait(WAIT)
    finally:
        rx.stop(block=True, timeout=60)  # its last drains take what was counted until then
        col = rx.collect()
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    sym = Symbolizer(tel)
    profile = build_profile(col.samples, col.processes.get, sym.symbolize_user, sym.symbolize_kernel,
                            time_unix_nano=0, duration_nano=1, period_nano=1)
    by_pid = {r.pid: r for r in profile.resources}
    out = {}
    for label, p in procs.items():
        r = by_pid.pop(p.pid, None)
        out[label] = [(list(reversed(s.frames)), s.value, s.thread_id) for s in (r.samples if r else [])
                      if label not in main_only or s.thread_id == p.pid]
    for pid, r in by_pid.items():
        out['pid:{}'.format(pid)] = [(list(reversed(s.frames)), s.value, s.thread_id) for s in r.samples]
    return out, tel


def _names(frames):
    return [f.function for f in frames]


def _chain_ok(frames, depth):
    """'heavy' or 'light' when the Python frames read <module>;main;[Worker.]run;descend x depth+1;
    heavy|light;spin in this order (up to 3.10 native frames of the interpreter sit between them:
    every Python call is a C call there), else None."""
    n = [f.function for f in frames if f.kind == FRAME_CPYTHON]
    if n[:2] != ['<module>', 'main'] or n[2:3] not in (['Worker.run'], ['run']):
        return None
    if n[3:4 + depth] != ['descend'] * (depth + 1) or n[4 + depth:5 + depth] not in (['heavy'], ['light']):
        return None
    if n[5 + depth:] != ['spin']:
        return None
    return n[4 + depth]


# Interpreter start-up and shutdown: no function of the program runs there, whoever profiles it
OUTSIDE_PROGRAM = {'_dl_start', 'pymain_init', 'Py_InitializeFromConfig', 'Py_FinalizeEx', 'Py_InitializeEx'}


def _in_program(frames):
    return not any(f.function in OUTSIDE_PROGRAM for f in frames)


# The BPF program walks a process's frames once user space has detected it, at its first sample;
# the samples before (tens of ms on an idle host, up to a few hundred ms when the receiver's thread
# is busy unwinding on a loaded 2-core host) have native frames only. The split workloads start
# their program once registered (see _profile), so their samples must all be walked (the issue's
# 95%), and carry the whole chain.
MIN_WALKED = 0.95
# a process that starts while the profiler runs: walked from its registration on
LATE_MIN_WALKED = 0.7


def _walked(frames):
    return any(f.kind == FRAME_CPYTHON for f in frames)


def _check_split(label, samples, depth=5, min_samples=10, min_walked=MIN_WALKED, tolerance=None):
    """(walked samples, samples with the whole chain, heavy's share of heavy + light in %). With
    ``tolerance`` (points), heavy must be within it of 75 (enough samples for it are the caller's
    business); without, within 2 points or 3 standard deviations, whichever is larger."""
    samples = [s for s in samples if _in_program(s[0])]
    everything = sum(c for _, c, _ in samples)
    walked = sum(c for f, c, _ in samples if _walked(f))
    print('{}: {} of {} samples walked'.format(label, walked, everything))
    assert walked >= min_walked * everything, '{}: {} of {} samples with Python frames'.format(
        label, walked, everything)
    samples = [s for s in samples if _walked(s[0])]
    total = sum(c for _, c, _ in samples)
    assert total >= min_samples, '{}: only {} samples'.format(label, total)
    split = collections.Counter()
    for frames, c, _ in samples:
        which = _chain_ok(frames, depth)
        if which:
            split[which] += c
    good = sum(split.values())
    top = collections.Counter()
    for frames, c, _ in samples:
        top[';'.join(f.display_name for f in frames[-12:])] += c
    assert good >= 0.95 * total, '{}: {} of {} samples with the whole chain; top: {}'.format(
        label, good, total, top.most_common(5))
    heavy = 100.0 * split['heavy'] / good
    # 3:1 by construction (pysplit.py: heavy runs light's spin three times)
    tol = tolerance if tolerance is not None else max(2.0, 300.0 * (0.75 * 0.25 / good) ** 0.5)
    assert abs(heavy - 75.0) <= tol, '{}: heavy {:.1f}% of {} (want 75 +- {:.1f})'.format(label, heavy, good, tol)
    return total, good, heavy


def _symlink(tmp):
    link = tmp / 'bin' / 'python'  # a venv-like symlink: /proc/PID/maps shows the real file
    link.parent.mkdir()
    link.symlink_to(pyenv_python(12) or DEBIAN_PYTHON)
    return str(link)


@pytest.fixture(scope='module')
def auto_run(requires_bpf, tmp_path_factory):
    """Every interpreter's split, deep recursion and the mixed programs at once, at 99 Hz: the
    layout of the frames (native and Python interleaved), names, lines, truncation, threads."""
    tmp = tmp_path_factory.mktemp('pyauto')
    commands = {}
    for label, path in interpreters():
        if path and os.path.exists(path):
            commands[label] = [path, PYSPLIT, str(SECONDS), '5', WARM_UP]
    commands['symlink'] = [_symlink(tmp), PYSPLIT, str(SECONDS), '5', WARM_UP]
    commands['deep'] = [pyenv_python(12) or DEBIAN_PYTHON, PYSPLIT, str(SECONDS), '150', WARM_UP]
    commands['mix-debian'] = [DEBIAN_PYTHON, PYMIX, str(SECONDS), WARM_UP]
    if pyenv_python(13):
        commands['mix-3.13'] = [pyenv_python(13), PYMIX, str(SECONDS), WARM_UP]
    return _profile(tmp, commands, unwinding='auto')


@pytest.fixture(scope='module')
def split_run(requires_bpf, tmp_path_factory):
    """Every interpreter's split alone, at SPLIT_HZ, each for SPLIT_CPU seconds of CPU time: the
    shares at 2 points. (Not in ``auto_run``: at 999 Hz with the mixed programs too, the in-kernel
    unwinder loads a dozen processes' tables while their samples go through the stack-copy ring,
    which overflows on a loaded 2-core host (`sampler.lost{reason:user_stack_copy_lost}`) and
    those samples lose their native frames; the Python frames and the shares are not affected.)"""
    tmp = tmp_path_factory.mktemp('pysplit')
    commands = {}
    for label, path in interpreters():
        if path and os.path.exists(path):
            commands[label] = [path, PYSPLIT, '{}cpu'.format(SPLIT_CPU), '5', WARM_UP]
    commands['symlink'] = [_symlink(tmp), PYSPLIT, '{}cpu'.format(SPLIT_CPU), '5', WARM_UP]
    return _profile(tmp, commands, unwinding='auto', samples_per_second=SPLIT_HZ)


def _installed(label, path):
    if label != 'symlink' and not (path and os.path.exists(path)):
        if label.startswith('debian'):
            pytest.fail('Debian python3.11 is missing: run scripts/setup.sh')
        pytest.skip('{} is not installed here (pyenv install it to test it)'.format(label))


@pytest.mark.parametrize('label,path', interpreters() + [('symlink', '')])
def test_known_split_auto(split_run, label, path):
    """Issue #16: heavy's share of heavy + light within 2 points of 75 (3 standard deviations at
    least: SPLIT_MIN_SAMPLES), 95% of the samples walked and 95% with the whole chain."""
    _installed(label, path)
    samples = split_run[0][label]
    everything = sum(c for f, c, _ in samples if _in_program(f))
    total, good, heavy = _check_split(label, samples, min_samples=SPLIT_MIN_SAMPLES, tolerance=SPLIT_TOLERANCE)
    sigma = 100.0 * (0.75 * 0.25 / good) ** 0.5
    print('known split {}: {} samples in the program, {} walked, {} with the whole chain, heavy {:.2f}% '
          '(truth 75, sigma {:.2f}, off by {:.2f} sigma)'.format(label, everything, total, good, heavy, sigma,
                                                                abs(heavy - 75) / sigma))
    assert good >= SPLIT_MIN_SAMPLES, '{}: {} samples with the whole chain, 2 points needs {}'.format(
        label, good, SPLIT_MIN_SAMPLES)


@pytest.mark.parametrize('label,path', interpreters() + [('symlink', '')])
def test_python_frames_replace_the_eval_loop(auto_run, label, path):
    """The Python frames sit where the eval loop was: no eval-loop frame left between them, and
    below <module> the native frames that ran the module (no eval-loop frame either)."""
    _installed(label, path)
    samples = auto_run[0][label]
    _check_split(label, samples)  # walked and whole chain (95%); the shares here are over ~100 samples
    with_chain = [(f, c) for f, c, _ in samples if _chain_ok(f, 5)]
    leftover = sum(c for f, c in with_chain if EVAL in _names(f))
    assert leftover <= 0.05 * sum(c for _, c in with_chain), label
    below = 0
    for frames, _ in with_chain:
        i = _names(frames).index('<module>')
        # a native caller under <module> (not when a stack copy was lost and the sample fell back to
        # a frame-pointer walk, or the native unwinding stopped early)
        below += i > 0 and frames[i - 1].kind != FRAME_CPYTHON and frames[i - 1].function != EVAL
        assert all(f.source_file.endswith('pysplit.py') and f.line > 0 for f in frames[i:] if f.kind == FRAME_CPYTHON)
    assert below >= 0.8 * len(with_chain), (label, below, len(with_chain))


def test_lines_are_those_of_the_calls(auto_run):
    samples = auto_run[0]['debian-3.11']
    lines = collections.Counter()
    for frames, c, _ in samples:
        for f in frames:
            if f.kind == FRAME_CPYTHON and f.function in ('main', 'heavy', 'light', '<module>'):
                lines[(f.function, f.line)] += c
    src = open(PYSPLIT).read().splitlines()
    # main's calls: the program, or the wait for the start signal (its main thread polls a file)
    calls = {'main': ('Worker().run', 'warm_up()'), 'heavy': ('spin(N) + spin(N) + spin(N)',), 'light': ('spin(N)',),
             '<module>': ('main()',)}
    for (func, line), _ in lines.items():
        text = src[line - 1]
        assert any(call in text for call in calls[func]), (func, line, text)


def test_deep_recursion_is_truncated_and_marked(auto_run):
    samples, tel = auto_run
    deep = [s for s in samples['deep'] if _in_program(s[0]) and _walked(s[0])]
    total = sum(c for _, c, _ in deep)
    marked = sum(c for f, c, _ in deep if '[python stack truncated]' in _names(f))
    leafy = sum(c for f, c, _ in deep if [x.function for x in f if x.kind == FRAME_CPYTHON][-2:]
                in (['heavy', 'spin'], ['light', 'spin']))
    assert total >= 10 and marked >= 0.8 * total and leafy >= 0.8 * total, (total, marked, leafy)
    assert tel.total('runtime.python.truncated_stacks') > 0


def test_threads_generators_asyncio_and_c_callbacks(auto_run):
    for label in ('mix-debian', 'mix-3.13'):
        if label not in auto_run[0]:
            continue
        samples = auto_run[0][label]
        by_thread = collections.defaultdict(list)
        for frames, c, tid in samples:
            by_thread[tid].append((_names(frames), frames, c))

        def seen(pred):
            return sum(c for stacks in by_thread.values() for n, f, c in stacks if pred(n, f))

        def inorder(n, *names):
            pos = [n.index(x) if x in n else -1 for x in names]
            return all(p >= 0 for p in pos) and pos == sorted(pos)

        # a C function (sorted) between two Python frames: sorter;<native...>;key_fn
        def callback(n, f):
            if not inorder(n, 'sorter', 'key_fn', 'spin'):
                return False
            between = f[n.index('sorter') + 1:n.index('key_fn')]
            return any(x.kind != FRAME_CPYTHON for x in between)

        assert seen(callback) >= 5, label
        assert seen(lambda n, f: inorder(n, 'generator_consumer', 'numbers', 'spin')) >= 5, label
        assert seen(lambda n, f: inorder(n, 'coro_main', 'coro_leaf', 'spin')) >= 5, label
        # each thread shows its own stack: no sample mixes two threads' functions
        roots = ('sorter', 'generator_consumer', 'asyncio_thread')
        for stacks in by_thread.values():
            for n, _, _ in stacks:
                assert sum(1 for r in roots if r in n) <= 1, n


def test_metrics(auto_run):
    _, tel = auto_run
    assert tel.total('runtime.python.walks') > 0 and tel.total('runtime.python.frames') > 0
    totals = tel.totals()
    for minor in (8, 9, 10, 11, 12, 13):
        if pyenv_python(minor):
            assert totals.get('runtime.python.processes{python_version:3.%d}' % minor, 0) >= 1, minor


def test_frame_pointers_mode_puts_python_on_top(requires_bpf, tmp_path):
    """frame_pointers: the kernel's walk cannot pass the eval loop (no build keeps rbp there), so
    the Python frames go below the last eval-loop frame instead of what the walk found after it."""
    commands = {'debian-3.11': [DEBIAN_PYTHON, PYSPLIT, str(SECONDS), '5', WARM_UP]}
    if pyenv_python(12):
        commands['pyenv-3.12'] = [pyenv_python(12), PYSPLIT, str(SECONDS), '5', WARM_UP]
    samples, _ = _profile(tmp_path, commands, unwinding='frame_pointers')
    for label, s in samples.items():
        s = [x for x in s if _in_program(x[0])]
        assert sum(c for f, c, _ in s if _walked(f)) >= MIN_WALKED * sum(c for _, c, _ in s), label
        s = [x for x in s if _walked(x[0])]
        total = sum(c for _, c, _ in s)
        good = collections.Counter()
        for frames, c, _ in s:
            which = _chain_ok(frames, 5)
            # the Python frames start the stack (what the walk found below the eval loop is dropped)
            # and no eval-loop frame is left; native frames the leaf called stay on top
            if which and frames[0].function == '<module>' and EVAL not in _names(frames):
                good[which] += c
        assert total >= 10 and sum(good.values()) >= 0.95 * total, (label, total, good)


def test_fork_child_gets_its_own_python_stacks(requires_bpf, tmp_path):
    """A forked child is a new process with the parent's memory: detected at its first sample."""
    samples, _ = _profile(tmp_path, {'parent': [DEBIAN_PYTHON, os.path.join(HERE, 'workloads', 'pyfork.py'),
                                                str(SECONDS / 2), WARM_UP]}, whole_host=True, unwinding='auto')

    def share(stacks, fn):
        total = sum(c for f, c, _ in stacks if _in_program(f))
        return total, sum(c for f, c, _ in stacks if _in_program(f) and fn in _names(f))

    total, parent = share(samples['parent'], 'parent_work')
    assert total >= 10 and parent >= 0.7 * total, (total, parent)
    children = [(k, share(v, 'child_work')) for k, v in samples.items() if k.startswith('pid:')]
    child = [(k, t, n) for k, (t, n) in children if n]
    assert len(child) == 1, children
    _, t, n = child[0]
    assert t >= 10 and n >= 0.7 * t, child


def test_interpreter_in_a_chroot_of_its_own_mount_namespace(requires_bpf, tmp_path):
    """A container-like process: its interpreter's path exists only in its own mount namespace
    and root, so only /proc/PID/root finds the file."""
    import shutil

    if not shutil.which('unshare') or not shutil.which('chroot'):
        pytest.skip('needs unshare and chroot (util-linux, coreutils)')
    root = tmp_path / 'root'
    for d in ('usr', 'lib', 'lib64', 'etc', 'work', 'opt/hidden'):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / 'opt/hidden/python3.11').touch()
    shutil.copy(PYSPLIT, root / 'work' / 'pysplit.py')
    script = ('mount --bind /usr {r}/usr && mount --bind /lib {r}/lib && mount --bind /lib64 {r}/lib64 && '
              'mount --bind /etc {r}/etc && mount --bind {py} {r}/opt/hidden/python3.11 && '
              'while [ ! -e {go} ]; do sleep 0.01; done && '
              'exec chroot {r} /opt/hidden/python3.11 /work/pysplit.py {s} 5 0').format(
                  r=root, py=DEBIAN_PYTHON, s=SECONDS / 2, go=tmp_path / 'go')  # _profile writes go
    cmd = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script]
    samples, tel = _profile(tmp_path, {'chroot': cmd}, unwinding='auto')
    assert not os.path.exists('/opt/hidden/python3.11')
    s = [x for x in samples['chroot'] if _in_program(x[0])]
    total = sum(c for _, c, _ in s)
    good = sum(c for f, c, _ in s if _chain_ok(f, 5))
    assert total >= 10 and good >= 0.8 * total, (total, good)
    assert all(f.source_file == '/work/pysplit.py' for f, _, _ in s for f in f if f.kind == FRAME_CPYTHON
               and f.function == 'heavy')


def _profile_started_after(tmp_path, commands):
    """Like ``_profile``, but each command starts (one after the other) once the receiver samples:
    {label: [(root-first frames, count, tid)]}, and the receiver's telemetry."""
    import time

    from datadog_checks.host_profiler.receiver.receiver import Receiver, ReceiverConfig

    tel = Telemetry()
    rx = Receiver(ReceiverConfig(samples_per_second=99, drain_interval=0.5, check_interval=0, unwinding='auto',
                                 lock_path=str(tmp_path / 'hp.lock')), telemetry=tel)
    procs = {}
    try:
        rx.start()  # returns once the BPF program is attached
        for label, cmd in commands.items():
            procs[label] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
            procs[label].wait(SECONDS + 60)
        time.sleep(0.5)
    finally:
        rx.stop(block=True, timeout=60)
        col = rx.collect()
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    sym = Symbolizer(tel)
    profile = build_profile(col.samples, col.processes.get, sym.symbolize_user, sym.symbolize_kernel,
                            time_unix_nano=0, duration_nano=1, period_nano=1)
    by_pid = {r.pid: r for r in profile.resources}
    return {label: [(list(reversed(s.frames)), s.value, s.thread_id) for s in by_pid[p.pid].samples]
            if p.pid in by_pid else [] for label, p in procs.items()}, tel


def test_python_started_after_the_profiler(requires_bpf, tmp_path):
    """A process that execs while the profiler runs is detected at its first sample, like one
    that was there before: the same whole chain and split."""
    samples, _ = _profile_started_after(tmp_path, {'late': [DEBIAN_PYTHON, PYSPLIT, str(SECONDS / 3), '5']})
    # its samples before the receiver registers it (its first sample's event, then /proc) are native only
    _check_split('late', samples['late'], min_walked=LATE_MIN_WALKED)


SHORT_LIVED_S = 0.3


def test_python_living_0_3_seconds_is_named(requires_bpf, tmp_path):
    """Processes that run the program for 0.3 s and exit: the BPF program walks their frames from
    the first drain that registers them (a drain waits for no interval: the first sample of a new
    process wakes it), and the prefetch thread reads their code objects every 200 ms, before they
    exit. The samples taken before the registration keep native frames only."""
    commands = {'short-{}'.format(i): [DEBIAN_PYTHON, PYSPLIT, str(SHORT_LIVED_S), '5'] for i in range(3)}
    samples, tel = _profile_started_after(tmp_path, commands)
    report = {}
    for label, stacks in samples.items():
        stacks = [s for s in stacks if _in_program(s[0])]
        total = sum(c for _, c, _ in stacks)
        walked = sum(c for f, c, _ in stacks if _walked(f))
        named = sum(c for f, c, _ in stacks if _chain_ok(f, 5))
        unknown = sum(c for f, c, _ in stacks if any(x.function == '[unknown python code]' for x in f))
        report[label] = (total, walked, named, unknown)
    print('0.3 s processes: (samples in the program, walked, whole chain named, unknown code):', report)
    for label, (total, walked, named, unknown) in report.items():
        assert total >= 10, (label, report)
        # a walked sample names the whole chain, or says its code objects could not be read
        # (the process exited before the prefetch thread read them): never a wrong name
        assert named + unknown >= 0.9 * walked, (label, report)
    # Measured (docs/benchmarks.md, "Session 5: Python frames cost on a quieter machine"): most
    # processes are walked from their first drain on and named; in about one in ten, either no
    # sample is walked (each process is forked from this Python test process and sampled before
    # its exec: the suspected cause is the order of its exec event and its post-exec first sample)
    # or the walks start so late that the process exits before the prefetch thread (every 200 ms)
    # reads its code objects. Until those are fixed, 2 of 3 must be walked and named.
    assert sum(1 for r in report.values() if r[2] and r[2] >= 0.9 * r[1]) >= 2, report
    walked_share = sum(r[1] for r in report.values()) / sum(r[0] for r in report.values())
    assert walked_share >= 0.5, report
