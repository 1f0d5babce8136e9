# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The CPython interpreters on this machine that the Python-frames tests run (pyenv's and Debian's)."""
import glob
import os

DEBIAN_PYTHON = '/usr/bin/python3.11'
PYENV_ROOT = os.environ.get('PYENV_ROOT') or os.path.expanduser('~/.pyenv')


def pyenv_python(minor: int) -> str:
    """Path of pyenv's python3.<minor>, '' when not installed."""
    found = sorted(glob.glob(os.path.join(PYENV_ROOT, 'versions', '3.{}.*'.format(minor), 'bin',
                                          'python3.{}'.format(minor))))
    return found[-1] if found else ''


def interpreters():
    """(label, path) of every interpreter to test: pyenv 3.8-3.13 and Debian's 3.11 (always)."""
    out = [('pyenv-3.{}'.format(m), pyenv_python(m)) for m in range(8, 14)]
    out.append(('debian-3.11', DEBIAN_PYTHON))
    return out


def wait_python_registered(receiver, pids, timeout):
    """Until the receiver's Python runtime walks every one of ``pids`` (registered at their first
    sample); False when ``timeout`` s passed first."""
    import time

    rt = next(r for r in receiver.runtimes.runtimes if r.name == 'python')
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if all((rt._procs.get(pid) or (0, 0, None, None))[3] is not None for pid in pids):
            return True
        time.sleep(0.05)
    return False
