# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Probes of what the sampler needs from the host: privileges, kernel headers, tracefs, BCC.

Each failure becomes a ``SamplerError`` whose message is one line: the cause, then the fix.
"""
from __future__ import annotations

import os
import platform
import subprocess
import time
from typing import Dict, List, Optional

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39

TRACEFS_PATHS = ('/sys/kernel/tracing', '/sys/kernel/debug/tracing')


class SamplerError(Exception):
    """The sampler cannot start (or run). ``str(err)`` is one line: cause and fix."""


def effective_capabilities(status_path: str = '/proc/self/status') -> int:
    try:
        with open(status_path) as f:
            for line in f:
                if line.startswith('CapEff:'):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def check_privileges() -> None:
    if os.geteuid() == 0:
        return
    caps = effective_capabilities()
    has = lambda c: bool(caps & (1 << c))  # noqa: E731
    if has(CAP_SYS_ADMIN) or (has(CAP_BPF) and has(CAP_PERFMON)):
        return
    raise SamplerError(
        'missing privileges to load eBPF programs (uid {}, no CAP_BPF+CAP_PERFMON): '
        'run the Agent/host-profiler as root or grant CAP_BPF,CAP_PERFMON,CAP_SYS_RESOURCE '
        '(e.g. setcap or systemd AmbientCapabilities)'.format(os.geteuid())
    )


def boot_id(proc: str = '/proc') -> str:
    """This boot's id: caches of per-boot things (the vDSO image) are keyed by it."""
    try:
        with open(proc + '/sys/kernel/random/boot_id') as f:
            return f.read().strip()
    except OSError:
        return str(int(time.time()))


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


def headers_error(detail: str = '') -> SamplerError:
    release = kernel_release()
    return SamplerError(
        'cannot compile the eBPF sampler: kernel headers for {} not found or unusable{}: '
        'run scripts/setup.sh, or install linux-headers (linux-headers-$(uname -r) or the '
        'distribution\'s generic headers) and create /lib/modules/{}/build pointing at them'.format(
            release, (' (' + detail + ')') if detail else '', release
        )
    )


def check_headers() -> str:
    d = headers_dir()
    if d is None:
        raise headers_error()
    return d


def tracefs_dir() -> Optional[str]:
    for p in TRACEFS_PATHS:
        if os.path.isdir(os.path.join(p, 'events', 'sched')):
            return p
    return None


def ensure_tracefs() -> str:
    """Tracepoint programs need tracefs (BCC reads the event formats there). Mount it if absent."""
    d = tracefs_dir()
    if d:
        return d
    try:
        subprocess.run(
            ['mount', '-t', 'tracefs', 'nodev', TRACEFS_PATHS[0]],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise SamplerError(
            'tracefs is not mounted and mounting it failed ({}): run '
            '`mount -t tracefs nodev /sys/kernel/tracing` as root'.format(str(e).splitlines()[0] if str(e) else e)
        )
    d = tracefs_dir()
    if not d:
        raise SamplerError(
            'tracefs has no sched events: the kernel needs CONFIG_FTRACE/tracepoints; '
            'mount tracefs at /sys/kernel/tracing'
        )
    return d


def import_bcc():
    try:
        import bcc  # noqa: F401

        return bcc
    except ImportError as e:
        raise SamplerError(
            'the BCC Python module is not importable ({}): install Debian\'s python3-bpfcc '
            '(never the unrelated PyPI package "bcc") and make it importable from your virtualenv '
            '(scripts/setup.sh links it into .venv)'.format(e)
        )


def online_cpus() -> List[int]:
    return _cpu_list('online')


def possible_cpus() -> List[int]:
    """CPU ids the kernel may ever bring online (what a BPF array indexed by CPU must cover)."""
    return _cpu_list('possible')


def _cpu_list(which: str) -> List[int]:
    try:
        with open('/sys/devices/system/cpu/{}'.format(which)) as f:
            text = f.read().strip()
    except OSError:
        return list(range(os.cpu_count() or 1))
    out: List[int] = []
    for part in text.split(','):
        if '-' in part:
            a, b = part.split('-')
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


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
