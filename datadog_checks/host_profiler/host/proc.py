# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Small facts read from /proc and /sys that several layers need: the boot id, the CPU lists,
the device of a mapping as /proc/PID/maps prints it, the vDSO image, and the special
mapping names of /proc/PID/maps."""
from __future__ import annotations

import os
import threading
import time
from typing import Dict, List, Optional, Tuple

# Special names in the path column of /proc/PID/maps.
VDSO = '[vdso]'
VSYSCALL = '[vsyscall]'
# The suffix the kernel appends to the path of a mapped file that was deleted (or replaced).
DELETED_SUFFIX = ' (deleted)'


def boot_id(proc: str = '/proc') -> str:
    """This boot's id: caches of per-boot things (the vDSO image) are keyed by it."""
    try:
        with open(proc + '/sys/kernel/random/boot_id') as f:
            return f.read().strip()
    except OSError:
        return str(int(time.time()))


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


def maps_dev(st_dev: int) -> str:
    """st_dev as /proc/PID/maps prints it: 'major:minor' in hex (at least 2 digits each)."""
    return '{:02x}:{:02x}'.format(os.major(st_dev), os.minor(st_dev))


MAX_VDSO_BYTES = 1 << 20


def read_vdso_image(pid: int, start: int, end: int, proc: str = '/proc') -> Optional[bytes]:
    """The vDSO's ELF image, read from the process's memory (it has no file); None if unreadable."""
    size = end - start
    if not 0 < size <= MAX_VDSO_BYTES:
        return None
    try:
        with open('{}/{}/mem'.format(proc, pid), 'rb', buffering=0) as f:
            f.seek(start)
            return f.read(size)
    except (OSError, ValueError, OverflowError):
        return None


_vdso_lock = threading.Lock()
_vdso_images: Dict[Tuple[str, str, int], bytes] = {}
_boot_ids: Dict[str, str] = {}


def vdso_image(pid: int, start: int, end: int, proc: str = '/proc') -> Optional[bytes]:
    """The vDSO image, read once per boot and size (the one vDSO cache: the symbolizer and the
    CFI tables both read it here); None if unreadable (not cached: another process may do)."""
    size = end - start
    with _vdso_lock:
        boot = _boot_ids.get(proc)
        if boot is None:
            boot = _boot_ids[proc] = boot_id(proc)
        image = _vdso_images.get((proc, boot, size))
    if image is not None:
        return image
    image = read_vdso_image(pid, start, end, proc)
    if image is not None:
        with _vdso_lock:
            if len(_vdso_images) >= 8:
                _vdso_images.clear()
            _vdso_images[(proc, boot, size)] = image
    return image
