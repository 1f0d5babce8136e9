# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Symbol uploader end to end: real binaries, real objcopy, a fake intake on 127.0.0.1."""
import io
import os
import shutil
import struct
import time
from types import SimpleNamespace

import pytest

from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.uploader import SymbolUploader

from tests.fakes.symbol_intake import FakeSymbolIntake, build_binaries

elftools = pytest.importorskip('elftools')
from elftools.elf.elffile import ELFFile  # noqa: E402

pytestmark = [
    pytest.mark.skipif(shutil.which('objcopy') is None or shutil.which('gcc') is None, reason='needs binutils+gcc'),
]
HAVE_GO = shutil.which('go') is not None


@pytest.fixture(scope='module')
def bins(tmp_path_factory):
    return build_binaries(str(tmp_path_factory.mktemp('uploader-bins')), go=HAVE_GO)


@pytest.fixture
def intake():
    with FakeSymbolIntake() as fake:
        yield fake


def make(intake_or_eps, telemetry=None, **cfg):
    eps = intake_or_eps if isinstance(intake_or_eps, list) else [intake_or_eps.endpoint()]
    conf = {'symbol_endpoints': eps, 'symbol_query_interval': 0.02, 'retrieval_workers': 2, 'upload_workers': 2}
    conf.update(cfg)
    up = SymbolUploader(conf, telemetry=telemetry or Telemetry(), mode='standalone', version='9.9.9',
                        memory_budget=None)
    up.start()
    return up


def report_all(up, *paths):
    for p in paths:
        st = os.stat(p)
        up.report(SimpleNamespace(pid=1, root='/'), SimpleNamespace(path=p, dev=st.st_dev, inode=st.st_ino))
    assert up.wait_idle(20)


def uploaded_elf(upload):
    return ELFFile(io.BytesIO(upload.elf))


def by_name(intake):
    return {u.event['filename']: u for u in intake.uploads}


def test_sources_events_and_sections(intake, bins):
    t = Telemetry()
    up = make(intake, t)
    try:
        paths = [bins[k] for k in ('c_dwarf', 'c_symtab', 'c_dynsym', 'c_nobuildid', 'c_sep')]
        if HAVE_GO:
            paths += [bins['go_stripped'], bins['go_broken']]
        report_all(up, *paths)
    finally:
        up.close()
    ups = by_name(intake)
    expected = {'c_dwarf': 'debug_info', 'c_symtab': 'symbol_table', 'c_nobuildid': 'debug_info',
                'c_sep': 'debug_info'}
    if HAVE_GO:
        expected['go_stripped'] = 'gopclntab'
    assert {k: u.event['symbol_source'] for k, u in ups.items()} == expected  # dynsym-only / broken Go: none
    assert len(intake.uploads) == len(expected)

    ev = ups['c_dwarf'].event
    with open(bins['c_dwarf'], 'rb') as f:
        gnu = ELFFile(f).get_section_by_name('.note.gnu.build-id')
        gnu_id = next(gnu.iter_notes())['n_desc']
    assert ev['gnu_build_id'] == gnu_id and ev['go_build_id'] == ''
    assert ev['type'] == 'elf_symbol_file' and ev['arch'] == 'amd64'
    assert ev['origin'] == 'host-profiler-standalone' and ev['origin_version'] == '9.9.9'
    assert len(ev['file_hash']) == 32
    assert ups['c_nobuildid'].event['gnu_build_id'] == ''
    h = ups['c_dwarf'].headers
    assert h['DD-API-KEY'] == 'test-api-key' and h['DD-EVP-ORIGIN'] == 'host-profiler-standalone'
    assert h['DD-EVP-ORIGIN-VERSION'] == '9.9.9'
    assert h['Content-Type'].startswith('multipart/form-data; boundary=')
    assert [p['name'] for p in ups['c_dwarf'].parts] == ['event', 'elf_symbol_file']
    assert ups['c_dwarf'].parts[0]['filename'] == 'event.json'
    assert ups['c_dwarf'].parts[1]['filename'] == 'elf_symbol_file'

    # debug-only ELF: DWARF kept (zstd-compressed by objcopy), code gone, no .gdb_index
    elf = uploaded_elf(ups['c_dwarf'])
    info = elf.get_section_by_name('.debug_info')
    assert info is not None and info['sh_flags'] & 0x800  # SHF_COMPRESSED
    assert elf.get_section_by_name('.text')['sh_type'] == 'SHT_NOBITS'
    assert elf.get_section_by_name('.gdb_index') is None
    assert elf.get_section_by_name('.symtab') is not None
    elf = uploaded_elf(ups['c_symtab'])
    assert elf.get_section_by_name('.debug_info') is None and elf.get_section_by_name('.symtab') is not None
    # separate debug file: its DWARF is what got uploaded
    assert uploaded_elf(ups['c_sep']).get_section_by_name('.debug_info') is not None
    if HAVE_GO:
        g = ups['go_stripped']
        assert g.event['go_build_id'] and g.event['gnu_build_id'] == ''
        elf = uploaded_elf(g)
        pcln = elf.get_section_by_name('.gopclntab')
        assert pcln['sh_type'] == 'SHT_PROGBITS' and pcln.data()[:4] in (b'\xf0\xff\xff\xff', b'\xf1\xff\xff\xff')
        with open(bins['go_stripped'], 'rb') as f:
            orig = ELFFile(f).get_section_by_name('.gopclntab')
            assert pcln['sh_addr'] == orig['sh_addr'] and pcln.data() == orig.data()
        syms = {s.name: s['st_value'] for s in elf.get_section_by_name('.symtab').iter_symbols()}
        text_start = struct.unpack_from('<Q', pcln.data(), 8 + 2 * 8)[0]
        assert syms['runtime.text'] == text_start

    # the query: JSON:API, key header, arch
    q = intake.queries[0]
    assert q['headers']['Dd-Api-Key'] == 'test-api-key'
    assert q['body']['data']['type'] == 'symbols-query-request'
    assert q['body']['data']['attributes']['arch'] == 'amd64'
    queried = {b for q in intake.queries for b in q['body']['data']['attributes']['buildIds']}
    assert ups['c_nobuildid'].event['file_hash'] in queried  # no build id: the file hash is asked

    totals = t.totals()
    assert totals['symbol_upload.reported'] == len(paths)
    assert totals['symbol_upload.skipped{reason:no_symbols}'] == (2 if HAVE_GO else 1)
    assert totals['symbol_upload.uploaded{symbol_source:debug_info}'] == 3
    assert totals['symbol_upload.bytes'] > 0


