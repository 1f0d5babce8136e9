# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Node.js: JavaScript frames are named from the perf map V8 writes when node runs with
``--perf-basic-prof`` (or ``--perf-basic-prof-only-functions``, a smaller map). V8 has no way to
write one on request, so a node process without it is named in the diagnostics file and the flare,
with how to enable it.

Detection: a process that maps a ``node``/``nodejs`` executable or a ``libnode.so`` (embedders),
from its mappings.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

from ..host.proc import DELETED_SUFFIX
from ..symbols.perfmap import perf_map_candidates

MAX_LISTED = 100
# V8 creates its map when its isolate starts, a few milliseconds after exec: a younger process is
# looked at again later
MIN_AGE_S = 1.0
HOW_TO_FIX = ('start it with `node --perf-basic-prof` (or set NODE_OPTIONS=--perf-basic-prof; '
              '--perf-basic-prof-only-functions writes a smaller map) to have its JavaScript frames named')


def is_node(mappings: Sequence[Any]) -> bool:
    for m in mappings:
        name = (m.path or '').rsplit('/', 1)[-1]
        if name.endswith(DELETED_SUFFIX):
            name = name[:-len(DELETED_SUFFIX)]
        if name in ('node', 'nodejs') or name.startswith('libnode.so'):
            return True
    return False


@dataclass
class _Node:
    pid: int
    exe: str
    container_id: str


class NodePerfMapNotices:
    """Node processes seen in samples that write no perf map (at most ``MAX_LISTED``)."""

    def __init__(self, telemetry: Any, proc: str = '/proc') -> None:
        self.telemetry = telemetry
        self.proc = proc
        self._checked: Dict[Tuple[int, int], bool] = {}  # (pid, start) -> has a perf map
        self._without: Dict[Tuple[int, int], _Node] = {}
        self._detected: Dict[int, Tuple[Any, bool]] = {}
        self._lock = threading.Lock()
        telemetry.gauge('node.processes.without_perf_map', 0)

    def is_node(self, process: Any) -> bool:
        mappings = process.mappings
        hit = self._detected.get(id(mappings))
        if hit is None or hit[0] is not mappings:
            if len(self._detected) >= 4 * MAX_LISTED:
                self._detected.clear()
            hit = self._detected[id(mappings)] = (mappings, is_node(mappings))
        return hit[1]

    def observe(self, profile: Any, processes: Any) -> None:
        for resource in profile.resources:
            process = processes.get(resource.pid)
            if process is None or process.exited_at is not None or not self.is_node(process):
                continue
            key = (process.pid, process.start_time)
            if key in self._checked or process.age_s() < MIN_AGE_S:
                continue
            # V8 opens its map when the isolate starts: no file now means none later
            root = '{}/{}/root'.format(self.proc, process.pid)
            has_map = any(os.path.exists(p) for p in perf_map_candidates(process.pid, root, self.proc))
            if len(self._checked) >= 16 * MAX_LISTED:
                self._checked.clear()
            self._checked[key] = has_map
            if not has_map and len(self._without) < MAX_LISTED:
                with self._lock:
                    self._without[key] = _Node(process.pid, process.exe, process.container_id)
        with self._lock:
            for key in [k for k in self._without if _gone(processes.get(k[0]), k[1])]:
                del self._without[key]
            self.telemetry.gauge('node.processes.without_perf_map', len(self._without))

    def diagnostics(self) -> List[Dict[str, Any]]:
        with self._lock:
            out = []
            for n in self._without.values():
                entry: Dict[str, Any] = {'pid': n.pid, 'executable': n.exe, 'problem': 'no perf map: JavaScript frames '
                                         'have no names', 'how_to_fix': HOW_TO_FIX}
                if n.container_id:
                    entry['container_id'] = n.container_id
                out.append(entry)
            return out


def _gone(process: Any, start_time: int) -> bool:
    return process is None or process.start_time != start_time or process.exited_at is not None
