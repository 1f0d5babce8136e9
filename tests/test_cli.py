# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The standalone command's contract: converter errors exit non-zero with the message and the key path
(nothing is started), and `run` writes every documented output."""
import gzip
import json
import os

import pytest
from tests.workloads import compile_c, start

from datadog_checks.host_profiler.cli import main
from datadog_checks.host_profiler.profile.otlp import decode_bytes, validate


def _local_config(tmp_path):
    """A config whose lock file and diagnostics stay under tmp_path."""
    config = tmp_path / 'conf.yaml'
    config.write_text('instances:\n  - lock_file: {}\n    diagnostics_dir: {}\n'.format(tmp_path / 'lock', tmp_path))
    return config


def test_converter_error_exits_with_the_key_path(tmp_path, capsys):
    config = tmp_path / 'conf.yaml'
    config.write_text('instances:\n  - receiver:\n      symbol_uploader:\n        enabled: true\n'
                      '        symbol_endpoints: []\n')
    assert main(['run', '--config', str(config), '--duration', '1', '--output', str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err
    assert 'symbol_endpoints cannot be empty when symbol_uploader is enabled' in err
    assert 'receiver.symbol_uploader.symbol_endpoints' in err


def test_invalid_value_exits_with_the_key_path(tmp_path, capsys):
    config = tmp_path / 'conf.yaml'
    config.write_text('instances:\n  - receiver:\n      samples_per_second: fast\n')
    assert main(['check', '--config', str(config)]) == 2
    assert 'samples_per_second' in capsys.readouterr().err


@pytest.mark.integration
def test_run_writes_every_output(requires_bpf, tmp_path):
    config = _local_config(tmp_path)
    out = tmp_path / 'out'
    busy = start(compile_c('split.c', tmp_path), 10)  # an idle host may give no sample in 3 s
    try:
        assert main(['run', '--config', str(config), '--duration', '3', '--interval', '1.5', '--output', str(out)]) == 0
    finally:
        busy.kill()
        busy.wait()
    exports = sorted(os.listdir(out / 'profiles'))
    assert len(exports) >= 2 and all(name.endswith('.otlp.pb') for name in exports)
    for name in exports:
        assert validate(decode_bytes((out / 'profiles' / name).read_bytes())) == []
    assert gzip.decompress((out / 'profile.pb.gz').read_bytes())
    html = (out / 'flamegraph.html').read_text()
    assert '<html' in html.lower() and 'http://' not in html and 'https://' not in html
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['samples'] > 0 and 'top_self' in summary and 'losses' in summary
    for line in (out / 'stacks.folded').read_text().splitlines():
        stack, count = line.rsplit(' ', 1)
        assert int(count) > 0 and stack


def test_a_signal_between_runs_loses_no_sample(requires_bpf, tmp_path):
    """SIGINT/SIGTERM arrive between two check runs: what was sampled since the last run is
    collected, exported and in the final outputs (the run interval here is longer than the life)."""
    import signal
    import threading

    config = _local_config(tmp_path)
    out = tmp_path / 'out'
    busy = start(compile_c('split.c', tmp_path), 20)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    # 10 s: start-up (the BCC compile) takes seconds on a loaded machine; this test is about the samples
    # after it, start-up time is measured by benchmarks/startup.py
    timer = threading.Timer(10.0, os.kill, (os.getpid(), signal.SIGTERM))
    try:
        timer.start()
        assert main(['run', '--config', str(config), '--duration', '100', '--interval', '60', '--output', str(out)]) == 0
    finally:
        timer.cancel()
        for s, h in handlers.items():
            signal.signal(s, h)
        busy.kill()
        busy.wait()
    summary = json.loads((out / 'summary.json').read_text())
    # several seconds of a busy thread at 20 Hz, all after the only regular run (at start-up)
    assert summary['samples'] >= 30, summary['samples']
    exported = [decode_bytes((out / 'profiles' / n).read_bytes()) for n in os.listdir(out / 'profiles')]
    assert exported and all(validate(p) == [] for p in exported)


@pytest.mark.integration
def test_the_command_exits_at_once_with_every_output_written(requires_bpf, tmp_path):
    """The installed `host-profiler` skips the interpreter's teardown (os._exit): everything it
    wrote must be complete by then, its log lines included, and the exit status kept."""
    import signal
    import subprocess
    import sys
    import time

    command = os.path.join(os.path.dirname(sys.executable), 'host-profiler')
    config = _local_config(tmp_path)
    # a user's value that conflicts with what the profiler needs: a WARNING line
    config.write_text(config.read_text() + "    processors:\n      resourcedetection: {host.arch: false}\n")
    out = tmp_path / 'out'
    busy = start(compile_c('split.c', tmp_path), 20)
    try:
        proc = subprocess.Popen([command, 'run', '--config', str(config), '--duration', '100', '--interval', '1',
                                 '--output', str(out)], stderr=subprocess.PIPE, text=True)
        # signal once it exports (start-up time is benchmarks/startup.py's business, not this test's)
        deadline = time.monotonic() + 60
        while not list(out.glob('profiles/*.otlp.pb')) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        busy.kill()
        busy.wait()
    assert proc.returncode == 0, err
    assert 'host.arch is required but is disabled' in err  # a WARNING log line, flushed before the exit
    assert err.rstrip().endswith('host-profiler: wrote {}'.format(out))
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['samples'] > 0
    assert (out / 'flamegraph.html').read_text().rstrip().lower().endswith('</html>')
    assert gzip.decompress((out / 'profile.pb.gz').read_bytes())
    assert sum(int(line.rsplit(' ', 1)[1]) for line in (out / 'stacks.folded').read_text().splitlines()) > 0

    # an error still exits non-zero through the same path
    bad = tmp_path / 'bad.yaml'
    bad.write_text('instances:\n  - receiver:\n      samples_per_second: fast\n')
    assert subprocess.run([command, 'check', '--config', str(bad)], capture_output=True).returncode == 2
