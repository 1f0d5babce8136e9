# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""What a standalone ``host-profiler run`` tells: its real host name (never the Agent stubs'
placeholder), lost samples apart from partial stacks, a quiet default run, log lines printed once
(in a terminal too), no export for an interval without samples, and a quiet end when a signal
comes during the final flush. Each runs the installed command on the real kernel."""
import gzip
import json
import logging
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from tests.fakes.otlp import FakeOtlp
from tests.workloads import FRAME_POINTERS, NO_FRAME_POINTERS, compile_c, start

from datadog_checks.host_profiler.check import HostProfilerCheck
from datadog_checks.host_profiler.profile.otlp import decode_bytes
from datadog_checks.host_profiler.runtime.hostname import resolve_hostname, stub_placeholders

pytestmark = pytest.mark.integration

COMMAND = os.path.join(os.path.dirname(sys.executable), 'host-profiler')
LOG_LINE = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR) ')


def _env():
    """The environment of a user who set none of the Agent's host name variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith('DD_HOSTNAME')}


def _config(tmp_path, extra=''):
    config = tmp_path / 'conf.yaml'
    config.write_text('instances:\n  - lock_file: {}\n    diagnostics_dir: {}\n{}'.format(
        tmp_path / 'lock', tmp_path, extra))
    return str(config)


def _run(tmp_path, *args, extra='', env=None):
    out = tmp_path / 'out'
    proc = subprocess.run([COMMAND, 'run', '--config', _config(tmp_path, extra), '--output', str(out), *args],
                          capture_output=True, text=True, timeout=300, env=env or _env())
    assert proc.returncode == 0, proc.stderr
    return out, proc.stderr


def _resource_attributes(data):
    for rp in data.resource_profiles:
        yield {kv.key: getattr(kv.value, kv.value.WhichOneof('value')) for kv in rp.resource.attributes}


def test_standalone_host_name_is_the_os_host_name(requires_bpf, tmp_path):
    busy = start(compile_c('split.c', tmp_path), 600)
    try:
        out, err = _run(tmp_path, '--duration', '3', '--interval', '1')
    finally:
        busy.kill()
        busy.wait()
    expected = socket.gethostname()
    assert resolve_hostname(environ={})[0] == expected  # this machine: the host UTS namespace
    placeholders = stub_placeholders()
    assert 'stubbed.hostname' in placeholders
    exports = sorted((out / 'profiles').iterdir())
    assert exports
    names = set()
    for path in exports:
        raw = path.read_bytes()
        assert b'stubbed.hostname' not in raw
        for attrs in _resource_attributes(decode_bytes(raw)):
            names.add(attrs.get('host.name'))
            assert attrs.get('datadog.host.name') == expected
    assert names == {expected}
    pprof = gzip.decompress((out / 'profile.pb.gz').read_bytes())
    for text in (pprof, (out / 'summary.json').read_bytes(), (out / 'stacks.folded').read_bytes(),
                 (out / 'flamegraph.html').read_bytes(), err.encode()):
        assert b'stubbed.hostname' not in text
    assert 'host_profiler: {}'.format(expected) in (out / 'flamegraph.html').read_text()


def test_dd_hostname_names_the_host(requires_bpf, tmp_path):
    busy = start(compile_c('split.c', tmp_path), 600)
    try:
        out, _ = _run(tmp_path, '--duration', '2', '--interval', '1', env=dict(_env(), DD_HOSTNAME='web-01.example.com'))
    finally:
        busy.kill()
        busy.wait()
    names = {attrs.get('host.name') for path in (out / 'profiles').iterdir()
             for attrs in _resource_attributes(decode_bytes(path.read_bytes()))}
    assert names == {'web-01.example.com'}


def test_resolution_rules(tmp_path):
    assert resolve_hostname(environ={'DD_HOSTNAME': 'a.example.com'}, gethostname=lambda: 'os') == (
        'a.example.com', 'DD_HOSTNAME')
    assert resolve_hostname('b.example.com', environ={}, gethostname=lambda: 'os') == ('b.example.com', 'hostname')
    # an invalid configured name is skipped, as the Agent does
    assert resolve_hostname('localhost', environ={'DD_HOSTNAME': 'not valid!'}, gethostname=lambda: 'os') == (
        'os', 'os')
    name_file = tmp_path / 'hostname'
    name_file.write_text('from-file.example.com\n')
    assert resolve_hostname(environ={'DD_HOSTNAME_FILE': str(name_file)}, gethostname=lambda: 'os') == (
        'from-file.example.com', 'DD_HOSTNAME_FILE')
    assert resolve_hostname(environ={'DD_HOSTNAME_FQDN': 'true'}, gethostname=lambda: 'os',
                            fqdn=lambda n: n + '.corp.example') == ('os.corp.example', 'fqdn')
    # not in the host UTS namespace (a container's own host name): no name, unless trusted
    fake_proc = tmp_path / 'proc'
    (fake_proc / 'self' / 'ns').mkdir(parents=True)
    (fake_proc / 'self' / 'ns' / 'uts').write_text('')
    assert resolve_hostname(environ={}, proc=str(fake_proc), gethostname=lambda: 'container') == ('', '')
    assert resolve_hostname(environ={'DD_HOSTNAME_TRUST_UTS_NAMESPACE': 'true'}, proc=str(fake_proc),
                            gethostname=lambda: 'container') == ('container', 'os')


