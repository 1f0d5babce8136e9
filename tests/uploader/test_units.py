# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Symbol uploader pieces: config, multipart stream, memory gate, LRU/queue, objcopy handling."""
import email.parser
import email.policy
import json
import os
import shutil
import stat
import threading
import time

import pytest

from datadog_checks.base import ConfigurationError
from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.uploader import parse_config
from datadog_checks.host_profiler.uploader.elfsource import LocalSymbols, best, file_hash, rank
from datadog_checks.host_profiler.uploader.byte_budget import ByteSemaphore
from datadog_checks.host_profiler.uploader.upload_pipeline import UploadPipeline
from datadog_checks.host_profiler.uploader.reporter import LRU, ExecutableReporter
from datadog_checks.host_profiler.uploader.symbol_copier import SymbolCopier, SymbolCopyError
from datadog_checks.host_profiler.uploader.upload import build_body, event_json

EP = {'site': 'datadoghq.com', 'api_key': 'k'}


def test_config_defaults_and_urls():
    cfg = parse_config({'symbol_endpoints': [EP, dict(EP, site='datadoghq.eu', url='http://proxy:1/',
                                                      query_url='http://proxy:2')]})
    assert cfg.enabled and not cfg.upload_dynamic_symbols and cfg.upload_go_pcln_tab and not cfg.dry_run
    assert cfg.symbol_query_interval == 5.0 and cfg.queue_size == 1000
    a, b = cfg.endpoints
    assert a.upload_endpoint == 'https://sourcemap-intake.datadoghq.com/api/v2/srcmap'
    assert a.query_endpoint == 'https://api.datadoghq.com/api/v2/profiles/symbols/query'
    assert b.upload_endpoint == 'http://proxy:1/api/v2/srcmap'
    assert b.query_endpoint == 'http://proxy:2/api/v2/profiles/symbols/query'
    assert 'k' not in repr(a).replace('site', '')  # the key is not in the repr
    assert parse_config({'symbol_endpoints': [EP], 'symbol_query_interval': '500ms'}).symbol_query_interval == 0.5
    assert parse_config({'symbol_endpoints': [EP], 'symbol_query_interval': 0}).symbol_query_interval == 0
    assert not parse_config({'enabled': False}).enabled


@pytest.mark.parametrize('raw, key', [
    ({}, 'symbol_endpoints'),
    ({'symbol_endpoints': [{'site': 'x'}]}, 'api_key'),
    ({'symbol_endpoints': [{'api_key': 'x'}]}, 'site'),
    ({'symbol_endpoints': [EP], 'symbol_query_interval': 'soon'}, 'symbol_query_interval'),
    ({'symbol_endpoints': [EP], 'queue_size': 0}, 'queue_size'),
    ({'symbol_endpoints': [EP], 'dry_run': 'maybe'}, 'dry_run'),
])
def test_config_errors_name_the_key(raw, key):
    with pytest.raises(ConfigurationError, match=key):
        parse_config(raw)


def test_ranking():
    assert rank('debug_info') > rank('gopclntab') > rank('symbol_table') > rank('dynamic_symbol_table') > rank('none')
    assert best('symbol_table', 'gopclntab') == 'gopclntab'
    assert rank('something-new') == rank('none')


def _local(tmp_path, **kw):
    f = tmp_path / 'lib.so'
    f.write_bytes(b'\x7fELF' + bytes(range(256)) * 64)
    d = dict(path=str(f), filename='lib.so', arch='amd64', gnu_build_id='ab' * 20, go_build_id='',
             file_hash=file_hash(str(f)), source='symbol_table', symbol_file=str(f),
             symbol_file_size=f.stat().st_size, facts=None)
    d.update(kw)
    return LocalSymbols(**d)


def test_query_build_id_choice(tmp_path):
    item = _local(tmp_path)
    assert item.query_build_id == 'ab' * 20
    assert _local(tmp_path, gnu_build_id='', go_build_id='g/o').query_build_id == 'g/o'
    assert _local(tmp_path, go_build_id='redacted').query_build_id == item.file_hash
    assert _local(tmp_path, gnu_build_id='').query_build_id == item.file_hash


def test_multipart_stream_is_valid_and_seekable(tmp_path):
    item = _local(tmp_path)
    body, ctype, headers, cleanup = build_body(item, item.path, 'host-profiler-bundled', '7.1', False)
    try:
        assert headers == {} and cleanup == []
        n = len(body)
        chunks = []
        while True:
            c = body.read(1000)
            if not c:
                break
            assert len(c) <= 1000
            chunks.append(c)
        raw = b''.join(chunks)
        assert len(raw) == n
        body.seek(0)
        assert body.read(n + 10) == raw  # rewind (HTTP retries/redirects) gives the same bytes
    finally:
        body.close()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b'Content-Type: ' + ctype.encode() + b'\r\n\r\n' + raw)
    parts = list(msg.iter_parts())
    assert [p.get_param('name', header='content-disposition') for p in parts] == ['event', 'elf_symbol_file']
    assert json.loads(parts[0].get_payload(decode=True)) == event_json(item, 'host-profiler-bundled', '7.1')
    with open(item.path, 'rb') as f:
        assert parts[1].get_payload(decode=True) == f.read()


