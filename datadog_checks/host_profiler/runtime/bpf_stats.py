# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Kernel-side cost of our BPF programs, and the kernel/BPF capability probe for flares.

Run time and run count
----------------------
The kernel accounts ``run_time_ns``/``run_cnt`` per BPF program only while BPF stats are
enabled: globally with the ``kernel.bpf_stats_enabled`` sysctl, or for as long as a
process holds the fd returned by the ``BPF_ENABLE_STATS`` command (Linux >= 5.8). Stats
cost a little on every program run (two clock reads, ~20-30 ns), which is why
``enable_bpf_stats`` defaults to false. When enabled, ``BpfStats`` holds the
``BPF_ENABLE_STATS`` fd (falling back to the sysctl, restored at ``close()``) so nothing
stays enabled after the profiler is gone.

``BpfStats(telemetry, prog_ids_provider).collect()`` reports, per program
(tag ``program:<name>``):

- ``bpf.run_time`` (count, seconds since the previous collect),
- ``bpf.run_count`` (count, runs since the previous collect),
- ``bpf.stats_enabled`` (gauge, 0/1, no tag).

Program info is read with ``BPF_PROG_GET_FD_BY_ID`` + ``BPF_OBJ_GET_INFO_BY_FD``
(``bpftool prog show id N --json`` as a fallback). BPF map fill ratios are reported by the
sampler (``sampler.map_fill_ratio``), not here.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import struct
import subprocess
from typing import Callable, Dict, Iterable, Mapping, Optional, Union

from .telemetry import Telemetry

BPF_STATS_SYSCTL = '/proc/sys/kernel/bpf_stats_enabled'

# bpf(2) commands
BPF_PROG_LOAD = 5
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_ENABLE_STATS = 32
BPF_STATS_RUN_TIME = 0

# struct bpf_prog_info layout (include/uapi/linux/bpf.h), offsets that do not move.
_PROG_INFO_SIZE = 232
_OFF_ID = 4
_OFF_NAME = 64
_OFF_RUN_TIME_NS = 192
_OFF_RUN_CNT = 200

_BPF_SYSCALL_NR = {
    'x86_64': 321,
    'amd64': 321,
    'aarch64': 280,
    'arm64': 280,
    'riscv64': 280,
    'loongarch64': 280,
    'ppc64le': 361,
    's390x': 351,
    'i686': 357,
    'i386': 357,
    'armv7l': 386,
}

ProgIds = Union[Iterable[int], Mapping[int, str]]


class BpfError(OSError):
    pass


# -- raw bpf(2) ------------------------------------------------------------------------------

_libc = None