def test_dynamic_symbols_when_allowed(intake, bins):
    up = make(intake, upload_dynamic_symbols=True)
    try:
        report_all(up, bins['c_dynsym'])
    finally:
        up.close()
    (u,) = intake.uploads
    assert u.event['symbol_source'] == 'dynamic_symbol_table'
    elf = uploaded_elf(u)
    assert elf.get_section_by_name('.dynsym')['sh_type'] == 'SHT_DYNSYM'  # contents kept, not NOBITS
    assert elf.get_section_by_name('.dynstr')['sh_type'] == 'SHT_STRTAB'


def test_nothing_uploaded_twice(intake, bins, tmp_path):
    t = Telemetry()
    up = make(intake, t)
    try:
        report_all(up, bins['c_dwarf'])
        report_all(up, bins['c_dwarf'])  # same inode: not even reported
        copy = str(tmp_path / 'c_dwarf_copy')  # same content, another inode: claimed by content id
        shutil.copyfile(bins['c_dwarf'], copy)
        report_all(up, copy)
    finally:
        up.close()
    assert len(intake.uploads) == 1
    assert t.totals()['symbol_upload.reported'] == 2


def test_dry_run_sends_nothing(intake, bins):
    t = Telemetry()
    up = make(intake, t, dry_run=True)
    try:
        report_all(up, bins['c_dwarf'], bins['c_symtab'])
    finally:
        up.close()
    assert intake.uploads == [] and intake.queries == []
    assert t.totals()['symbol_upload.skipped{reason:dry_run}'] == 2


def test_backend_level_decides(intake, bins, tmp_path):
    from datadog_checks.host_profiler.uploader.elfsource import inspect

    stripped = str(tmp_path / 'c_dwarf_stripped')  # same build, symtab only
    import subprocess

    subprocess.run(['strip', '-g', '-o', stripped, bins['c_dwarf']], check=True)
    dwarf_id = inspect(bins['c_dwarf'], '/').query_build_id
    symtab_id = inspect(stripped, '/').query_build_id
    intake.levels[dwarf_id] = 'debug_info'  # the backend has everything: no upload
    t = Telemetry()
    up = make(intake, t)
    try:
        report_all(up, bins['c_dwarf'])
        assert intake.uploads == []
        assert t.totals()['symbol_upload.skipped{reason:backend_has_symbols}'] == 1
        # same build id, c_symtab local level symbol_table < debug_info: not uploaded either
        report_all(up, stripped)
        assert symtab_id == dwarf_id and intake.uploads == []
    finally:
        up.close()
    intake.levels[dwarf_id] = 'dynamic_symbol_table'  # backend lower than local: upload
    up = make(intake)
    try:
        report_all(up, bins['c_dwarf'])
    finally:
        up.close()
    assert [u.event['symbol_source'] for u in intake.uploads] == ['debug_info']