def test_multipart_body_zstd(tmp_path):
    zstandard = pytest.importorskip('zstandard')
    item = _local(tmp_path)
    body, ctype, headers, cleanup = build_body(item, item.path, 'o', 'v', True, str(tmp_path))
    try:
        assert headers == {'Content-Encoding': 'zstd'}
        raw = zstandard.ZstdDecompressor().decompressobj().decompress(body.read())
        assert item.filename.encode() in raw
    finally:
        body.close()
        for p in cleanup:
            os.unlink(p)


def test_byte_semaphore_gates_and_clamps():
    sem = ByteSemaphore(100)
    assert sem.acquire(60) == 60
    got = []
    t = threading.Thread(target=lambda: got.append(sem.acquire(60)))
    t.start()
    time.sleep(0.1)
    assert got == []  # 60 + 60 > 100: waits
    sem.release(60)
    t.join(2)
    assert got == [60]
    sem.release(60)
    assert sem.acquire(10_000) == 100  # a huge file goes alone
    stop = threading.Event()
    stop.set()
    assert sem.acquire(1, stop, poll=0.01) is None
    assert ByteSemaphore(None).acquire(1 << 40) == 1 << 40  # unlimited (cgroup 'max')


def test_lru_forgets_oldest():
    lru = LRU(2)
    assert lru.add('a') and lru.add('b') and not lru.add('a')
    assert lru.add('c')  # evicts b (a was used more recently)
    assert 'a' in lru and 'b' not in lru


def test_queue_full_drops_and_counts(tmp_path):
    t = Telemetry()
    cfg = parse_config({'symbol_endpoints': [EP], 'queue_size': 2})
    reporter = None
    pipe = UploadPipeline(cfg, t, SymbolCopier(), lambda: None, lambda item, ok: reporter.done(item, ok),
                    lambda item: True, 'o', 'v')  # not started: nothing consumes the queue
    reporter = ExecutableReporter(pipe.submit, t)
    for i in range(3):
        reporter.report('/usr/lib/lib{}.so'.format(i), '/proc/1/root', type('M', (), {'dev': 1, 'inode': i + 1})())
    totals = t.totals()
    assert totals['symbol_upload.queued'] == 2
    assert totals['symbol_upload.dropped{reason:queue_full}'] == 1
    assert ('inode', 1, 3) not in reporter.files  # dropped: forgotten, retried when seen again
    assert not reporter.report('[vdso]', '/', None) and not reporter.report('/x (deleted)', '/', None)


def _fake_objcopy(tmp_path, body):
    path = tmp_path / 'objcopy'
    path.write_text('#!/bin/sh\n' + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def _tmp_files(d):
    return [n for n in os.listdir(d) if n.startswith('hp-')]


def test_objcopy_timeout_removes_temp_files(tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    copier = SymbolCopier(objcopy=_fake_objcopy(tmp_path, 'exec sleep 5\n'), timeout=0.3, temp_dir=str(work))
    t0 = time.monotonic()
    with pytest.raises(SymbolCopyError, match='timed out'):
        copier.copy(_local(tmp_path))
    assert time.monotonic() - t0 < 3
    assert _tmp_files(str(work)) == []


def test_objcopy_killed_hints_at_elf_size(tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    copier = SymbolCopier(objcopy=_fake_objcopy(tmp_path, 'kill -9 $$\n'), temp_dir=str(work))
    item = _local(tmp_path)
    with pytest.raises(SymbolCopyError, match='largest ELF handled is {} bytes'.format(item.symbol_file_size)):
        copier.copy(item)
    assert _tmp_files(str(work)) == []


def test_objcopy_child_gets_oom_score_1000(tmp_path):
    out = tmp_path / 'score'
    script = 'cat /proc/self/oom_score_adj > {}\nfor last; do :; done\ncp /dev/null "$last"\n'.format(out)
    copier = SymbolCopier(objcopy=_fake_objcopy(tmp_path, script), temp_dir=str(tmp_path), compress=False)
    res = copier.copy(_local(tmp_path))
    res.close()
    assert out.read_text().strip() == '1000'
    assert not os.path.exists(res.path)


@pytest.mark.skipif(shutil.which('objcopy') is None, reason='needs binutils')
def test_objcopy_available():
    assert 'objcopy' in SymbolCopier().check_available().lower()
    with pytest.raises(SymbolCopyError, match='binutils'):
        SymbolCopier(objcopy='/nonexistent/objcopy').check_available()


def test_every_uploader_metric_is_in_metadata():
    import csv

    from datadog_checks.host_profiler.uploader.uploader import METRICS

    from tests import REPO_ROOT

    with open(os.path.join(REPO_ROOT, 'metadata.csv')) as f:
        rows = {r['metric_name']: r for r in csv.DictReader(f)}
    for name in METRICS:
        row = rows['host_profiler.' + name]
        assert row['metric_type'] == 'count' and row['integration'] == 'host_profiler'
