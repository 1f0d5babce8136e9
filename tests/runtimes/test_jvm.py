# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Java frames by name from unmodified JVMs (no perf flag): the attach protocol against real JVMs
(as root, as another user, in a container of their own), its failures, and the real sampler on a
JVM whose methods split the CPU 3:1."""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
from tests.workloads import compile_c, compile_java, start, start_java

from datadog_checks.host_profiler import HostProfilerCheck
from datadog_checks.host_profiler.profile.model import FRAME_JVM
from datadog_checks.host_profiler.receiver.processes import ProcMapping, read_process
from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.runtimes import hotspot_attach
from datadog_checks.host_profiler.runtimes.hotspot_attach import AttachError, parse_reply, request, write_perf_map
from datadog_checks.host_profiler.runtimes.jit import jit_frames_of
from datadog_checks.host_profiler.runtimes.jvm import JvmPerfMaps, _Jvm, frame_name, is_hotspot
from datadog_checks.host_profiler.symbols.perfmap import PerfMap
from datadog_checks.host_profiler.symbols.symbolizer import Symbolizer

needs_java = pytest.mark.skipif(not shutil.which('javac'), reason='needs a JDK (scripts/setup.sh installs it)')
needs_root = pytest.mark.usefixtures('requires_root')  # attaching to other users and namespaces


# ------------------------------------------------------------------------------------------ pure


def test_frame_names_drop_the_return_type_only():
    assert frame_name('long JvmSplit.burnA(long)') == 'JvmSplit.burnA(long)'
    assert frame_name('java.lang.Object jdk.internal.misc.Unsafe.getReferenceVolatile(java.lang.Object, long)') \
        == 'jdk.internal.misc.Unsafe.getReferenceVolatile(java.lang.Object, long)'
    assert frame_name('void java.lang.Object.<init>()') == 'java.lang.Object.<init>()'
    assert frame_name('int[] a.B.c(int[][])') == 'a.B.c(int[][])'
    for stub in ('Interpreter', 'StubRoutines (1)', 'I2C/C2I adapters', 'delayed StackOverflowError throw_exception',
                 'native signature handlers', 'x (y)'):
        assert frame_name(stub) == stub


def test_detection_from_mappings():
    def maps(*paths):
        return [ProcMapping(0x1000 * (i + 1), 0x1000 * (i + 2), 0, p) for i, p in enumerate(paths)]

    hotspot = maps('/usr/bin/java', '/usr/lib/jvm/java-17/lib/server/libjvm.so', '')
    assert is_hotspot(hotspot) and jit_frames_of(hotspot).kind == FRAME_JVM
    assert is_hotspot(maps('/opt/jdk/lib/server/libjvm.so (deleted)'))
    assert not is_hotspot(maps('/opt/j9/lib/server/libjvm.so', '/opt/j9/lib/default/libj9vm29.so'))
    assert not is_hotspot(maps('/usr/bin/java-wrapper', '/usr/lib/libjvm.so.bak'))
    assert jit_frames_of(maps('/usr/bin/node', '')).kind == 'v8js'
    assert jit_frames_of(maps('/opt/app/bin/embedder', '/usr/lib/libnode.so.108')).kind == 'v8js'
    assert jit_frames_of(maps('/usr/bin/python3.12', '')).kind == 'jit'


def test_protocol_bytes():
    assert request(('Compiler.perfmap',)) == b'1\0jcmd\0Compiler.perfmap\0\0\0'
    assert parse_reply(b'0\n') == (0, '')
    assert parse_reply(b'-1\njava.lang.IllegalArgumentException: Unknown diagnostic command\n')[0] == -1
    with pytest.raises(AttachError) as e:
        parse_reply(b'garbage')
    assert e.value.reason == 'protocol'


def test_perf_map_of_hotspot_parses(tmp_path):
    """What Compiler.perfmap writes (JDK 17): 0x-prefixed, zero-padded numbers; a name with spaces."""
    path = tmp_path / 'perf-1.map'
    path.write_text('0x00007f2bc0940b80 0x0000000000017de0 Interpreter\n'
                    '0x00007f2bc0ec7620 0x00000000000000b8 long JvmSplit.burnA(long)\n')
    pm = PerfMap(str(path))
    pm.refresh()
    assert pm.lookup(0x7F2BC0940B80 + 0x100) == 'Interpreter'
    assert pm.lookup(0x7F2BC0EC7620 + 0xB7) == 'long JvmSplit.burnA(long)'
    assert pm.lookup(0x7F2BC0EC7620 + 0xB8) is None


# ------------------------------------------------------------------------------- real JVMs, no BPF


@pytest.fixture(scope='module')
def classes(tmp_path_factory):
    if not shutil.which('javac'):
        pytest.skip('needs a JDK (scripts/setup.sh installs it)')
    d = tmp_path_factory.mktemp('jvm_classes')
    os.chmod(str(d), 0o755)  # readable by the other users of these tests
    return compile_java('JvmSplit.java', d)


def _map_lines(path):
    with open(path) as f:
        return [line.rstrip("\n").split(None, 2) for line in f if line.strip()]


def _wait_warm(proc, seconds=2.5):
    time.sleep(seconds)
    assert proc.poll() is None, 'the JVM ended early'


def _unlink(*paths):
    for p in paths:
        try:
            os.unlink(p)
        except OSError:
            pass


@needs_root
def test_attach_writes_the_map_and_no_thread_dump(classes, tmp_path):
    out = tmp_path / 'jvm.out'
    with open(out, 'wb') as f:
        proc = start_java(classes, 'JvmSplit', 30, stdout=f, cwd=str(tmp_path))
    try:
        _wait_warm(proc)
        # the socket of a killed JVM that had this pid: nobody listens on it
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind('/tmp/.java_pid{}'.format(proc.pid))
        stale.close()
        first = write_perf_map(proc.pid)
        assert first.started_listener and first.size > 0
        assert first.path == '/proc/{}/root/tmp/perf-{}.map'.format(proc.pid, proc.pid)
        names = {frame_name(parts[2]) for parts in _map_lines(first.path)}
        assert {'JvmSplit.burnA(long)', 'JvmSplit.burnB(long)', 'Interpreter'} <= names
        assert all(parts[0].startswith('0x') for parts in _map_lines(first.path))
        # the listener runs now: the second attach only connects
        second = write_perf_map(proc.pid, read_process(proc.pid).start_time)
        assert not second.started_listener
        # what a JDK < 17 answers to Compiler.perfmap: the same refusal as any unknown command
        code, output = hotspot_attach.jcmd(proc.pid, 'Compiler.noSuchCommand')
        assert code != 0 and hotspot_attach.command_error('Compiler.perfmap', code, output).reason == 'unsupported'
        # no attach file left behind; SIGQUIT started the listener, it printed no thread dump
        assert not os.path.exists(tmp_path / '.attach_pid{}'.format(proc.pid))
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
        _unlink('/tmp/perf-{}.map'.format(proc.pid), '/tmp/.java_pid{}'.format(proc.pid))
    assert b'Full thread dump' not in out.read_bytes()


@needs_root
def test_attach_as_the_jvms_user(classes, tmp_path):
    """A JVM of another user: the socket and the map are that user's, the profiler stays root."""
    nobody = 65534
    readable = tempfile.mkdtemp(prefix='host-profiler-jvm-')  # pytest's directories are root's only
    os.chmod(readable, 0o755)
    shutil.copy(os.path.join(classes, 'JvmSplit.class'), readable)
    proc = subprocess.Popen(['setpriv', '--reuid={}'.format(nobody), '--regid={}'.format(nobody), '--clear-groups',
                             'java', '-XX:CompileCommand=quiet', '-cp', readable, 'JvmSplit', '30'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd='/')
    try:
        _wait_warm(proc)
        written = write_perf_map(proc.pid)
        st = os.stat(written.path)
        assert st.st_uid == nobody and written.size == st.st_size > 0
        assert os.stat('/tmp/.java_pid{}'.format(proc.pid)).st_uid == nobody
        # '/' is not writable by nobody: the attach file went to /tmp, and is gone
        assert not os.path.exists('/tmp/.attach_pid{}'.format(proc.pid))
        assert os.geteuid() == 0 and os.getegid() == 0  # this thread is root again
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(readable, ignore_errors=True)
        _unlink('/tmp/perf-{}.map'.format(proc.pid), '/tmp/.java_pid{}'.format(proc.pid))


def _container_root(tmp_path, classes):
    """A root file system of its own (the system's directories bind-mounted read-only, an empty /tmp)."""
    root = tmp_path / 'rootfs'
    for d in ('proc', 'tmp', 'work', 'etc', 'usr', 'dev'):
        (root / d).mkdir(parents=True)
    script = ['set -e', 'mount --make-rprivate /']
    for d in ('bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'):
        src = '/' + d
        if os.path.islink(src):  # merged /usr: the same link inside
            os.symlink(os.readlink(src), str(root / d))
        elif os.path.isdir(src):
            (root / d).mkdir()
            script.append('mount --bind -o ro {} {}/{}'.format(src, root, d))
    for d in ('usr', 'etc', 'dev'):
        script.append('mount --rbind /{} {}/{}'.format(d, root, d))
    script += ['mount -t tmpfs tmpfs {}/tmp'.format(root), 'mount --bind {} {}/work'.format(classes, root)]
    return root, script


@needs_root
def test_attach_in_a_container_of_its_own(classes, tmp_path):
    """Own mount and pid namespaces and root: the JVM is pid 1 and writes /tmp/perf-1.map in its /tmp,
    which only /proc/PID/root reaches; the symbolizer names its frames from there."""
    if not shutil.which('unshare'):
        pytest.skip('needs unshare (util-linux)')
    root, script = _container_root(tmp_path, classes)
    script.append('exec chroot {} sh -c "mount -t proc proc /proc && cd /work && exec java '
                  '-XX:CompileCommand=quiet -XX:CompileCommand=dontinline,JvmSplit::burn* -cp /work JvmSplit 30"'
                  .format(root))
    outer = subprocess.Popen(['unshare', '--mount', '--pid', '--fork', 'sh', '-c', '\n'.join(script)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        pid = None
        deadline = time.time() + 10
        while pid is None and time.time() < deadline:
            time.sleep(0.2)
            for child in os.listdir('/proc'):
                if child.isdigit():
                    try:
                        status = open('/proc/{}/status'.format(child)).read()
                        exe = os.readlink('/proc/{}/exe'.format(child))
                    except OSError:
                        continue
                    if exe.endswith('/java') and 'NSpid:\t{}\t1\n'.format(child) in status:
                        pid = int(child)
        assert pid, outer.stderr.read1(4096) if outer.poll() is not None else 'no JVM in the container'
        time.sleep(2.5)
        written = write_perf_map(pid)
        assert written.path == '/proc/{}/root/tmp/perf-1.map'.format(pid)
        assert not os.path.exists('/tmp/perf-1.map') or os.stat('/tmp/perf-1.map').st_ino != os.stat(written.path).st_ino
        burn_a = next(p for p in _map_lines(written.path) if p[2].endswith('JvmSplit.burnA(long)'))
        process = read_process(pid)
        assert process.root == '/proc/{}/root'.format(pid) and is_hotspot(process.mappings)
        frame = Symbolizer(Telemetry(), jit_frames_of=jit_frames_of).symbolize_user(
            process, [int(burn_a[0], 16) + 4])[0]
        assert (frame.function, frame.kind, frame.mapping) == ('JvmSplit.burnA(long)', FRAME_JVM, None)
    finally:
        outer.kill()  # the pid namespace ends with its init (the JVM) gone too
        outer.wait()


@needs_root
def test_attach_failures_are_counted(classes, tmp_path):
    t = Telemetry()
    jvms = JvmPerfMaps(t)
    # not a JVM: it does not catch SIGQUIT, so it is never sent one (it would end it)
    sleeper = start(compile_c('sleeper.c', tmp_path), 30)
    try:
        time.sleep(0.2)
        assert not jvms.attach_now(_Jvm(sleeper.pid, read_process(sleeper.pid).start_time))
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
    # a JVM that exited
    proc = start_java(classes, 'JvmSplit', 0.2)
    start_time = read_process(proc.pid).start_time
    proc.wait()
    gone = _Jvm(proc.pid, start_time)
    assert not jvms.attach_now(gone)
    assert gone.gave_up
    # -Xrs: no SIGQUIT handler, but then HotSpot starts its attach listener at start-up: no signal needed
    xrs = start_java(classes, 'JvmSplit', 30, jvm_args=('-Xrs',))
    try:
        _wait_warm(xrs, 1.5)
        assert jvms.attach_now(_Jvm(xrs.pid, read_process(xrs.pid).start_time))
        assert xrs.poll() is None
    finally:
        xrs.kill()
        xrs.wait()
        _unlink('/tmp/perf-{}.map'.format(xrs.pid), '/tmp/.java_pid{}'.format(xrs.pid))
    totals = t.totals()
    assert totals['jvm.attach.count'] == 3
    assert totals['jvm.attach.errors{reason:no_signal_handler}'] == 1
    assert totals['jvm.attach.errors{reason:gone}'] == 1
    assert t.total('jvm.attach.errors') == 2 and t.total('jvm.perf_map.bytes') > 0


@needs_root
def test_jvm_with_attach_disabled_is_left_alone(classes, tmp_path):
    out = tmp_path / 'out'
    with open(out, 'wb') as f:
        proc = start_java(classes, 'JvmSplit', 30, stdout=f,
                          jvm_args=('-XX:+DisableAttachMechanism', '-XX:CompileCommand=quiet'))
    try:
        _wait_warm(proc, 1.5)
        with pytest.raises(AttachError) as e:
            write_perf_map(proc.pid)
        assert e.value.reason == hotspot_attach.ATTACH_DISABLED
    finally:
        proc.kill()
        proc.wait()
    assert b'thread dump' not in out.read_bytes()


# ---------------------------------------------------------------------------------- the real sampler


def _jvm_instance(tmp_path, pid):
    return {
        'mode': 'standalone',
        'min_collection_interval': 5,
        'lock_file': str(tmp_path / 'lock'),
        'diagnostics_dir': str(tmp_path / 'diag'),
        'receiver': {'samples_per_second': 299, 'pids': [pid], 'symbol_uploader': {'enabled': False}},
    }


@pytest.mark.integration
def test_unmodified_jvm_split_3_to_1(requires_bpf, classes, tmp_path, dd_run_check):
    out = tmp_path / 'jvm.out'
    with open(out, 'wb') as f:
        proc = start_java(classes, 'JvmSplit', 60, stdout=f)
    check = HostProfilerCheck('host_profiler', {}, [_jvm_instance(tmp_path, proc.pid)])
    a = b = total = 0
    kinds = set()
    try:
        dd_run_check(check, cancel=False)  # starts the sampler
        time.sleep(6)  # past the warm-up
        dd_run_check(check, cancel=False)  # sees the JVM: its map is written on the attach thread
        assert check.pipeline.runtimes.jvm.wait_idle(20)
        for _ in range(5):  # 25 s of samples, 5 s per run (each run symbolizes what it drains)
            time.sleep(5)
            dd_run_check(check, cancel=False)
            for resource in check.last_result.profile.resources:
                if resource.pid != proc.pid:
                    continue
                for sample in resource.samples:
                    total += sample.value
                    names = {f.function for f in sample.frames}
                    a += sample.value * ('JvmSplit.burnA(long)' in names)
                    b += sample.value * ('JvmSplit.burnB(long)' in names)
                    kinds |= {f.kind for f in sample.frames if f.function.startswith('JvmSplit.')}
        t = check.telemetry
        assert t.total('jvm.attach.count') >= 1 and t.total('jvm.attach.errors') == 0
        assert t.total('jvm.perf_map.bytes') > 0
        map_path = '/tmp/perf-{}.map'.format(proc.pid)
        assert os.path.exists(map_path), (check.pipeline.runtimes.diagnostics(), check.last_result.profile.resources)
        proc.kill()
        proc.wait()
        time.sleep(1.5)  # its exit is seen
        dd_run_check(check, cancel=False)
        # the map it wrote for us went with it: a later process with that pid will not read it
        assert not os.path.exists(map_path)
    finally:
        check.cancel()
        proc.kill()
        proc.wait()
        _unlink('/tmp/perf-{}.map'.format(proc.pid), '/tmp/.java_pid{}'.format(proc.pid))
    # ~3000 samples (25 s at 299 Hz of a thread that gets about half a core here): the share's standard
    # error is under 1 point, so 3 points is over 3 sigma
    assert total > 0
    assert a + b >= 0.8 * total, (a, b, total)
    assert abs(a / (a + b) - 0.75) <= 0.03, (a, b)
    assert kinds == {FRAME_JVM}
    assert b'thread dump' not in out.read_bytes()