@pytest.mark.parametrize('unwinding,cflags,depth,reason', [
    # deeper than the 16 KiB stack copy: the user-space unwinder cannot reach main
    ('auto', NO_FRAME_POINTERS, 3000, 'unwind_incomplete'),
    # deeper than the in-kernel frame-pointer walk's limit (127 frames)
    ('frame_pointers', FRAME_POINTERS, 300, 'depth_limit'),
])
def test_partial_stacks_are_not_lost(requires_bpf, tmp_path, unwinding, cflags, depth, reason):
    """Every sample of a deep recursion is kept (and exported, with a [truncated] root) and
    counted as a partial stack, not as lost."""
    deep = start(compile_c('recurse.c', tmp_path, name='deep', cflags=cflags, defines=('DEPTH={}'.format(depth),)),
                 600)  # killed at the end; start-up may take long on a loaded machine
    try:
        out, err = _run(tmp_path, '--duration', '4', '--interval', '2', '--status',
                        extra='    receiver:\n      pids: [{}]\n      unwinding: {}\n'.format(deep.pid, unwinding))
    finally:
        deep.kill()
        deep.wait()
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['samples'] >= 20, summary['samples']
    assert summary['partial_stacks']['sampler.stacks.partial{reason:' + reason + '}'] >= 0.8 * summary['samples']
    assert summary['partial_total'] == sum(summary['partial_stacks'].values())
    assert not any('truncated' in k or 'partial' in k for k in summary['losses'])
    assert summary['lost_total'] == 0, summary['losses']
    assert summary['truncated_samples'] >= 0.8 * summary['samples']
    # the exported stacks end in [truncated] at the root
    folded = (out / 'stacks.folded').read_text().splitlines()
    assert any(line.startswith('deep;[truncated];') for line in folded), folded[:3]
    # the status line keeps them apart too
    last_status = [line for line in err.splitlines() if line.startswith('host-profiler ')][-1]
    assert 'lost 0' in last_status and re.search(r'partial [1-9]\d*', last_status), last_status


def test_default_run_is_quiet(requires_bpf, tmp_path):
    """What the converter adds where the user gave no value is INFO: a default run prints no log
    line; with -v each INFO line comes once."""
    busy = start(compile_c('split.c', tmp_path), 600)
    try:
        out, err = _run(tmp_path, '--duration', '4', '--interval', '2')
        proc = subprocess.run([COMMAND, '-v', 'run', '--config', _config(tmp_path), '--duration', '2',
                               '--interval', '2', '--output', str(tmp_path / 'out2')],
                              capture_output=True, text=True, timeout=300, env=_env())
    finally:
        busy.kill()
        busy.wait()
    assert err.strip().splitlines()[-1] == 'host-profiler: wrote {}'.format(out)
    # no configuration line at all (a loaded machine may add the sampler's own heartbeat warning)
    for note in ('Added minimal', 'symbol_uploader', 'resourcedetection', ' INFO '):
        assert note not in err, err
    verbose = proc.stderr.splitlines()
    for note in ('Added minimal resourcedetection processor', 'symbol_uploader disabled: no symbol_endpoints'):
        lines = [line for line in verbose if note in line]
        assert len(lines) == 1 and ' INFO ' in lines[0], lines


def test_converter_notes_are_info_and_conflicts_warnings(caplog, dd_run_check):
    caplog.set_level(logging.INFO)
    quiet = HostProfilerCheck('host_profiler', {}, [{'mode': 'standalone'}])
    quiet.run_check_initializations()
    conflict = HostProfilerCheck('host_profiler', {}, [
        {'mode': 'standalone', 'processors': {'resourcedetection': {'host.arch': False}}}])
    conflict.run_check_initializations()
    try:
        assert quiet.warnings == []
        infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        assert any('Added minimal resourcedetection processor' in m for m in infos)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and 'host.arch is required but is disabled' in warnings[0]
        assert conflict.warnings == warnings
    finally:
        quiet.cancel()
        conflict.cancel()


