# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Stage 3 of the sampler: the drains, one module per source of samples. Each reads and clears
the maps of the generation that just ended and appends ``RawSample``s:

- ``on_cpu``: the CPU samples counted in the kernel (stack maps, Python stacks, kernel-unwound
  user stacks, thread-context records);
- ``stack_copies``: dwarf/auto, the CPU samples whose user stack was copied, unwound by the
  injected ``ProcessWalkers``;
- ``off_cpu``: the off-CPU time of the threads switched out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set

from ...profile.model import RawSample

# Partial stacks: the sample is kept (and exported, ending in a [truncated] frame) but its user
# stack does not reach the outermost frame. Not a loss: counted apart (sampler.stacks.partial).
PARTIAL_DEPTH_LIMIT = 'depth_limit'  # the in-kernel frame-pointer walk stopped at MAX_STACK_DEPTH
PARTIAL_UNWIND = 'unwind_incomplete'  # the user-space unwinder stopped early (unwind.samples{result})
PARTIAL_REASONS = (PARTIAL_DEPTH_LIMIT, PARTIAL_UNWIND)


class CommFilter:
    """The user-space filters on the thread name (``comm_include`` / ``comm_exclude`` regexes)."""

    def __init__(self, include: Optional[str], exclude: Optional[str]) -> None:
        self._include = re.compile(include) if include else None
        self._exclude = re.compile(exclude) if exclude else None

    def keep(self, comm: str) -> bool:
        if self._include is not None and not self._include.search(comm):
            return False
        if self._exclude is not None and self._exclude.search(comm):
            return False
        return True


@dataclass
class DrainPass:
    """What the drains of one generation add up: the samples and their accounting."""

    old: int  # the generation drained
    lost: Dict[str, int]
    samples: List[RawSample] = field(default_factory=list)
    partial: Dict[str, int] = field(default_factory=lambda: {r: 0 for r in PARTIAL_REASONS})
    filtered: int = 0
    pairs: Set[tuple] = field(default_factory=set)  # distinct stacks
    map_fill: Dict[str, float] = field(default_factory=dict)
