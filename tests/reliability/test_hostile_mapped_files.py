# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Files a profiled process maps, read by the runtimes (CPython detection, the TLS model of
modules exporting ``otel_thread_ctx_v1``): both open them through
``FileOpener.open_mapping`` with the identity check, so a process cannot make them read a FIFO,
/dev/zero, a file swapped after it was mapped, another mount namespace's file or a huge file.

Each case runs a real process compiled here: a program named ``python3.12`` that exports
``Py_Version`` and ``_PyRuntime`` in ``.dynsym`` (what detection reads), or the OTEP 4947
publisher. The process's mappings are read while it runs; then the file is swapped and the
process ended (so /proc/PID/map_files is gone and the path is all that is left, as for a
short-lived process whose first sample is handled after it exited), or /proc/PID/map_files is
made unavailable (an agent without CAP_SYS_ADMIN) while it runs in its own mount namespace."""
import os
import subprocess
import time

import pytest

from datadog_checks.host_profiler.host import files
from datadog_checks.host_profiler.receiver.processes import read_process
from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.runtimes.otel_thread_tls import ThreadTlsRuntime
from datadog_checks.host_profiler.runtimes.python.detect import NotPython, _file_cache, detect
from datadog_checks.host_profiler.symbols.symbolizer import Symbolizer
from tests.workloads import HERE
from tests.workloads.hostile import call_bounded, swap_mapped_file

pytestmark = pytest.mark.usefixtures('requires_root')

FAKE_PYTHON = r'''
#include <unistd.h>
const unsigned int Py_Version = VERSION;
char _PyRuntime[4096];
int main(void) { _PyRuntime[0] = 1; for (;;) pause(); }
'''


NAMED_FUNCTION = r'''
#include <unistd.h>
__attribute__((noinline)) int NAME(int x) { return x * 3 + 1; }
int main(int argc, char **argv) { (void)argv; if (argc > 5) return NAME(argc); for (;;) pause(); }
'''


def _gcc(out, source, *args):
    src = str(out) + '.c'
    with open(src, 'w') as f:
        f.write(source)
    subprocess.run(['gcc', '-O1', '-rdynamic', *args, '-o', str(out), src], check=True, capture_output=True)
    return str(out)


@pytest.fixture(scope='module')
def pythons(tmp_path_factory):
    """A real program named python3.12 (Py_Version 3.12.1), and another file of that name and
    size class claiming 3.8.0 (the swapped-in one)."""
    d = tmp_path_factory.mktemp('fakepy')
    (d / 'a').mkdir()
    (d / 'b').mkdir()
    return {
        'real': _gcc(d / 'a' / 'python3.12', FAKE_PYTHON, '-DVERSION=0x030C01F0'),
        'other': _gcc(d / 'b' / 'python3.12', FAKE_PYTHON, '-DVERSION=0x030800F0'),
    }


@pytest.fixture(scope='module')
def publisher(tmp_path_factory):
    d = tmp_path_factory.mktemp('tlspub')
    out = d / 'pub_static'
    subprocess.run(['gcc', '-O1', '-pthread', '-DPUB_MAIN', '-DPUB_IMPL', '-fPIE', '-pie',
                    '-Wl,--export-dynamic-symbol=otel_thread_ctx_v1', '-o', str(out),
                    os.path.join(HERE, 'otel_thread_publisher.c')], check=True, capture_output=True)
    return str(out)


def _refused(t):
    return {k: v for k, v in t.totals().items() if k.startswith('symbols.files.refused') and v}


def _within(seconds, fn):
    """fn() on a thread: a read that blocks (a FIFO) fails the test instead of hanging it."""
    out, took = call_bounded(seconds, fn)
    assert took is not None, 'blocked for {} s'.format(seconds)
    return out, took


def _run_then_end(cmd, ready=0.3):
    """Start ``cmd``, read its process info while it runs, end it: (info, binary's mapping)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(ready)
        info = read_process(p.pid)
        assert info is not None
    finally:
        p.kill()
        p.wait()
    return info


def _detect(info, t):
    out, took = _within(10, lambda: detect(info, files.FileOpener(t)))
    return out, took


def test_detection_reads_the_mapped_file_live_and_after_exit(pythons):
    t = Telemetry()
    p = subprocess.Popen([pythons['real']])
    try:
        time.sleep(0.3)
        info = read_process(p.pid)
        interp = detect(info, files.FileOpener(t))
        assert interp is not None and (interp.file.major, interp.file.minor, interp.file.micro) == (3, 12, 1)
    finally:
        p.kill()
        p.wait()
    # the process gone (no map_files): its path, still the mapped inode, is read
    _file_cache.clear()
    out, _ = _detect(info, t)
    assert out['value'].version == '3.12' and not _refused(t)


@pytest.mark.parametrize('kind,reason', [('copy', 'not_the_mapped_file'), ('fifo', 'not_regular'),
                                         ('dev_zero', 'not_regular'), ('sparse', 'too_large')])
def test_detection_refuses_a_file_swapped_after_mapping(pythons, kind, reason):
    """Swapped for another interpreter (it would say 3.8), a FIFO (it would block), a symlink to
    /dev/zero, a 10 GB sparse file: refused at once and counted; the process is not profiled."""
    info = _run_then_end([pythons['real']])
    _file_cache.clear()
    t = Telemetry()
    restore = swap_mapped_file(pythons['real'], kind, pythons['other'])
    try:
        out, took = _detect(info, t)
    finally:
        restore()
    assert isinstance(out.get('error'), NotPython) and out['error'].reason == 'file_unreadable'
    assert _refused(t) == {'symbols.files.refused{reason:' + reason + '}': 1}
    assert took < 2.0


def test_detection_never_reads_another_mount_namespaces_file(pythons, monkeypatch):
    """A process in its own mount namespace runs python3.12 at b/ (b/ bind-mounted over with a/ in
    its namespace only: it maps a/'s 3.12 file at the path b/python3.12, which in ours names the
    3.8 one). Without /proc/PID/map_files (an agent without CAP_SYS_ADMIN), the path in our
    namespace is not the mapped inode: refused, never read as the process's interpreter."""
    a, b = os.path.dirname(pythons['real']), os.path.dirname(pythons['other'])
    script = 'mount --bind {} {} && exec {}'.format(a, b, pythons['other'])
    p = subprocess.Popen(['unshare', '-m', '--propagation', 'private', 'sh', '-c', script])
    try:
        time.sleep(0.5)
        assert p.poll() is None
        info = read_process(p.pid)
        assert info.root == '/'  # the same root directory: only the mounts differ
        t = Telemetry()
        _file_cache.clear()
        interp = detect(info, files.FileOpener(t))
        assert interp.version == '3.12'  # through map_files: the very file mapped
        _file_cache.clear()

        def no_map_files(self, pid, start, end, **kw):
            raise PermissionError(1, 'Operation not permitted')

        monkeypatch.setattr(files.FileOpener, 'open_mapped', no_map_files)
        with pytest.raises(NotPython):
            detect(info, files.FileOpener(t))
        assert _refused(t) == {'symbols.files.refused{reason:not_the_mapped_file}': 1}
    finally:
        p.kill()
        p.wait()


def _tls_modules(info, t):
    rt = ThreadTlsRuntime(telemetry=t)
    out, took = _within(10, lambda: rt.observe(info))
    assert 'error' not in out, out.get('error')
    return rt.processes, took


def test_tls_model_of_the_mapped_module_live_and_after_exit(publisher):
    info = _run_then_end([publisher, '1', '30', '0', '3', 'swap', '-'])
    t = Telemetry()
    assert _tls_modules(info, t)[0] == 1  # after exit, the path still names the mapped inode (local-exec: the file alone)
    p = subprocess.Popen([publisher, '1', '30', '0', '3', 'swap', '-'], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        live = read_process(p.pid)
        assert _tls_modules(live, t)[0] == 1  # local-exec: registered from the file alone
    finally:
        p.kill()
        p.wait()
    assert not _refused(t)


@pytest.mark.parametrize('kind,reason', [('copy', 'not_the_mapped_file'), ('fifo', 'not_regular'),
                                         ('dev_zero', 'not_regular'), ('sparse', 'too_large')])
def test_tls_model_refuses_a_module_swapped_after_mapping(publisher, kind, reason):
    """The module swapped after it was mapped (the process gone): a FIFO used to block the
    registration forever (open() by path); now every case is refused at once and counted."""
    info = _run_then_end([publisher, '1', '30', '0', '3', 'swap', '-'])
    t = Telemetry()
    restore = swap_mapped_file(publisher, kind, '/bin/true')
    try:
        registered, took = _tls_modules(info, t)
    finally:
        restore()
    assert registered == 0
    assert _refused(t) == {'symbols.files.refused{reason:' + reason + '}': 1}
    assert took < 2.0


def test_tls_skips_mapped_devices_without_opening_them(tmp_path):
    """A process mapping /dev/zero (shared: a private one is anonymous memory): the device is no module, it is not opened (nor counted)."""
    src = tmp_path / 'mapzero.c'
    src.write_text('#include <sys/mman.h>\n#include <fcntl.h>\n#include <unistd.h>\n'
                   'int main(void) { int fd = open("/dev/zero", O_RDONLY);\n'
                   '  if (mmap(0, 4096, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0) == MAP_FAILED) return 1;\n'
                   '  for (;;) pause(); }\n')
    binary = str(tmp_path / 'mapzero')
    subprocess.run(['gcc', '-o', binary, str(src)], check=True, capture_output=True)
    p = subprocess.Popen([binary])
    try:
        time.sleep(0.3)
        info = read_process(p.pid)
        assert any(m.path.startswith('/dev/zero') for m in info.mappings)
        t = Telemetry()
        assert _tls_modules(info, t)[0] == 0 and not _refused(t)
    finally:
        p.kill()
        p.wait()


def test_symbolizer_never_lends_a_swapped_binarys_symbols(tmp_path):
    """The symbolizer (and the CFI tables, same opener call) read a process's binary through
    map_files, else by its path only if the path is still the mapped inode: a binary replaced
    by a deploy after the process mapped it (same layout, other names) never names its frames."""
    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()
    mapped = _gcc(tmp_path / 'a' / 'prog', NAMED_FUNCTION, '-no-pie', '-DNAME=burn_mapped')
    other = _gcc(tmp_path / 'b' / 'prog', NAMED_FUNCTION, '-no-pie', '-DNAME=burn_swapped')
    nm = subprocess.run(['nm', mapped], check=True, capture_output=True, text=True).stdout
    address = next(int(line.split()[0], 16) for line in nm.splitlines() if line.endswith(' burn_mapped')) + 2
    info = _run_then_end([mapped])
    t = Telemetry()
    # the process gone, its path still the mapped inode: read, and named
    assert Symbolizer(t).symbolize_user(info, [address])[0].function == 'burn_mapped'
    assert not _refused(t)
    t = Telemetry()
    restore = swap_mapped_file(mapped, 'copy', other)
    try:
        out, took = _within(10, lambda: Symbolizer(t).symbolize_user(info, [address]))
    finally:
        restore()
    frame = out['value'][0]
    assert frame.function != 'burn_swapped' and frame.address == address
    assert _refused(t) == {'symbols.files.refused{reason:not_the_mapped_file}': 1}
    assert took < 2.0