def _visible_rows(raw):
    """The rows a terminal shows for ``raw``: a carriage return moves back to the row's start, and
    what follows overwrites it."""
    rows = []
    for row in raw.split('\n'):
        cells = []
        cursor = 0
        for ch in row:
            if ch == '\r':
                cursor = 0
                continue
            if cursor < len(cells):
                cells[cursor] = ch
            else:
                cells.append(ch)
            cursor += 1
        rows.append(''.join(cells).rstrip())
    return rows


def test_log_lines_are_printed_once_in_a_terminal(requires_bpf, tmp_path):
    """On a terminal the status line is redrawn in place; each log line (a start-up warning, and
    warnings from other threads while the status line is shown) is printed once, on its own row."""
    extra = ('    processors:\n      resourcedetection: {host.arch: false}\n'
             '    exporters:\n      otlp_http:\n        - endpoint: http://127.0.0.1:9\n'
             '          retry: {initial_interval: 0.2, max_interval: 0.5}\n')
    busy = start(compile_c('split.c', tmp_path), 600)
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([COMMAND, 'run', '--config', _config(tmp_path, extra), '--duration', '4',
                                 '--interval', '1', '--output', str(tmp_path / 'out')],
                                stdin=slave, stdout=slave, stderr=slave, env=_env(), close_fds=True)
        os.close(slave)
        chunks = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the other side is closed
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        proc.wait(timeout=60)
    finally:
        os.close(master)
        busy.kill()
        busy.wait()
    raw = b''.join(chunks).decode('utf-8', 'replace')
    assert 'Traceback' not in raw
    assert raw.count('host.arch is required but is disabled') == 1, raw
    rows = _visible_rows(raw)
    logged = [row for row in rows if ' WARNING ' in row]
    assert len(logged) >= 2, rows  # the start-up warning and at least one from an export
    for row in logged:
        assert LOG_LINE.match(row), row  # never behind the status line
    assert len([row for row in rows if row.startswith('host-profiler 00:')]) >= 1
    assert rows[-1] == '' and rows[-2].startswith('host-profiler: ') and 'host-profiler 00:' not in rows[-2]


def test_an_interval_without_samples_exports_nothing(requires_bpf, tmp_path):
    idle = subprocess.Popen(['sleep', '120'])
    try:
        with FakeOtlp() as otlp:
            out, _ = _run(tmp_path, '--duration', '3', '--interval', '1', extra=(
                '    receiver:\n      pids: [{}]\n    health_metrics: {{enabled: false}}\n'
                '    exporters:\n      otlp_http:\n        - endpoint: {}\n').format(idle.pid, otlp.url))
            requests = list(otlp.requests)
    finally:
        idle.kill()
        idle.wait()
    assert requests == []
    assert not (out / 'profiles').exists() or list((out / 'profiles').iterdir()) == []
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['samples'] == 0
    assert summary['empty_intervals'] >= 4  # the start-up run, every interval, the final collection


class _Blackhole:
    """A TCP server that accepts connections and never answers: an export waits for its timeout."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(64)
        self.url = 'http://127.0.0.1:{}'.format(self.sock.getsockname()[1])
        self.connections = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.connections:
            conn.close()


def test_a_signal_during_the_final_flush_ends_it_quietly(requires_bpf, tmp_path):
    blackhole = _Blackhole()
    busy = start(compile_c('split.c', tmp_path), 600)
    lines = []
    try:
        proc = subprocess.Popen([COMMAND, 'run', '--config', _config(tmp_path, (
            '    health_metrics: {{enabled: false}}\n'
            '    exporters:\n      otlp_http:\n        - endpoint: {}\n          timeout: 60\n').format(blackhole.url)),
            '--duration', '100', '--interval', '1', '--status', '--output', str(tmp_path / 'out')],
            stderr=subprocess.PIPE, text=True, env=_env())
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
        reader.start()
        deadline = time.monotonic() + 180
        while not (blackhole.connections and sum(line.startswith('host-profiler 00:') for line in lines) >= 2):
            assert time.monotonic() < deadline and proc.poll() is None, lines
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # ends the run: the final flush waits for the export (60 s)
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)  # ends the wait
        proc.wait(timeout=30)  # FLUSH_TIMEOUT_S: without the second signal, it would take longer
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        busy.kill()
        busy.wait()
        blackhole.close()
    err = ''.join(lines)
    assert proc.returncode == 0, err
    assert 'Traceback' not in err and 'Exception ignored' not in err
    assert 'host-profiler: interrupted during the final flush: pending exports were not delivered' in err
    assert err.rstrip().endswith('host-profiler: wrote {}'.format(tmp_path / 'out'))
    assert 'samples' in json.loads((tmp_path / 'out' / 'summary.json').read_text())