def test_only_endpoints_that_need_it(bins):
    with FakeSymbolIntake() as a, FakeSymbolIntake() as b:
        from datadog_checks.host_profiler.uploader.elfsource import inspect

        a.levels[inspect(bins['c_dwarf'], '/').query_build_id] = 'debug_info'
        up = make([a.endpoint(site='a.test'), b.endpoint(api_key='key-b', site='b.test')])
        try:
            report_all(up, bins['c_dwarf'])
        finally:
            up.close()
        assert a.uploads == [] and len(b.uploads) == 1
        assert b.uploads[0].headers['DD-API-KEY'] == 'key-b'
        assert len(a.queries) == 1 and len(b.queries) == 1


@pytest.mark.parametrize('status', [403, 500])
def test_failed_upload_is_retried_next_time(intake, bins, status):
    t = Telemetry()
    up = make(intake, t)
    try:
        intake.fail_uploads = [status]
        report_all(up, bins['c_dwarf'])
        assert intake.uploads == []
        assert t.totals()['symbol_upload.errors{reason:http_%dxx}' % (status // 100)] == 1
        report_all(up, bins['c_dwarf'])  # seen again: retried, succeeds
        assert len(intake.uploads) == 1
        report_all(up, bins['c_dwarf'])  # and then never again
        assert len(intake.uploads) == 1
    finally:
        up.close()


def test_failed_query_is_retried_next_time(intake, bins):
    t = Telemetry()
    up = make(intake, t)
    try:
        intake.fail_queries = [500]
        report_all(up, bins['c_symtab'])
        assert intake.uploads == [] and t.totals()['symbol_upload.errors{reason:query_http_5xx}'] == 1
        report_all(up, bins['c_symtab'])
        assert len(intake.uploads) == 1
    finally:
        up.close()


def test_report_never_blocks_and_close_is_bounded(intake, bins):
    intake.delay_s = 3.0  # a slow intake
    up = make(intake, symbol_query_interval=0)
    paths = [bins['c_dwarf'], bins['c_symtab'], bins['c_nobuildid']]
    t0 = time.monotonic()
    for i in range(2000):
        p = paths[i % 3]
        up.report(SimpleNamespace(pid=1, root='/'), SimpleNamespace(path=p, dev=1, inode=1000 + i))
    elapsed = time.monotonic() - t0
    t1 = time.monotonic()
    up.close(timeout=1.0)
    assert elapsed < 0.5
    assert time.monotonic() - t1 < 1.5


def test_batched_queries_with_injected_clock(intake, bins):
    now = [1000.0]
    t = Telemetry()
    conf = {'symbol_endpoints': [intake.endpoint()], 'symbol_query_interval': '5s'}
    up = SymbolUploader(conf, telemetry=t, mode='agent', version='7.0.0', memory_budget=None,
                        clock=lambda: now[0])
    up.start()
    try:
        for k in ('c_dwarf', 'c_nobuildid', 'c_sep'):
            up.report_file(bins[k])
        deadline = time.monotonic() + 5
        while t.total('symbol_upload.queued') < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert intake.queries == []  # the interval has not elapsed on the injected clock
        now[0] += 5.0
        deadline = time.monotonic() + 5
        while not intake.queries and time.monotonic() < deadline:
            time.sleep(0.01)
        assert up.wait_idle(20)
    finally:
        up.close()
    assert len(intake.queries) == 1
    assert len(intake.queries[0]['body']['data']['attributes']['buildIds']) == 3
    assert len(intake.uploads) == 3
    assert intake.uploads[0].event['origin'] == 'host-profiler-bundled'


def test_body_zstd_when_objcopy_cannot(intake, bins):
    up = make(intake)
    up.copier._zstd = False  # as if objcopy lacked --compress-debug-sections=zstd
    try:
        report_all(up, bins['c_dwarf'])
    finally:
        up.close()
    (u,) = intake.uploads
    assert u.headers.get('Content-Encoding') == 'zstd'
    info = uploaded_elf(u).get_section_by_name('.debug_info')
    assert not info['sh_flags'] & 0x800  # sections uncompressed, the body was


def test_api_key_never_logged(intake, bins, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    intake.fail_uploads = [403]
    up = make(intake)
    try:
        report_all(up, bins['c_dwarf'])
    finally:
        up.close()
    assert 'test-api-key' not in caplog.text
    assert 'test-api-key' not in repr(up.config) and 'test-api-key' not in str(up.diagnostics())
