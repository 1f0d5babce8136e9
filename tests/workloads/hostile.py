# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Files swapped after a process mapped them, and calls that may block on them: for the tests and
the benchmark of the readers of mapped files (tests/reliability/test_hostile_mapped_files.py,
benchmarks/hostile_mapped_files.py)."""
import os
import shutil
import threading
import time


def swap_mapped_file(path, kind, other=None):
    """Put in ``path``'s place (the file itself kept aside as ``path.mapped``): ``copy`` (of
    ``other``), ``fifo``, ``dev_zero`` (a symlink to /dev/zero) or ``sparse`` (a 10 GB sparse file).
    Returns the function that puts the file back."""
    os.rename(path, path + '.mapped')
    if kind == 'copy':
        shutil.copy(other, path)
    elif kind == 'fifo':
        os.mkfifo(path)
    elif kind == 'dev_zero':
        os.symlink('/dev/zero', path)
    elif kind == 'sparse':
        with open(path, 'wb') as f:
            f.truncate(10 << 30)
    else:
        os.rename(path + '.mapped', path)
        raise ValueError('unknown swap {!r}'.format(kind))
    return lambda: (os.unlink(path), os.rename(path + '.mapped', path))


def call_bounded(seconds, fn):
    """fn() on a daemon thread: a read that blocks (a FIFO) cannot hang the caller. Returns
    ({'value': result} or {'error': exception}, seconds taken), the seconds None when the call
    still runs after ``seconds``."""
    out = {}

    def run():
        try:
            out['value'] = fn()
        except Exception as e:  # noqa: BLE001 - handed back to the caller
            out['error'] = e

    th = threading.Thread(target=run, daemon=True)
    t0 = time.monotonic()
    th.start()
    th.join(seconds)
    return out, None if th.is_alive() else time.monotonic() - t0
