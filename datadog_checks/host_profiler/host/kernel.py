# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""What the host offers the sampler, read without changing anything: privileges, kernel headers,
tracefs, BPF and kprobe support, BCC. ``probe()`` gathers it all for support (diagnostics, flare).

The checks that stop the sampler from starting (and their ``SamplerError`` messages) are the
receiver's: ``receiver/kernel.py``.
"""
from __future__ import annotations

import os
import platform
from typing import Dict, Optional

from .proc import online_cpus

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39

TRACEFS_PATHS = ('/sys/kernel/tracing', '/sys/kernel/debug/tracing')


def effective_capabilities(status_path: str = '/proc/self/status') -> int:
    try:
        with open(status_path) as f:
            for line in f:
                if line.startswith('CapEff:'):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def kernel_release() -> str:
    return os.uname().release


def headers_dir(release: Optional[str] = None) -> Optional[str]:
    """The kernel headers BCC will use, or None. BCC looks at $BCC_KERNEL_SOURCE, then
    /lib/modules/<release>/{build,source}."""
    release = release or kernel_release()
    env = os.environ.get('BCC_KERNEL_SOURCE')
    candidates = [env] if env else []
    candidates += ['/lib/modules/{}/build'.format(release), '/lib/modules/{}/source'.format(release)]
    for c in candidates:
        if c and os.path.isdir(os.path.join(c, 'include')):
            return c
    return None


def tracefs_dir() -> Optional[str]:
    for p in TRACEFS_PATHS:
        if os.path.isdir(os.path.join(p, 'events', 'sched')):
            return p
    return None


CAPABILITIES = {
    'CAP_IPC_LOCK': 14,
    'CAP_SYS_PTRACE': 19,
    'CAP_SYS_ADMIN': CAP_SYS_ADMIN,
    'CAP_SYS_RESOURCE': 24,
    'CAP_PERFMON': CAP_PERFMON,
    'CAP_BPF': CAP_BPF,
}


def capabilities(status_path: str = '/proc/self/status') -> Dict[str, object]:
    """``{'cap_eff': '000001ff...', 'CAP_BPF': True, ...}``; values are None when unreadable."""
    try:
        with open(status_path) as f:
            cap_eff = next((line.split(':', 1)[1].strip() for line in f if line.startswith('CapEff:')), None)
    except OSError:
        cap_eff = None
    mask = effective_capabilities(status_path)
    out: Dict[str, object] = {'cap_eff': cap_eff}
    for name, bit in CAPABILITIES.items():
        out[name] = bool(mask >> bit & 1) if cap_eff else None
    return out


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _read_int(path: str) -> Optional[int]:
    text = _read_text(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def btf_present(path: str = '/sys/kernel/btf/vmlinux') -> bool:
    return os.path.exists(path)


def tracepoints_available() -> bool:
    return any(os.path.isdir(os.path.join(p, 'events', 'sched', 'sched_switch')) for p in TRACEFS_PATHS)


def kprobes_available() -> bool:
    """The perf kprobe PMU (what BCC uses first) or tracefs kprobe_events."""
    if os.path.exists('/sys/bus/event_source/devices/kprobe/type'):
        return True
    return any(os.path.exists(os.path.join(p, 'kprobe_events')) for p in TRACEFS_PATHS)


def bcc_version() -> Optional[str]:
    try:
        import bcc

        return getattr(bcc, '__version__', 'unknown')
    except Exception:
        return None


def probe() -> Dict[str, object]:
    """Everything support needs to know about whether this host can run the sampler (never raises)."""
    return {
        'kernel_release': kernel_release(),
        'machine': platform.machine(),
        'euid': os.geteuid(),
        'capabilities': capabilities(),
        'btf_present': btf_present(),
        'perf_event_paranoid': _read_int('/proc/sys/kernel/perf_event_paranoid'),
        'unprivileged_bpf_disabled': _read_int('/proc/sys/kernel/unprivileged_bpf_disabled'),
        'bpf_stats_enabled': _read_int('/proc/sys/kernel/bpf_stats_enabled'),
        'kernel_headers': headers_dir(),
        'tracefs': tracefs_dir(),
        'tracepoints_available': tracepoints_available(),
        'kprobes_available': kprobes_available(),
        'online_cpus': len(online_cpus()),
        'bcc_version': bcc_version(),
    }
