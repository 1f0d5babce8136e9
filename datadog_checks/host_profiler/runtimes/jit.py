# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Runtimes that generate code into anonymous memory, named by perf maps: the JVM and Node.

Two seams: ``jit_frames_of(mappings)`` tells the symbolizer, per process layout, the
``profile.frame.type`` of that code and how to print the names its perf map gives; ``JitRuntimes``
looks at each symbolized profile (on the check thread) to have JVMs write their maps and to list
node processes that write none, and reports both in the diagnostics.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence

from ..profile.model import FRAME_JIT, FRAME_JVM, FRAME_V8JS
from . import jvm, node


class JitFrames(NamedTuple):
    kind: str  # profile.frame.type of frames in anonymous executable memory
    rename: Optional[Callable[[str], str]] = None  # perf-map name -> frame name


GENERIC = JitFrames(FRAME_JIT)
JVM = JitFrames(FRAME_JVM, jvm.frame_name)
V8JS = JitFrames(FRAME_V8JS)


def jit_frames_of(mappings: Sequence[Any]) -> JitFrames:
    if jvm.is_hotspot(mappings):
        return JVM
    if node.is_node(mappings):
        return V8JS
    return GENERIC


class JitRuntimes:
    def __init__(self, receiver_conf: Dict[str, Any], telemetry: Any, symbolizer: Any = None,
                 log: Optional[logging.Logger] = None, proc: str = '/proc') -> None:
        symbolizer_conf = receiver_conf.get('symbolizer') or {}
        jvm_conf = receiver_conf.get('jvm') or {}
        # the JVM writes a map only for the symbolizer to read: nothing to do when it reads none
        mode = jvm_conf.get('perf_map') or 'auto'
        if not symbolizer_conf.get('perf_map', True):
            mode = 'off'
        on_written = symbolizer.reload_perf_map if symbolizer is not None else None
        self.jvm = jvm.JvmPerfMaps(telemetry, on_written=on_written, mode=mode, proc=proc, log=log)
        self.node = node.NodePerfMapNotices(telemetry, proc=proc)

    def observe(self, profile: Any, processes: Any) -> None:
        self.jvm.observe(profile, processes)
        self.node.observe(profile, processes)

    def diagnostics(self) -> Dict[str, Any]:
        return {'jvm': self.jvm.diagnostics(), 'node_without_perf_map': self.node.diagnostics()}

    def close(self) -> None:
        self.jvm.close()
