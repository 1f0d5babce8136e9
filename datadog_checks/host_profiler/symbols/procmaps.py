# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""A minimal reader of /proc/PID/maps giving objects shaped like the receiver's
``ProcessInfo``/``ProcMapping`` (the symbolizer only needs those attributes). Used by the
symbols tests and benchmarks, and handy for tools; the receiver has its own richer reader."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass(frozen=True)
class SimpleMapping:
    start: int
    end: int
    offset: int
    path: str
    dev: str = ''
    inode: int = 0
    perms: str = ''


@dataclass
class SimpleProcess:
    pid: int
    start_time: int = 0
    comm: str = ''
    exe: str = ''
    mappings: List[SimpleMapping] = field(default_factory=list)
    root: str = ''


def parse_maps(text: str) -> List[SimpleMapping]:
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        try:
            lo, hi = parts[0].split('-')
            out.append(SimpleMapping(int(lo, 16), int(hi, 16), int(parts[2], 16),
                                     parts[5].strip() if len(parts) > 5 else '', parts[3], int(parts[4]), parts[1]))
        except ValueError:
            continue
    return out


def read_process(pid: int, proc: str = '/proc') -> Optional[SimpleProcess]:
    try:
        with open('{}/{}/maps'.format(proc, pid)) as f:
            maps = parse_maps(f.read())
        with open('{}/{}/stat'.format(proc, pid)) as f:
            stat = f.read()
        start_time = int(stat.rsplit(')', 1)[1].split()[19])
        comm = stat[stat.index('(') + 1:stat.rindex(')')]
    except (OSError, ValueError, IndexError):
        return None
    try:
        import os
        exe = os.readlink('{}/{}/exe'.format(proc, pid))
    except OSError:
        exe = ''
    return SimpleProcess(pid, start_time, comm, exe, maps, '{}/{}/root'.format(proc, pid))
