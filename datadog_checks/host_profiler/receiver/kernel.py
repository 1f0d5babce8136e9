# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The checks that decide whether the sampler can start: privileges, kernel headers, tracefs, BCC.

Each failure becomes a ``SamplerError`` whose message is one line: the cause, then the fix.
The read-only probes these checks use live in the host layer (``host/kernel.py``,
``host/proc.py``) and are re-exported here under their old names.
"""
from __future__ import annotations

import os
import subprocess

from ..host.kernel import (  # noqa: F401  (re-exported: the receiver's public names)
    CAP_BPF,
    CAP_PERFMON,
    CAP_SYS_ADMIN,
    CAPABILITIES,
    TRACEFS_PATHS,
    bcc_version,
    btf_present,
    capabilities,
    effective_capabilities,
    headers_dir,
    kernel_release,
    kprobes_available,
    probe,
    tracefs_dir,
    tracepoints_available,
)
from ..host.proc import boot_id, online_cpus, possible_cpus  # noqa: F401  (re-exported)


class SamplerError(Exception):
    """The sampler cannot start (or run). ``str(err)`` is one line: cause and fix."""


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
