# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Kernel struct offsets from BTF, and their per-boot cache file."""
import json
import os

import pytest

from datadog_checks.host_profiler.host import btf


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(btf, '_cache', {})
    if not os.path.exists(btf.VMLINUX_BTF):
        pytest.skip('kernel without BTF')


def test_offset_cached_per_boot_and_kernel(fresh, tmp_path, monkeypatch):
    path = str(tmp_path / 'sub' / 'kernel-offsets.json')
    off = btf.task_fsbase_offset(cache_path=path)
    doc = json.load(open(path))
    assert doc['offsets'] == {'task_struct.thread.fsbase': off}
    assert doc['boot'] == '{} {}'.format(btf.boot_id(), btf.kernel_release())
    # a later start of this boot reads the file, not the BTF
    monkeypatch.setattr(btf, '_cache', {})
    monkeypatch.setattr(btf, 'Btf', None)  # would raise if the BTF were decoded
    assert btf.task_fsbase_offset(cache_path=path) == off


def test_offset_of_another_boot_is_recomputed(fresh, tmp_path):
    path = tmp_path / 'kernel-offsets.json'
    path.write_text(json.dumps({'boot': 'other-boot 1.0', 'offsets': {'task_struct.thread.fsbase': 8}}))
    off = btf.task_fsbase_offset(cache_path=str(path))
    assert off != 8 and off == btf.task_fsbase_offset(cache_path=None)
    assert json.loads(path.read_text())['offsets']['task_struct.thread.fsbase'] == off


@pytest.mark.parametrize('content', ['', 'not json', '[]', '{"boot": 3}', '{"offsets": {"x": "y"}}'])
def test_a_broken_cache_file_is_not_an_error(fresh, tmp_path, content):
    path = tmp_path / 'kernel-offsets.json'
    path.write_text(content)
    assert btf.task_fsbase_offset(cache_path=str(path)) == btf.task_fsbase_offset(cache_path=None)


def test_an_unwritable_cache_is_not_an_error(fresh, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('')
    assert btf.task_fsbase_offset(cache_path=str(blocker / 'kernel-offsets.json')) > 0
