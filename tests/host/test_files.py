# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""FileOpener.open_mapping: the one resolver from a process's file mapping to an opened file."""
import os
import shutil
import subprocess
import time

import pytest

from datadog_checks.host_profiler.host.files import FileOpener
from datadog_checks.host_profiler.host.proc import maps_dev, vdso_image
from datadog_checks.host_profiler.receiver.processes import read_process
from tests.workloads import compile_c

pytestmark = pytest.mark.unit


def _mapping(info, needle):
    return [m for m in info.mappings if needle in m.path and 'x' in m.perms][0]


def test_open_mapping_prefers_map_files_then_paths(tmp_path, requires_root):
    binary = compile_c('sleeper.c', tmp_path)
    p = subprocess.Popen([binary, '30'])
    try:
        time.sleep(0.2)
        info = read_process(p.pid)
        m = _mapping(info, os.path.basename(binary))
        op = FileOpener()
        f, st, shown, by_map = op.open_mapping(p.pid, m.start, m.end, m.path, info.root)
        with f:
            assert by_map and shown.endswith('/map_files/{:x}-{:x}'.format(m.start, m.end))
            assert st.st_ino == m.inode and maps_dev(st.st_dev) == str(m.dev).lower()
        # no such mapping (as after the process exited): the path inside its root
        f, st, shown, by_map = op.open_mapping(p.pid, 1, 2, m.path, '/')
        with f:
            assert not by_map and st.st_ino == m.inode and shown == m.path
        # the file replaced on disk: map_files still opens the mapped inode; the root path does
        # not, and the host fallback refuses another inode
        os.rename(binary, binary + '.old')
        shutil.copy(binary + '.old', binary)
        f, st, _, by_map = op.open_mapping(p.pid, m.start, m.end, m.path, '/')
        with f:
            assert by_map and st.st_ino == m.inode
        assert op.open_mapping(p.pid, 1, 2, m.path, str(tmp_path / 'noroot'), inode=m.inode, dev=m.dev,
                               host_fallback=True) is None
        os.rename(binary + '.old', binary)  # the mapped inode back under its name: the host path is it
        found = op.open_mapping(p.pid, 1, 2, m.path, str(tmp_path / 'noroot'), inode=m.inode, dev=m.dev,
                                host_fallback=True)
        assert found is not None and found[1].st_ino == m.inode and not found[3]
        found[0].close()
    finally:
        p.kill()
        p.wait()


def test_one_vdso_image_per_boot(requires_root):
    info = read_process(os.getpid())
    m = [m for m in info.mappings if m.path == '[vdso]'][0]
    image = vdso_image(os.getpid(), m.start, m.end)
    assert image[:4] == b'\x7fELF'
    assert vdso_image(os.getpid(), m.start, m.end) is image  # read once, then cached
