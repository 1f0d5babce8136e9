# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Interpreted runtimes whose functions the profiler names (see docs/architecture.md, "Runtimes").

Each runtime is one seam (``base.Runtime``): it detects its processes from their mappings, gives
the BPF program per-process state through a map keyed by tgid, turns what the program recorded
into frames in user space, and reports its own metrics. ``RUNTIMES`` lists the runtimes walked in
the BPF program (Python, ``receiver.python``). The JIT runtimes (``jvm.py``, ``node.py``) need no BPF
state: their frames are named from perf maps by the symbolizer.
"""
from __future__ import annotations

from typing import Dict, Type

from .base import Runtime, Runtimes  # noqa: F401


def _python() -> Type[Runtime]:
    from .python import PythonRuntime

    return PythonRuntime


# name -> factory of the Runtime class (imported lazily: a runtime switched off costs nothing)
RUNTIMES: Dict[str, object] = {'python': _python}
