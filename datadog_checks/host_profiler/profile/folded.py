# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Folded stacks (Brendan Gregg's flamegraph input): ``comm;root;...;leaf count``.

One line per unique stack across all the given profiles (merged), CPU samples only by
default. The first element is the process name (``Resource.comm``); kernel frames are
suffixed ``_[k]``; unsymbolized frames appear as ``module+0xoffset`` (``Frame.display_name``).
"""
from __future__ import annotations

from typing import Dict, Iterable, Sequence, Union

from .model import FRAME_KERNEL, Frame, Profile, Resource

KERNEL_SUFFIX = '_[k]'


def frame_name(f: Frame) -> str:
    """The frame's name in folded/flamegraph/summary outputs."""
    name = f.display_name
    if ';' in name or '\n' in name:
        name = name.replace(';', ':').replace('\n', ' ')
    return name + KERNEL_SUFFIX if f.kind == FRAME_KERNEL else name


def process_name(resource: Resource) -> str:
    name = resource.comm or str(resource.attributes.get('process.executable.name', '')) or '[unknown]'
    return name.replace(';', ':').replace(' ', '_').replace('\n', '_')


def folded_counts(profiles: Union[Profile, Sequence[Profile]], off_cpu: bool = False) -> Dict[str, int]:
    """``{'comm;root;...;leaf': count}`` merged over the profiles (off-CPU ns if ``off_cpu``)."""
    if isinstance(profiles, Profile):
        profiles = [profiles]
    counts: Dict[str, int] = {}
    names: Dict[int, str] = {}  # id(frame) -> name; frames are shared between stacks
    stacks: Dict[int, str] = {}  # id(frames tuple) -> folded suffix
    for profile in profiles:
        for resource in profile.resources:
            prefix = process_name(resource)
            for s in resource.off_cpu_samples if off_cpu else resource.samples:
                if s.value <= 0:
                    continue
                suffix = stacks.get(id(s.frames))
                if suffix is None:
                    parts = []
                    for f in reversed(s.frames):  # root first
                        n = names.get(id(f))
                        if n is None:
                            n = names[id(f)] = frame_name(f)
                        parts.append(n)
                    suffix = stacks[id(s.frames)] = ';'.join(parts)
                key = prefix + ';' + suffix if suffix else prefix
                counts[key] = counts.get(key, 0) + s.value
    return counts


def format_folded(counts: Dict[str, int]) -> str:
    """Lines sorted by stack (the order flamegraph.pl expects), newline-terminated."""
    return ''.join('{} {}\n'.format(stack, counts[stack]) for stack in sorted(counts))


def to_folded(profiles: Union[Profile, Sequence[Profile]], off_cpu: bool = False) -> str:
    return format_folded(folded_counts(profiles, off_cpu))


def parse_folded(text: Union[str, Iterable[str]]) -> Dict[str, int]:
    """Parse folded lines back to ``{stack: count}`` (counts of repeated stacks are summed)."""
    lines = text.splitlines() if isinstance(text, str) else text
    out: Dict[str, int] = {}
    for line in lines:
        line = line.rstrip('\n')
        if not line.strip():
            continue
        stack, _, count = line.rpartition(' ')
        if not stack:
            raise ValueError('not a folded line: {!r}'.format(line))
        out[stack] = out.get(stack, 0) + int(count)
    return out
