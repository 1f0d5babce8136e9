# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The content of ``summary.json``: totals, losses and the top functions of a run."""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Union

from .folded import frame_name, process_name
from .model import FRAME_ABORT, Profile

TOP_N = 20
PARTIAL_STACKS = 'sampler.stacks.partial'
EMPTY_INTERVALS = 'profile.empty_intervals'


def _top(counts: Dict[str, int], total: int, n: int) -> List[Dict[str, Any]]:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return [{'function': k, 'samples': v, 'share': round(v / total, 4) if total else 0.0} for k, v in items]


def summarize(
    profiles: Union[Profile, Sequence[Profile]], telemetry_totals: Dict[str, float], top: int = TOP_N
) -> Dict[str, Any]:
    """A JSON-ready dict: samples, off-CPU ns, losses (telemetry totals whose name contains
    ``lost``), partial stacks (kept samples whose user stack the unwinder could not finish: not
    losses), empty intervals (nothing sampled, nothing exported), processes, unique stacks,
    unknown frames, truncated samples, top functions by self and by total (each function counted
    once per stack), top processes, duration."""
    if isinstance(profiles, Profile):
        profiles = [profiles]
    samples = 0
    off_cpu_ns = 0
    truncated = 0
    unknown = 0
    frames_seen = 0
    pids = set()
    stacks = set()
    self_counts: Dict[str, int] = {}
    total_counts: Dict[str, int] = {}
    per_process: Dict[tuple, int] = {}
    names: Dict[int, str] = {}

    for profile in profiles:
        for resource in profile.resources:
            pids.add(resource.pid)
            pkey = (resource.pid, process_name(resource))
            for s in resource.off_cpu_samples:
                off_cpu_ns += s.value
            for s in resource.samples:
                v = s.value
                if v <= 0:
                    continue
                samples += v
                per_process[pkey] = per_process.get(pkey, 0) + v
                if s.truncated:
                    truncated += v
                stack_names = []
                for f in s.frames:
                    n = names.get(id(f))
                    if n is None:
                        n = names[id(f)] = frame_name(f)
                    stack_names.append(n)
                    if f.kind == FRAME_ABORT:
                        continue
                    frames_seen += v
                    if not f.function:
                        unknown += v
                stacks.add((resource.pid, tuple(stack_names)))
                real = [n for n, f in zip(stack_names, s.frames) if f.kind != FRAME_ABORT]
                if real:
                    self_counts[real[0]] = self_counts.get(real[0], 0) + v
                for n in set(real):
                    total_counts[n] = total_counts.get(n, 0) + v

    losses = {k: v for k, v in sorted(telemetry_totals.items()) if 'lost' in k}
    partial = {k: v for k, v in sorted(telemetry_totals.items()) if k.startswith(PARTIAL_STACKS)}
    start = min((p.time_unix_nano for p in profiles), default=0)
    end = max((p.time_unix_nano + p.duration_nano for p in profiles), default=0)
    top_processes = sorted(per_process.items(), key=lambda kv: -kv[1])[:top]
    return {
        'profiles': len(profiles),
        'duration_s': round((end - start) / 1e9, 3) if profiles else 0.0,
        'start_unix_nano': start,
        'samples': samples,
        'off_cpu_ns': off_cpu_ns,
        'losses': losses,
        'lost_total': sum(losses.values()),
        'partial_stacks': partial,
        'partial_total': sum(partial.values()),
        'empty_intervals': int(telemetry_totals.get(EMPTY_INTERVALS, 0)),
        'truncated_samples': truncated,
        'unknown_frame_share': round(unknown / frames_seen, 4) if frames_seen else 0.0,
        'processes': len(pids),
        'unique_stacks': len(stacks),
        'top_self': _top(self_counts, samples, top),
        'top_total': _top(total_counts, samples, top),
        'top_processes': [
            {'pid': pid, 'comm': comm, 'samples': v, 'share': round(v / samples, 4) if samples else 0.0}
            for (pid, comm), v in top_processes
        ],
    }
