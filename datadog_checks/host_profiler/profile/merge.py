# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Merging profiles of consecutive intervals into one (for the end-of-run outputs)."""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

from .model import Profile, Resource, Sample


def _merge_samples(into: Dict[Tuple, int], samples: Sequence[Sample]) -> None:
    for s in samples:
        key = (s.frames, s.thread_id, s.thread_name, s.truncated, s.link, s.context_attributes)
        into[key] = into.get(key, 0) + s.value


def merge_profiles(profiles: Sequence[Profile]) -> Profile:
    """One profile covering all ``profiles``: resources merged per pid, equal samples summed.

    Memory is then bounded by the number of distinct stacks, not by the number of intervals.
    """
    if not profiles:
        raise ValueError('no profile to merge')
    start = min(p.time_unix_nano for p in profiles)
    end = max(p.time_unix_nano + p.duration_nano for p in profiles)
    resources: Dict[int, Resource] = {}
    cpu: Dict[int, Dict[Tuple, int]] = {}
    off: Dict[int, Dict[Tuple, int]] = {}
    for profile in profiles:
        for r in profile.resources:
            merged = resources.get(r.pid)
            if merged is None:
                merged = resources[r.pid] = Resource(attributes=dict(r.attributes), comm=r.comm)
                cpu[r.pid], off[r.pid] = {}, {}
            else:
                merged.attributes.update(r.attributes)
            _merge_samples(cpu[r.pid], r.samples)
            _merge_samples(off[r.pid], r.off_cpu_samples)
    for pid, resource in resources.items():
        resource.samples = [Sample(frames=k[0], value=v, thread_id=k[1], thread_name=k[2], truncated=k[3],
                                   link=k[4], context_attributes=k[5]) for k, v in cpu[pid].items()]
        resource.off_cpu_samples = [Sample(frames=k[0], value=v, thread_id=k[1], thread_name=k[2], truncated=k[3],
                                           link=k[4], context_attributes=k[5]) for k, v in off[pid].items()]
    first = profiles[0]
    return Profile(time_unix_nano=start, duration_nano=end - start, period_nano=first.period_nano,
                   resources=list(resources.values()), sample_type=first.sample_type, period_type=first.period_type)
