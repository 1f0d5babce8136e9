# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Side by side with py-spy (issue #16): PyPI's py-spy (`record --native --format raw`, installed by
scripts/setup.sh through the dev extra) and our receiver sample the same pysplit.py process at the
same time, and every function's inclusive share agrees within 2 points.

Each interpreter's workload runs alone (one after the other, under one receiver), for CPU_SECONDS of
its main thread's CPU time: we sample its CPU clock at RATE Hz, py-spy its wall clock at RATE Hz
(while it runs on one core, py-spy and the receiver on the other), so each side has ~10,000
samples and the difference of two shares near 75% has a standard deviation of ~0.6 points: 2
points is more than 3 of them (checked from the actual counts).

py-spy's `--native` cannot be combined with `--nonblocking` ("Can't get native stack traces with
the --nonblocking option"), so py-spy stops the process for each of its samples, as by default.
"""
import collections
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest

from datadog_checks.host_profiler.profile.builder import build_profile
from datadog_checks.host_profiler.profile.model import FRAME_CPYTHON
from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.symbols.symbolizer import Symbolizer
from tests.workloads.pythons import interpreters, wait_python_registered

from tests import REPO_ROOT

# the fixture runs inside the first test's timeout: 7 interpreters one after the other, 5-7 min on a loaded host
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

PYSPLIT = os.path.join(REPO_ROOT, 'tests', 'workloads', 'pysplit.py')
RATE = 999
CPU_SECONDS = 10
TOLERANCE = 2.0
# the functions compared (inclusive shares), methods by their last name (3.11+ says Worker.run)
FUNCS = ('main', 'run', 'descend', 'heavy', 'light', 'spin')
# a share near 75% over n and m samples: the difference's standard deviation must be at most a third
# of the tolerance
P = 0.75
WAIT = 300


def _py_spy():
    """py-spy next to this interpreter (the venv scripts/setup.sh makes), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), 'py-spy')
    return here if os.access(here, os.X_OK) else shutil.which('py-spy')


def _sigma_diff(n, m):
    return 100.0 * (P * (1 - P) * (1.0 / max(1, n) + 1.0 / max(1, m))) ** 0.5


_SPY_FRAME = re.compile(r'^(.*) \((.*?)(?::(\d+))?\)$')


def _spy_shares(path):
    """(samples of the program, Counter of function -> samples that include it) from py-spy's raw
    output: one `frame;frame;... count` line per stack, frames `name (file:line)`."""
    total = 0
    funcs = collections.Counter()
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip('\n').rpartition(' ')
            if not stack:
                continue
            names = set()
            for fr in stack.split(';'):
                m = _SPY_FRAME.match(fr)
                if m and m.group(2).endswith('pysplit.py'):
                    names.add(m.group(1).rsplit('.', 1)[-1])
            if not names or 'warm_up' in names:
                continue  # interpreter start-up or shutdown, or the wait for the start signal
            total += int(count)
            for n in names:
                funcs[n] += int(count)
    return total, funcs


def _our_shares(resource, pid):
    """The same from our profile: the main thread's samples with a frame of pysplit.py."""
    total = 0
    funcs = collections.Counter()
    for s in resource.samples if resource else []:
        if s.thread_id != pid:
            continue
        names = {f.function.rsplit('.', 1)[-1] for f in s.frames
                 if f.kind == FRAME_CPYTHON and f.source_file.endswith('pysplit.py')}
        if not names or 'warm_up' in names:
            continue
        total += s.value
        for n in names:
            funcs[n] += s.value
    return total, funcs




