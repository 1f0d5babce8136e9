# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Hostile files a profiled process controls (issue #19): every read goes through
``host.files.FileOpener``.

Each case runs a real process (``jitspin``, static) chrooted into a directory, so that its
/proc/PID/root is that directory, and symbolizes addresses of that real process: a JIT address
(perf map) or its own code (ELF, debug file, .gnu_debugdata). The symlink cases run twice: with
openat2 and with the component walk used where openat2 is unavailable.
"""
import importlib.util
import os
import shutil
import stat
import threading
import uuid

import pytest

from datadog_checks.host_profiler.host import files
from datadog_checks.host_profiler.receiver.processes import read_process
from datadog_checks.host_profiler.runtime.diagnostics import Diagnostics
from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.host.elf import read_elf_info
from datadog_checks.host_profiler.symbols.symbolizer import Symbolizer
from datadog_checks.host_profiler.unwind.cfi import TooManySections, build_cfi_table
from datadog_checks.host_profiler.unwind.tables import CfiTables

from tests import REPO_ROOT

_SPEC = importlib.util.spec_from_file_location(
    'hostile_files', os.path.join(REPO_ROOT, 'benchmarks', 'workloads', 'hostile_files.py'))
hf = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(hf)

pytestmark = pytest.mark.usefixtures('requires_root')  # chroot and chown

JIT = hf.ANON_ADDR + 0x10
OTHER_UID = 4321


@pytest.fixture(scope='module')
def jitspin(tmp_path_factory):
    return hf.build_jitspin(str(tmp_path_factory.mktemp('jitspin')))


@pytest.fixture(params=['openat2', 'walk'])
def resolution(request, monkeypatch):
    if request.param == 'openat2':
        if not files.openat2_available():
            pytest.skip('openat2 is unavailable here (kernel < 5.6 or a seccomp profile): the walk case covers it')
    else:
        monkeypatch.setattr(files, '_openat2_available', False)
    return request.param


@pytest.fixture
def secret_dir():
    """A root-only directory of the host (outside every test root)."""
    d = '/root/hp-secret-{}'.format(uuid.uuid4().hex[:8])
    os.makedirs(d, mode=0o700)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def running():
    procs = []

    def start(root, name='jitspin', uid=None):
        p = hf.start_in_root(root, name, uid)
        procs.append(p)
        return p

    yield start
    for p in procs:
        hf.stop(p)


def _symbolize(pid, addresses):
    t = Telemetry()
    proc = read_process(pid)
    assert proc is not None
    frames = Symbolizer(t).symbolize_user(proc, addresses)
    return [f.function for f in frames], t


def _refused(t):
    return {k: v for k, v in t.totals().items() if k.startswith('symbols.files.refused') and v}


def _root(tmp_path, binary):
    return hf.make_root(str(tmp_path / 'root'), binary)


def test_perf_map_inside_the_root_is_read(tmp_path, jitspin, running, resolution):
    root = _root(tmp_path, jitspin['full'])
    p = running(root)
    assert os.path.realpath('/proc/{}/root'.format(p.pid)) == os.path.realpath(root)
    with open(os.path.join(root, 'tmp', 'perf-{}.map'.format(p.pid)), 'w') as f:
        f.write('{:x} 100 jitted_in_container\n'.format(hf.ANON_ADDR))
    names, t = _symbolize(p.pid, [JIT])
    assert names == ['jitted_in_container']
    assert not _refused(t)


@pytest.mark.parametrize('escape', ['absolute', 'relative', 'directory'])
def test_symlink_escapes_stay_in_the_root(tmp_path, jitspin, running, secret_dir, resolution, escape):
    root = _root(tmp_path, jitspin['full'])
    p = running(root)
    name = 'perf-{}.map'.format(p.pid)
    secret = hf.secret_host_file(os.path.join(secret_dir, name))
    link = os.path.join(root, 'tmp', name)
    if escape == 'absolute':
        os.symlink(secret, link)
    elif escape == 'relative':
        os.symlink(hf.relative_up(root) + secret.lstrip('/'), link)
    else:  # /tmp itself a directory symlink that climbs out of the root
        os.rmdir(os.path.join(root, 'tmp'))
        os.symlink(hf.relative_up(root) + secret_dir.lstrip('/'), os.path.join(root, 'tmp'))
    # seen from the host, through /proc/PID/root, the link does lead to the secret
    with open('/proc/{}/root/tmp/{}'.format(p.pid, name)) as f:
        assert hf.SECRET_FN in f.read()
    names, t = _symbolize(p.pid, [JIT])
    assert names == [''], 'a host file became function names: {}'.format(names)
    assert t.totals()['symbols.frames.unknown{reason:anon}'] == 1


def test_another_users_perf_map_is_ignored_and_counted(tmp_path, jitspin, running):
    root = _root(tmp_path, jitspin['full'])
    p = running(root)  # runs as root
    path = os.path.join(root, 'tmp', 'perf-{}.map'.format(p.pid))
    with open(path, 'w') as f:
        f.write('{:x} 100 planted_by_nobody\n'.format(hf.ANON_ADDR))
    os.chown(path, 65534, 65534)
    names, t = _symbolize(p.pid, [JIT, JIT])
    assert names == ['', '']
    assert _refused(t) == {'symbols.files.refused{reason:foreign_owner}': 1}  # once per file
    shown = '/proc/{}/root/tmp/perf-{}.map'.format(p.pid, p.pid)
    assert {'pid': p.pid, 'path': shown, 'kind': 'perfmap', 'reason': 'foreign_owner'}.items() <= \
        files.recent_refusals()[-1].items()
    # named in the diagnostics file
    refusals = Diagnostics(str(tmp_path / 'diag'), t, probe=lambda: {}).payload()['extra']['file_refusals']
    assert any(r['path'] == shown and r['reason'] == 'foreign_owner' for r in refusals)


def test_process_users_perf_map_is_read_but_not_through_its_link_to_roots_file(tmp_path, jitspin, running):
    root = _root(tmp_path, jitspin['full'])
    p = running(root, uid=OTHER_UID)
    own = os.path.join(root, 'tmp', 'perf-{}.map'.format(p.pid))
    with open(own, 'w') as f:
        f.write('{:x} 100 users_own_jit\n'.format(hf.ANON_ADDR))
    os.chown(own, OTHER_UID, OTHER_UID)
    names, t = _symbolize(p.pid, [JIT])
    assert names == ['users_own_jit'] and not _refused(t)
    # the user's own link to a file of root's inside the root: refused, as root owns the target
    p2 = running(root, uid=OTHER_UID)
    os.makedirs(os.path.join(root, 'etc'), exist_ok=True)
    hf.secret_host_file(os.path.join(root, 'etc', 'root-only.map'))
    link = os.path.join(root, 'tmp', 'perf-{}.map'.format(p2.pid))
    os.symlink('../etc/root-only.map', link)
    os.lchown(link, OTHER_UID, OTHER_UID)
    names, t = _symbolize(p2.pid, [JIT])
    assert names == [''] and _refused(t) == {'symbols.files.refused{reason:symlink}': 1}


def _symbolize_or_hang(pid, addresses):
    out = {}
    th = threading.Thread(target=lambda: out.update(r=_symbolize(pid, addresses)), daemon=True)
    th.start()
    th.join(60)
    assert not th.is_alive(), 'symbolizing blocked on the file'
    return out['r']


def test_fifo_perf_map_is_refused_without_blocking(tmp_path, jitspin, running):
    root = _root(tmp_path, jitspin['full'])
    p = running(root)
    os.mkfifo(os.path.join(root, 'tmp', 'perf-{}.map'.format(p.pid)))
    names, t = _symbolize_or_hang(p.pid, [JIT])
    assert names == [''] and _refused(t) == {'symbols.files.refused{reason:not_regular}': 1}


def test_dev_zero_perf_map_is_refused(jitspin, running):
    """The issue's case: a host process's perf map made a symlink to /dev/zero."""
    p = running('/', name=os.path.relpath(jitspin['full'], '/'))
    path = '/tmp/perf-{}.map'.format(p.pid)
    os.symlink('/dev/zero', path)
    try:
        names, t = _symbolize_or_hang(p.pid, [JIT])
    finally:
        os.unlink(path)
    assert names == [''] and _refused(t) == {'symbols.files.refused{reason:not_regular}': 1}


def test_sparse_10gb_perf_map_is_refused_by_size(tmp_path, jitspin, running):
    root = _root(tmp_path, jitspin['full'])
    p = running(root)
    hf.sparse_file(os.path.join(root, 'tmp', 'perf-{}.map'.format(p.pid)))
    names, t = _symbolize_or_hang(p.pid, [JIT])
    assert names == [''] and _refused(t) == {'symbols.files.refused{reason:too_large}': 1}


def _debug_path(root, build_id):
    d = os.path.join(root, 'usr', 'lib', 'debug', '.build-id', build_id[:2])
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, build_id[2:] + '.debug')


def test_debug_file_by_build_id_in_the_root_and_10gb_sparse_one_refused(tmp_path, jitspin, running):
    wait = jitspin['wait']
    # control: the stripped binary's debug file, found by build id inside its root
    good = hf.make_root(str(tmp_path / 'good'), jitspin['stripped'])
    shutil.copy(jitspin['full'], _debug_path(good, jitspin['build_id']))
    p = running(good)
    names, t = _symbolize(p.pid, [wait])
    assert names == ['jitspin_wait'] and t.totals()['symbols.debug_files.found{method:build_id}'] == 1
    # a 10 GB sparse file in its place
    bad = hf.make_root(str(tmp_path / 'bad'), jitspin['stripped'])
    hf.sparse_file(_debug_path(bad, jitspin['build_id']))
    p = running(bad)
    names, t = _symbolize_or_hang(p.pid, [wait])
    assert names == [''] and _refused(t) == {'symbols.files.refused{reason:too_large}': 1}


@pytest.mark.parametrize('bomb', ['zeros', 'elf_header_4k', 'elf_header_60m'])
def test_lzma_bomb_in_gnu_debugdata_is_bounded(tmp_path, jitspin, running, bomb):
    """1 GiB of zeros behind .gnu_debugdata (a ~220 KiB section). Plain zeros are not an ELF
    file (bad input, seen in the first 64 bytes); behind an ELF header, the output may not
    exceed what the header spans nor the 64 MiB cap (refused)."""
    prefix = {'zeros': b'', 'elf_header_4k': hf.elf_header_claiming(4096),
              'elf_header_60m': hf.elf_header_claiming(60 << 20)}[bomb]
    binary = hf.with_debugdata_bomb(jitspin['stripped'], str(tmp_path / 'bomb'), 1 << 30, prefix)
    info = read_elf_info(binary)
    assert info.has_gnu_debugdata and not info.has_symtab
    p = running(hf.make_root(str(tmp_path / 'root'), binary))
    names, t = _symbolize(p.pid, [jitspin['wait']])
    assert names == ['']
    if bomb == 'zeros':
        assert t.totals()['symbols.bad_input{kind:debugdata}'] == 1 and not _refused(t)
        return
    assert _refused(t) == {'symbols.files.refused{reason:too_large}': 1}
    last = files.recent_refusals()[-1]
    assert last['kind'] == 'debugdata' and last['path'].endswith(':.gnu_debugdata') and last['pid'] == p.pid


def test_elf_claiming_65535_sections_is_refused(tmp_path, jitspin, running):
    binary = hf.with_huge_section_table(jitspin['full'], str(tmp_path / 'many'))
    p = running(hf.make_root(str(tmp_path / 'root'), binary))  # the kernel runs it all the same
    names, t = _symbolize(p.pid, [jitspin['wait']])
    assert names == ['']
    assert _refused(t) == {'symbols.files.refused{reason:too_many_sections}': 1}
    assert t.totals()['symbols.frames.unknown{reason:not_elf}'] == 1
    # the unwinder's ELF reader refuses it too
    with pytest.raises(TooManySections):
        build_cfi_table(binary)
    t2 = Telemetry()
    tables = CfiTables(t2)
    assert tables.finder(read_process(p.pid))(jitspin["wait"]) is None
    assert _refused(t2) == {'symbols.files.refused{reason:too_many_sections}': 1}


def test_mapped_binary_is_opened_by_mapping_even_when_its_path_lies(tmp_path, jitspin, running, secret_dir):
    """/proc/PID/map_files names the mapped inode: deleting the binary, or putting a symlink to a
    host file at its path, changes nothing."""
    root = _root(tmp_path, jitspin['full'])
    p = running(root)
    os.unlink(os.path.join(root, 'jitspin'))
    os.symlink(hf.relative_up(root) + secret_dir.lstrip('/') + '/x', os.path.join(root, 'jitspin'))
    names, t = _symbolize(p.pid, [jitspin['wait']])
    assert names == ['jitspin_wait'] and not _refused(t)


def test_opener_rules_at_the_file_level(tmp_path, resolution):
    """The opener alone: a directory, a device, a magic link and a loop in a root."""
    root = str(tmp_path / 'r')
    os.makedirs(root + '/proc/self')
    os.mkdir(root + '/dir')
    os.mknod(root + '/zero', stat.S_IFCHR | 0o666, os.makedev(1, 5))
    os.symlink('loop', root + '/loop')
    with open(root + '/ok', 'w') as f:
        f.write('ok')
    t = Telemetry()
    op = files.FileOpener(t)
    f, st = op.open_in_root(root, '/../../ok')
    with f:
        assert f.read() == b'ok' and st.st_size == 2
    for path, reason in (('/dir', 'not_regular'), ('/zero', 'not_regular'), ('/loop', 'magic_link')):
        with pytest.raises(files.FileRefused) as e:
            op.open_in_root(root, path)
        assert e.value.reason == reason
    with pytest.raises(files.FileRefused) as e:
        op.open_in_root(root, '/ok', max_bytes=1)
    assert e.value.reason == 'too_large'
    if resolution == 'openat2':  # a real magic link: /proc/PID/root of a process, inside a root that is '/'
        with pytest.raises(files.FileRefused) as e:
            op.open_in_root('/', '/proc/{}/root/etc/hostname'.format(os.getpid()))
        assert e.value.reason == 'magic_link'


def test_uploader_reads_debug_files_inside_the_root_and_hands_objcopy_that_file(tmp_path, jitspin):
    """A container's build-id link is absolute (/usr/lib/debug/...): followed from the host it
    would name a host path; inside the root it names the container's debug file, which objcopy
    is given as the file already opened (/dev/fd/N)."""
    from datadog_checks.host_profiler.uploader.elfsource import inspect
    from datadog_checks.host_profiler.uploader.symbol_copier import SymbolCopier

    root = hf.make_root(str(tmp_path / 'root'), jitspin['stripped'])
    real = os.path.join(root, 'usr', 'lib', 'debug', 'real-jitspin.debug')
    os.makedirs(os.path.dirname(real))
    shutil.copy(jitspin['full'], real)
    os.symlink('/usr/lib/debug/real-jitspin.debug', _debug_path(root, jitspin['build_id']))
    assert not os.path.exists('/usr/lib/debug/real-jitspin.debug')
    t = Telemetry()
    local = inspect('/jitspin', root, opener=files.FileOpener(t))
    link = '/usr/lib/debug/.build-id/{}/{}.debug'.format(jitspin['build_id'][:2], jitspin['build_id'][2:])
    assert local.source == 'symbol_table' and local.symbol_file_location == (root, link)
    result = SymbolCopier(temp_dir=str(tmp_path), compress=False).copy(local)
    try:
        info = read_elf_info(result.path)
        assert info.has_symtab and info.gnu_build_id == jitspin['build_id']
    finally:
        result.close()
    # a FIFO in the binary's place: refused at once, counted
    os.unlink(os.path.join(root, 'jitspin'))
    os.mkfifo(os.path.join(root, 'jitspin'))
    with pytest.raises(files.FileRefused):
        inspect('/jitspin', root, opener=files.FileOpener(t))
    assert _refused(t) == {'symbols.files.refused{reason:not_regular}': 1}
