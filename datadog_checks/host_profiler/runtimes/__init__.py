# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Interpreted runtimes whose functions the profiler names (see docs/architecture.md, "Runtimes").

Each runtime is one seam (``base.Runtime``): it detects its processes from their mappings, gives
the BPF program per-process state through a map keyed by tgid, turns what the program recorded
into frames in user space, and reports its own metrics. ``RUNTIMES`` lists the runtimes walked in
the BPF program (Python); ``receiver.interpreters`` names those switched on. The JIT runtimes (``jvm.py``, ``node.py``) need no BPF
state: their frames are named from perf maps by the symbolizer.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Type

from .base import Runtime, Runtimes  # noqa: F401


def _python() -> Type[Runtime]:
    from .python import PythonRuntime

    return PythonRuntime


# name -> factory of the Runtime class (imported lazily: a runtime switched off costs nothing)
RUNTIMES: Dict[str, object] = {'python': _python}


def runtime_classes(names: Sequence[str]) -> List[Type[Runtime]]:
    """The Runtime classes of ``receiver.interpreters``, in registry order.

    Raises ``ConfigurationError`` naming the valid values for a name not in ``RUNTIMES``."""
    from datadog_checks.base import ConfigurationError

    if isinstance(names, str):  # `interpreters: python` would otherwise read as p, y, t, ...
        names = [names]
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown:
        raise ConfigurationError('receiver interpreters: unknown runtime {}: valid values are {} '
                                 '(an empty list switches them all off)'.format(
                                     ', '.join(repr(n) for n in unknown), ', '.join(sorted(RUNTIMES))))
    return [factory() for name, factory in RUNTIMES.items() if name in names]