def _first_in_line():
    """The workload runs at nice -20 (we are root): py-spy samples the wall clock of a runnable
    process, we sample its CPU clock; the two measure the same only while the process does not wait
    for a CPU. On a busy host it would wait, and where it waits is not where it spends its CPU time
    (it is preempted most at the points that end its time slice, such as a system call that reads
    its CPU clock, so py-spy sees those more: run 2-3.5 points above ours, heavy 1-4 below).
    py-spy runs at nice -20 too: it stops the process for each sample (``--native``), so a py-spy
    that waits for a CPU holds the process stopped, and falls behind (1,000 samples instead of 10,000)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -20)
    except OSError:
        pass


def _start_py_spy(spy, pid, out):
    """py-spy recording ``pid`` until it exits; returns (process, its output lines) once it samples."""
    proc = subprocess.Popen([spy, 'record', '--native', '--format', 'raw', '--rate', str(RATE), '--pid', str(pid),
                             '--output', out], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_first_in_line)
    lines = []
    started = threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line.rstrip())
            if 'Sampling process' in line:
                started.set()
        started.set()

    threading.Thread(target=read, daemon=True).start()
    started.wait(30)
    return proc, lines


@pytest.fixture(scope='module')
def side_by_side(requires_bpf, tmp_path_factory):
    """{label: (ours: (total, Counter), py-spy's: (total, Counter) or None, py-spy's messages)}"""
    from datadog_checks.host_profiler.receiver.receiver import Receiver, ReceiverConfig

    spy = _py_spy()
    if not spy:
        pytest.fail('py-spy is not installed: scripts/setup.sh installs it (the dev extra of setup.py)')
    tmp = tmp_path_factory.mktemp('pyspy')
    todo = [(label, path) for label, path in interpreters() if path and os.path.exists(path)]
    procs = {}
    for label, path in todo:
        go = str(tmp / 'go-{}'.format(label))
        procs[label] = (subprocess.Popen([path, PYSPLIT, '{}cpu'.format(CPU_SECONDS), '5', go],
                                         stdout=subprocess.DEVNULL, preexec_fn=_first_in_line), go)
    tel = Telemetry()
    rx = Receiver(ReceiverConfig(samples_per_second=RATE, drain_interval=0.5, check_interval=0, unwinding='auto',
                                 lock_path=str(tmp / 'hp.lock'), pids=[p.pid for p, _ in procs.values()]),
                  telemetry=tel)
    spied = {}
    try:
        rx.start()
        # each waits for its start signal, sampled (its busy thread) until we know it, then idle
        print('registered:', wait_python_registered(rx, [p.pid for p, _ in procs.values()], 60))
        for _, go in procs.values():
            open(go + '.idle', 'w').close()
        for label, (p, go) in procs.items():
            out = str(tmp / 'spy-{}.txt'.format(label))
            sp, lines = _start_py_spy(spy, p.pid, out)
            t0 = time.monotonic()
            open(go, 'w').close()
            p.wait(WAIT)
            try:
                sp.wait(60)  # it writes its output when the process exits
            except subprocess.TimeoutExpired:
                sp.kill()
                sp.wait()
            print('{}: {:.1f} s, py-spy exit {}: {}'.format(label, time.monotonic() - t0, sp.returncode,
                                                           ' | '.join(lines[-3:])))
            spied[label] = (out if os.path.exists(out) and os.path.getsize(out) else None, lines)
    finally:
        rx.stop(block=True, timeout=60)
        col = rx.collect()
        for p, _ in procs.values():
            if p.poll() is None:
                p.kill()
    sym = Symbolizer(tel)
    profile = build_profile(col.samples, col.processes.get, sym.symbolize_user, sym.symbolize_kernel,
                            time_unix_nano=0, duration_nano=1, period_nano=1)
    by_pid = {r.pid: r for r in profile.resources}
    out = {}
    for label, (p, _) in procs.items():
        path, lines = spied.get(label, (None, ['not run']))
        out[label] = (_our_shares(by_pid.get(p.pid), p.pid), _spy_shares(path) if path else None, lines)
    return out


@pytest.mark.parametrize('label,path', interpreters())
def test_shares_agree_with_py_spy(side_by_side, label, path):
    if not (path and os.path.exists(path)):
        if label.startswith('debian'):
            pytest.fail('Debian python3.11 is missing: run scripts/setup.sh')
        pytest.skip('{} is not installed here (pyenv install it to test it)'.format(label))
    (n, ours), spy, lines = side_by_side[label]
    if spy is None or not spy[0]:
        pytest.skip('py-spy could not profile {}: {}'.format(label, ' | '.join(lines[-5:])))
    m, theirs = spy
    rows = {fn: (100.0 * ours[fn] / max(1, n), 100.0 * theirs[fn] / m) for fn in FUNCS}
    rows['heavy/(heavy+light)'] = (100.0 * ours['heavy'] / max(1, ours['heavy'] + ours['light']),
                                   100.0 * theirs['heavy'] / max(1, theirs['heavy'] + theirs['light']))
    sigma = _sigma_diff(min(n, ours['heavy'] + ours['light']), min(m, theirs['heavy'] + theirs['light']))
    print('py-spy {}: ours {} samples, py-spy {}, sigma of a difference {:.2f} points; '.format(label, n, m, sigma)
          + ', '.join('{} {:.2f}/{:.2f}'.format(fn, a, b) for fn, (a, b) in rows.items()))
    assert 3 * sigma <= TOLERANCE, '{}: {} and {} samples: 2 points is not 3 standard deviations ({:.2f})'.format(
        label, n, m, sigma)
    off = {fn: (round(a, 2), round(b, 2)) for fn, (a, b) in rows.items() if abs(a - b) > TOLERANCE}
    assert not off, '{}: shares (ours, py-spy) more than {} points apart: {}'.format(label, TOLERANCE, off)
    # and both see the program: the split near 3:1
    assert abs(rows['heavy/(heavy+light)'][0] - 75) <= TOLERANCE, rows
