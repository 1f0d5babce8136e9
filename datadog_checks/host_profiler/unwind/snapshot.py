# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Register + stack snapshots of a live thread without BPF, through ptrace (x86-64, root).

``capture(tid, stack_size)`` stops the thread (``PTRACE_SEIZE`` + ``PTRACE_INTERRUPT``),
reads ``user_regs_struct`` (``PTRACE_GETREGS``) and ``stack_size`` bytes from ``/proc/TID/mem``
at rsp (fewer when the stack mapping ends first), and lets the thread go. That is what
the BPF program hands over per sample, so tests and benchmarks exercise the unwinder on
real stacks. Not used by the profiler itself.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import NamedTuple, Optional

PTRACE_GETREGS = 12
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207

_libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]


class _UserRegs(ctypes.Structure):
    _fields_ = [(n, ctypes.c_ulonglong) for n in (
        'r15', 'r14', 'r13', 'r12', 'rbp', 'rbx', 'r11', 'r10', 'r9', 'r8', 'rax', 'rcx', 'rdx', 'rsi', 'rdi',
        'orig_rax', 'rip', 'cs', 'eflags', 'rsp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs')]


class Snapshot(NamedTuple):
    tid: int
    ip: int
    sp: int
    bp: int
    stack: bytes  # from sp up

    @property
    def regs(self):
        return (self.ip, self.sp, self.bp)


def _ptrace(req: int, tid: int, addr: int = 0, data: Optional[object] = None) -> int:
    r = _libc.ptrace(req, tid, ctypes.c_void_p(addr), data if data is not None else None)
    if r == -1:
        e = ctypes.get_errno()
        if e:
            raise OSError(e, os.strerror(e))
    return r


def read_mem(pid: int, address: int, size: int) -> bytes:
    """Up to ``size`` bytes at ``address``; shorter when the mapping ends (page by page)."""
    out = bytearray()
    with open('/proc/{}/mem'.format(pid), 'rb', buffering=0) as f:
        pos = address
        end = address + size
        while pos < end:
            chunk = min(end - pos, 4096 - (pos & 4095))
            try:
                f.seek(pos)
                data = f.read(chunk)
            except OSError:
                break
            if not data:
                break
            out += data
            pos += len(data)
            if len(data) < chunk:
                break
    return bytes(out)


def capture(tid: int, stack_size: int = 16384, pid: Optional[int] = None) -> Snapshot:
    """Stop ``tid``, take its registers and the top ``stack_size`` bytes of its stack, resume it."""
    _ptrace(PTRACE_SEIZE, tid, 0, None)
    inject = 0
    try:
        _ptrace(PTRACE_INTERRUPT, tid, 0, None)
        _, status = os.waitpid(tid, 0x40000000)  # __WALL
        if os.WIFSTOPPED(status) and (status >> 16) == 0 and os.WSTOPSIG(status) != 0x05:
            # a signal-delivery-stop came first: give the signal back on detach, or it is lost
            inject = os.WSTOPSIG(status)
        regs = _UserRegs()
        _ptrace(PTRACE_GETREGS, tid, 0, ctypes.byref(regs))
        stack = read_mem(pid or tid, regs.rsp, stack_size)
    finally:
        try:
            _libc.ptrace(PTRACE_DETACH, tid, None, ctypes.c_void_p(inject) if inject else None)
        except OSError:
            pass
    return Snapshot(tid, regs.rip, regs.rsp, regs.rbp, stack)
