# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Merging: raw samples by key (the receiver, across the drains of an interval) and profiles of
consecutive intervals into one (for the end-of-run outputs)."""
from __future__ import annotations

from typing import Dict, Iterable, List, Sequence, Tuple

from .model import Profile, RawSample, Resource, Sample


def sample_key(s: RawSample) -> Tuple:
    """What makes two raw samples the same sample: everything but the count. The only definition:
    the same stack in two spans (``link``) or with two thread-context attribute sets stays two
    samples."""
    return (s.pid, s.tid, s.comm, s.user_stack, s.kernel_stack, s.value_type, s.truncated, s.user_stack_lost,
            s.runtime_stack, s.link, s.context_attributes)


def add_samples(acc: Dict[Tuple, int], samples: Iterable[RawSample]) -> None:
    """Add ``samples`` to ``acc`` (sample key -> count), merging equal keys."""
    for s in samples:
        k = sample_key(s)
        acc[k] = acc.get(k, 0) + s.count


def merged_samples(acc: Dict[Tuple, int]) -> List[RawSample]:
    """The samples of ``acc``: one per key, with the summed count."""
    return [RawSample(k[0], k[1], k[2], k[3], k[4], n, k[5], k[6], k[7], k[8], link=k[9], context_attributes=k[10])
            for k, n in acc.items()]


def merge_samples(samples: Iterable[RawSample]) -> List[RawSample]:
    """Raw samples with equal keys merged into one (what ``build_profile`` expects)."""
    acc: Dict[Tuple, int] = {}
    add_samples(acc, samples)
    return merged_samples(acc)


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