def _bpf(cmd: int, attr: ctypes.Array) -> int:
    global _libc
    nr = _BPF_SYSCALL_NR.get(platform.machine().lower())
    if nr is None:
        raise BpfError(errno.ENOSYS, 'bpf syscall number unknown for ' + platform.machine())
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), attr, ctypes.c_uint(ctypes.sizeof(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise BpfError(err, os.strerror(err))
    return ret


def prog_fd_by_id(prog_id: int) -> int:
    attr = ctypes.create_string_buffer(16)
    struct.pack_into('<I', attr, 0, prog_id)
    return _bpf(BPF_PROG_GET_FD_BY_ID, attr)


def prog_info_by_fd(fd: int) -> Dict[str, object]:
    """``{'id', 'name', 'run_time_ns', 'run_cnt'}`` of a program fd (run fields None on old kernels)."""
    info = ctypes.create_string_buffer(_PROG_INFO_SIZE)
    attr = ctypes.create_string_buffer(16)
    struct.pack_into('<IIQ', attr, 0, fd, _PROG_INFO_SIZE, ctypes.addressof(info))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    info_len = struct.unpack_from('<I', attr, 4)[0]
    raw = info.raw
    out: Dict[str, object] = {
        'id': struct.unpack_from('<I', raw, _OFF_ID)[0],
        'name': raw[_OFF_NAME:_OFF_NAME + 16].split(b'\0', 1)[0].decode('ascii', 'replace'),
        'run_time_ns': None,
        'run_cnt': None,
    }
    if info_len >= _OFF_RUN_CNT + 8:
        out['run_time_ns'], out['run_cnt'] = struct.unpack_from('<QQ', raw, _OFF_RUN_TIME_NS)
    return out


def prog_id_of_fd(fd: int) -> int:
    """The kernel id of a loaded program, from its fd (e.g. BCC's ``bpf.funcs[name].fd``)."""
    return int(prog_info_by_fd(fd)['id'])


def prog_info_by_id(prog_id: int) -> Dict[str, object]:
    fd = prog_fd_by_id(prog_id)
    try:
        return prog_info_by_fd(fd)
    finally:
        os.close(fd)


def _prog_info_bpftool(prog_id: int, bpftool: str = 'bpftool', timeout: float = 5.0) -> Dict[str, object]:
    out = subprocess.run(
        [bpftool, 'prog', 'show', 'id', str(prog_id), '--json'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, check=True,
    ).stdout
    doc = json.loads(out)
    if isinstance(doc, list):
        doc = doc[0] if doc else {}
    return {
        'id': doc.get('id', prog_id),
        'name': doc.get('name', ''),
        'run_time_ns': doc.get('run_time_ns', 0 if 'id' in doc else None),
        'run_cnt': doc.get('run_cnt', 0 if 'id' in doc else None),
    }


def enable_stats_fd() -> int:
    """``BPF_ENABLE_STATS``: stats stay on while the returned fd is open (Linux >= 5.8)."""
    attr = ctypes.create_string_buffer(8)
    struct.pack_into('<I', attr, 0, BPF_STATS_RUN_TIME)
    return _bpf(BPF_ENABLE_STATS, attr)


def read_stats_sysctl(path: str = BPF_STATS_SYSCTL) -> Optional[bool]:
    try:
        with open(path) as f:
            return f.read().strip() == '1'
    except OSError:
        return None


class BpfStats:
    """Per-program BPF run time and run count from the kernel's BPF stats.

    ``prog_ids_provider`` returns the ids of our programs: an iterable of ids, or a mapping
    id -> display name (the kernel keeps only 15 characters of a name). Called on every
    ``collect()``, so it may change as programs are loaded and unloaded.
    """

    def __init__(
        self,
        telemetry: Telemetry,
        prog_ids_provider: Optional[Callable[[], ProgIds]] = None,
        enable_bpf_stats: bool = False,
        bpftool: str = 'bpftool',
        sysctl_path: str = BPF_STATS_SYSCTL,
        log=None,
    ) -> None:
        self._telemetry = telemetry
        self._provider = prog_ids_provider
        self._bpftool = bpftool
        self._sysctl_path = sysctl_path
        self._log = log
        self._prev: Dict[int, tuple] = {}  # id -> (run_time_ns, run_cnt)
        self._stats_fd: Optional[int] = None
        self._sysctl_set_by_us = False
        self.enable_error: Optional[str] = None
        if enable_bpf_stats:
            self.enable()

    # -- enabling ---------------------------------------------------------------------------

    def enable(self) -> bool:
        """Turns BPF stats on for the lifetime of this object. Returns True when they are on."""
        if self.stats_enabled:
            return True
        try:
            self._stats_fd = enable_stats_fd()
            return True
        except OSError as e:
            fd_error = 'BPF_ENABLE_STATS: {}'.format(e)
        try:
            with open(self._sysctl_path, 'w') as f:
                f.write('1\n')
            self._sysctl_set_by_us = True
            return True
        except OSError as e:
            self.enable_error = '{}; sysctl {}: {}'.format(fd_error, self._sysctl_path, e)
            if self._log is not None:
                self._log.warning('Could not enable BPF stats (%s)', self.enable_error)
            return False

    @property
    def stats_enabled(self) -> bool:
        return self._stats_fd is not None or bool(read_stats_sysctl(self._sysctl_path))

    def close(self) -> None:
        """Releases what ``enable()`` turned on. Safe to call twice."""
        if self._stats_fd is not None:
            try:
                os.close(self._stats_fd)
            except OSError:
                pass
            self._stats_fd = None
        if self._sysctl_set_by_us:
            try:
                with open(self._sysctl_path, 'w') as f:
                    f.write('0\n')
            except OSError:
                pass
            self._sysctl_set_by_us = False

    # -- collection -------------------------------------------------------------------------

    def _read(self, prog_id: int) -> Optional[Dict[str, object]]:
        try:
            return prog_info_by_id(prog_id)
        except OSError as e:
            if e.errno == errno.ENOENT:  # program gone
                return None
        try:
            return _prog_info_bpftool(prog_id, self._bpftool)
        except Exception:
            return None

    def collect(self) -> None:
        """Puts ``bpf.stats_enabled`` and, when enabled, per-program deltas into telemetry. Never raises."""
        enabled = self.stats_enabled
        self._telemetry.gauge('bpf.stats_enabled', 1 if enabled else 0)
        if not enabled or self._provider is None:
            return
        try:
            ids = self._provider() or ()
        except Exception:
            return
        names = dict(ids) if isinstance(ids, Mapping) else {int(i): None for i in ids}
        seen = set()
        for prog_id, display in names.items():
            info = self._read(int(prog_id))
            if info is None or info.get('run_cnt') is None:
                continue
            seen.add(prog_id)
            run_time, run_cnt = int(info['run_time_ns'] or 0), int(info['run_cnt'] or 0)
            prev_time, prev_cnt = self._prev.get(prog_id, (0, 0))
            if run_time < prev_time or run_cnt < prev_cnt:  # reset (stats re-enabled, id reused)
                prev_time, prev_cnt = 0, 0
            self._prev[prog_id] = (run_time, run_cnt)
            tags = ['program:{}'.format(display or info.get('name') or prog_id)]
            self._telemetry.count('bpf.run_time', (run_time - prev_time) / 1e9, tags=tags)
            self._telemetry.count('bpf.run_count', run_cnt - prev_cnt, tags=tags)
        for gone in set(self._prev) - seen:
            del self._prev[gone]
