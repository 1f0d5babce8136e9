# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Usable memory for budgets (caches, queues) from cgroup v1/v2 and the machine.

``memory_limit_bytes()`` is the tightest ``memory.max`` (v2) / ``memory.limit_in_bytes``
(v1) over the process's cgroup and its ancestors, or None when unlimited.
``usable_memory_bytes()`` is that limit capped by MemTotal, and
``memory_budget_bytes(fraction=0.8)`` a share of it.

Every path is a parameter so tests can point at a temporary tree.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple, Union

CGROUP_ROOT = '/sys/fs/cgroup'
PROC_ROOT = '/proc'

# cgroup v1 reports "unlimited" as a huge page-aligned number (LONG_MAX rounded down).
_V1_UNLIMITED_THRESHOLD = 1 << 60

Pid = Union[int, str]


def parse_proc_cgroup(text: str) -> List[Tuple[str, List[str], str]]:
    """``/proc/PID/cgroup`` lines → [(hierarchy id, controllers, path)]."""
    out = []
    for line in text.splitlines():
        parts = line.strip().split(':', 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        out.append((hid, [c for c in controllers.split(',') if c], path))
    return out


def cgroup_paths(pid: Pid = 'self', proc_root: str = PROC_ROOT) -> Dict[str, str]:
    """{'v2': path} and/or {'memory': path} (v1) for a process; {} when unreadable."""
    try:
        with open(os.path.join(proc_root, str(pid), 'cgroup')) as f:
            entries = parse_proc_cgroup(f.read())
    except OSError:
        return {}
    out: Dict[str, str] = {}
    for hid, controllers, path in entries:
        if hid == '0' and not controllers:
            out['v2'] = path
        elif 'memory' in controllers:
            out['memory'] = path
    return out


def parse_limit(text: str) -> Optional[int]:
    """A limit file's content → bytes, or None for unlimited (``max``, v1's huge value, garbage)."""
    text = text.strip()
    if not text or text == 'max' or text == '-1':
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    if value <= 0 or value >= _V1_UNLIMITED_THRESHOLD:
        return None
    return value


def _read_limit(path: str) -> Tuple[bool, Optional[int]]:
    """(file exists, limit)."""
    try:
        with open(path) as f:
            return True, parse_limit(f.read())
    except OSError:
        return False, None


def _tightest(mount: str, cgroup_path: str, filename: str) -> Optional[int]:
    """Min over the cgroup dir and its ancestors up to the mount point.

    In a container with its own cgroup namespace the path in /proc/self/cgroup is '/', and
    without one the host path may not exist under the container's mount: then the walk
    starts at the deepest existing directory.
    """
    rel = cgroup_path.strip('/')
    parts = rel.split('/') if rel else []
    limits = []
    for depth in range(len(parts), -1, -1):
        d = os.path.join(mount, *parts[:depth]) if depth else mount
        found, limit = _read_limit(os.path.join(d, filename))
        if found and limit is not None:
            limits.append(limit)
    return min(limits) if limits else None


def _v1_memory_mount(cgroup_root: str) -> Optional[str]:
    candidates = [os.path.join(cgroup_root, 'memory')]
    try:
        candidates += [os.path.join(cgroup_root, n) for n in sorted(os.listdir(cgroup_root))
                       if 'memory' in n.split(',') and n != 'memory']
    except OSError:
        pass
    for c in candidates:
        if os.path.exists(os.path.join(c, 'memory.limit_in_bytes')):
            return c
    return None


def cgroup_version(cgroup_root: str = CGROUP_ROOT) -> Optional[int]:
    if os.path.exists(os.path.join(cgroup_root, 'cgroup.controllers')):
        return 2
    if _v1_memory_mount(cgroup_root) is not None:
        return 1
    return None


def memory_limit_bytes(pid: Pid = 'self', cgroup_root: str = CGROUP_ROOT, proc_root: str = PROC_ROOT) -> Optional[int]:
    """The cgroup memory limit that applies to ``pid``, or None when there is none."""
    paths = cgroup_paths(pid, proc_root)
    mount_v1 = _v1_memory_mount(cgroup_root)
    if 'memory' in paths and mount_v1 is not None:
        return _tightest(mount_v1, paths['memory'], 'memory.limit_in_bytes')
    if os.path.exists(os.path.join(cgroup_root, 'cgroup.controllers')):
        return _tightest(cgroup_root, paths.get('v2', '/'), 'memory.max')
    # hybrid layout: v2 mounted at <root>/unified, memory not on it in practice
    unified = os.path.join(cgroup_root, 'unified')
    if 'v2' in paths and os.path.exists(os.path.join(unified, 'cgroup.controllers')):
        return _tightest(unified, paths['v2'], 'memory.max')
    return None


def physical_memory_bytes(meminfo: str = '/proc/meminfo') -> Optional[int]:
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith('MemTotal:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def usable_memory_bytes(
    pid: Pid = 'self', cgroup_root: str = CGROUP_ROOT, proc_root: str = PROC_ROOT, meminfo: str = '/proc/meminfo'
) -> Optional[int]:
    """min(cgroup limit, MemTotal); None when neither is known."""
    values = [v for v in (memory_limit_bytes(pid, cgroup_root, proc_root), physical_memory_bytes(meminfo)) if v]
    return min(values) if values else None


def memory_budget_bytes(
    fraction: float = 0.8,
    pid: Pid = 'self',
    cgroup_root: str = CGROUP_ROOT,
    proc_root: str = PROC_ROOT,
    meminfo: str = '/proc/meminfo',
) -> Optional[int]:
    """``fraction`` (default 80%) of the usable memory, for sizing caches and queues."""
    usable = usable_memory_bytes(pid, cgroup_root, proc_root, meminfo)
    return int(usable * fraction) if usable else None


def budget_of(limit: Optional[int], fraction: float = 0.8) -> Optional[int]:
    """80% (or ``fraction``) of a given limit; None stays None."""
    return int(limit * fraction) if limit else None
