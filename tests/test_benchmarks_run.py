# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Every script under benchmarks/ still starts: its imports resolve (the tests' fakes and workloads
moved once and three benchmarks broke unseen) and ``--help`` exits 0. The figures themselves
come from ``benchmarks/run_all.sh``, not from tests."""
import os
import subprocess
import sys

import pytest

from tests import REPO_ROOT

BENCHMARKS = os.path.join(REPO_ROOT, 'benchmarks')
SCRIPTS = sorted(f for f in os.listdir(BENCHMARKS) if f.endswith('.py'))


@pytest.mark.parametrize('script', SCRIPTS)
def test_benchmark_script_starts(script):
    out = subprocess.run([sys.executable, os.path.join(BENCHMARKS, script), '--help'], capture_output=True,
                         text=True, timeout=120, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'usage' in out.stdout.lower(), out.stdout[-500:]


def test_paths_the_benchmarks_name_exist():
    """Files of the repository a benchmark names by path (workloads, fakes) are where it says."""
    import re
    missing = []
    for script in SCRIPTS:
        with open(os.path.join(BENCHMARKS, script)) as f:
            src = f.read()
        for parts in re.findall(r"os\.path\.join\(os\.path\.dirname\(HERE\), ((?:'[^']+', )*'[^']+')\)", src):
            rel = os.path.join(*re.findall(r"'([^']+)'", parts))
            if not os.path.exists(os.path.join(REPO_ROOT, rel)):
                missing.append('{}: {}'.format(script, rel))
    assert not missing
