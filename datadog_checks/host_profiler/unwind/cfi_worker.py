# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Compiles CFI tables in a short-lived child process, for the in-kernel unwinder's loader
(receiver/kernel_unwind.py).

Compiling a file's CFI in Python makes many small objects (one list of rows per FDE): python3.11's
64k rows peak at ~16 MiB. Freed, most of that stays in the profiler's RSS: CPython's 1 MiB object
arenas are returned only when wholly empty, and the drains' long-lived objects land in them
meanwhile (29 arenas, 10 MiB of them unused pools, after loading 4 CPython processes).
``malloc_trim`` does not reach them. A child that compiles the files of one load and exits gives
all of it back; only the compact result (row starts, rule indexes, rules, PT_LOAD segments) comes
back through a pipe.

Protocol: the parent passes the open files as inherited descriptors and in-memory images (the
vDSO) on stdin; the child writes one length-prefixed record per request on stdout.
"""
from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import time
from array import array
from typing import Any, List, Tuple

_LEN = struct.Struct('<Q')
_PKG_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


_BOOT = """
import os, sys, types
for name, sub in (('datadog_checks', 'datadog_checks'), ('datadog_checks.host_profiler', 'datadog_checks/host_profiler')):
    m = types.ModuleType(name)
    m.__path__ = [os.path.join({root!r}, sub)]
    sys.modules[name] = m
from datadog_checks.host_profiler.unwind.cfi_worker import _child
_child()
"""


class WorkerTable:
    """What ``compile_deltas`` needs of a ``CfiTable``."""

    __slots__ = ('starts', 'rule_idx', 'rules')

    def __init__(self, starts: array, rule_idx: array, rules: list) -> None:
        self.starts = starts
        self.rule_idx = rule_idx
        self.rules = rules

    def __len__(self) -> int:
        return len(self.starts)


def _result(table: Any, info: Any) -> tuple:
    return ('ok', table.starts.tobytes(), table.rule_idx.typecode, table.rule_idx.tobytes(),
            [tuple(r) for r in table.rules], tuple(tuple(x) for x in info.loads))


def _child() -> None:
    from .cfi import CfiError, build_cfi_table

    requests = pickle.load(sys.stdin.buffer)
    out = sys.stdout.buffer
    for kind, arg in requests:
        try:
            if kind == 'fd':
                with os.fdopen(arg, 'rb') as f:
                    table, info = build_cfi_table(stream=f, lazy=False)
            else:
                table, info = build_cfi_table(data=arg, lazy=False)
            res = _result(table, info)
            del table, info
        except (CfiError, OSError, ValueError, MemoryError) as e:
            res = ('error', type(e).__name__, str(e)[:200])
        blob = pickle.dumps(res, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(_LEN.pack(len(blob)))
        out.write(blob)
        out.flush()
    blob = pickle.dumps(('cpu', time.process_time()), protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_LEN.pack(len(blob)))
    out.write(blob)
    out.flush()


def build_in_child(sources: List[Any], timeout: float = 120.0) -> Tuple[List[tuple], float]:
    """Compile each source (an open binary file, or bytes of an in-memory ELF image) in one child
    process. Returns (per source ``(WorkerTable, loads)`` or ``('error', name, message)``, the
    child's CPU seconds); raises
    OSError when the child cannot be run or dies (the caller then builds in its own process)."""
    requests: List[Tuple[str, Any]] = []
    fds = []
    for src in sources:
        if isinstance(src, (bytes, bytearray)):
            requests.append(('data', bytes(src)))
        else:
            fd = src.fileno()
            fds.append(fd)
            requests.append(('fd', fd))
    env = {k: v for k, v in os.environ.items() if not k.startswith('PYTHON')}
    # -S, and the two parent packages as bare modules: the child imports only unwind/ and host/elf
    # (70 ms of CPU), not the check and its dependencies (250 ms)
    cmd = [sys.executable, '-S', '-s', '-c', _BOOT.format(root=_PKG_ROOT)]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                pass_fds=tuple(fds), env=env, close_fds=True)
    except (OSError, ValueError) as e:
        raise OSError('CFI worker did not start: {}'.format(e))
    try:
        out, _ = proc.communicate(pickle.dumps(requests, protocol=pickle.HIGHEST_PROTOCOL), timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise OSError('CFI worker timed out')
    results: List[tuple] = []
    pos = 0
    for _ in range(len(requests) + 1):
        if pos + _LEN.size > len(out):
            raise OSError('CFI worker exited early (status {})'.format(proc.returncode))
        (n,) = _LEN.unpack_from(out, pos)
        pos += _LEN.size
        res = pickle.loads(out[pos:pos + n])
        pos += n
        if res[0] == 'cpu':
            return results, float(res[1])
        if res[0] == 'ok':
            _, starts, tc, ridx, rules, loads = res
            a, b = array('Q'), array(tc)
            a.frombytes(starts)
            b.frombytes(ridx)
            results.append((WorkerTable(a, b, rules), loads))
        else:
            results.append(res)
    raise OSError('CFI worker sent no end record')
