# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""RawSample (addresses) -> Profile (frames, one Resource per process). Pure: no I/O.

The process registry and the symbolizer are passed in as callables, so this module can be
tested without /proc, ELF files or root.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..host.proc import DELETED_SUFFIX
from .model import (FRAME_ABORT, FRAME_KERNEL, FRAME_NATIVE, OFF_CPU_TIME, Frame, Profile, RawSample, Resource,
                    RuntimeStack, Sample)

# Marker frames placed at the root of a stack that is known to be incomplete.
TRUNCATED_FRAME = Frame(function='[truncated]', address=0, kind=FRAME_ABORT)
USER_STACK_LOST_FRAME = Frame(function='[user stack lost]', address=0, kind=FRAME_ABORT)

# Environment variables of the profiled process -> OTel resource attributes. The first
# variable present wins (DD_SERVICE before OTEL_SERVICE_NAME).
ENV_ATTRIBUTES: Sequence[Tuple[str, Tuple[str, ...]]] = (
    ('service.name', ('DD_SERVICE', 'OTEL_SERVICE_NAME')),
    ('deployment.environment.name', ('DD_ENV',)),
    ('service.version', ('DD_VERSION',)),
)
# Read from every process whatever include_env_vars adds (unified service tagging, as the Datadog
# host profiler always prefixes its include_env_vars with them).
SERVICE_ENV_VARS: Tuple[str, ...] = tuple(dict.fromkeys(v for _, names in ENV_ATTRIBUTES for v in names))

# Resource attributes describing the host: the host's own detection (resourcedetection, the Agent)
# sets them, never a process's published context (a container's tracer sees the pod's host name).
HOST_ATTRIBUTE_PREFIXES = ('host.', 'os.', 'datadog.host.')

ResolveProcess = Callable[[int], Any]  # pid -> ProcessInfo | None
SymbolizeUser = Callable[[Any, Sequence[int]], List[Frame]]  # (ProcessInfo | None, addresses) -> frames
SymbolizeKernel = Callable[[Sequence[int]], List[Frame]]  # addresses -> frames


def resource_attributes(pid: int, comm: str, process: Any) -> Dict[str, Any]:
    """OTel resource attributes of one process. ``process`` may be None (it vanished).

    Precedence, lowest first: the process's environment (``DD_SERVICE``...), then the resource of
    its published OTel process context (OTEP 4719), which overrides the environment, except for
    what the profiler observed itself (``process.pid``, ``process.executable.*``, ``container.id``,
    ``k8s.pod.uid`` from /proc) and host attributes. Processors run later: the user's
    ``attributes`` actions have the last word."""
    attrs: Dict[str, Any] = {'process.pid': int(pid)}
    exe = (getattr(process, 'exe', '') or '') if process is not None else ''
    name = ''
    if exe:
        attrs['process.executable.path'] = exe
        base = exe[: -len(DELETED_SUFFIX)] if exe.endswith(DELETED_SUFFIX) else exe
        name = os.path.basename(base)
    if not name:
        name = (getattr(process, 'comm', '') or '') if process is not None else ''
    attrs['process.executable.name'] = name or comm
    if process is not None:
        container_id = getattr(process, 'container_id', '') or ''
        if container_id:
            attrs['container.id'] = container_id
        pod_uid = getattr(process, 'pod_uid', '') or ''
        if pod_uid:
            attrs['k8s.pod.uid'] = pod_uid
        observed = frozenset(attrs)
        env = getattr(process, 'env', None) or {}
        for attr, variables in ENV_ATTRIBUTES:
            for var in variables:
                value = env.get(var)
                if value:
                    attrs[attr] = value
                    break
        context = getattr(process, 'otel_context', None)
        if context is not None:
            for key, value in context.resource.items():
                if key not in observed and not key.startswith(HOST_ATTRIBUTE_PREFIXES):
                    attrs[key] = value
    return attrs


def _unknown_frames(addresses: Sequence[int], kind: str) -> List[Frame]:
    return [Frame('', a, kind) for a in addresses]


def _symbolize(
    addresses: Tuple[int, ...], cache: Dict[int, Frame], symbolize: Callable, args: Tuple, kind: str
) -> Tuple[Frame, ...]:
    """Frames of one stack, asking the symbolizer only for addresses not seen yet.

    The per-address cache also makes equal frames the same object, which the OTLP encoder
    exploits (it looks frames up by identity first). A symbolizer that returns a different
    number of frames than addresses (inline expansion) gets the whole stack, uncached.
    """
    cached = list(map(cache.get, addresses))
    if None not in cached:
        return tuple(cached)
    missing = list(dict.fromkeys(a for a, f in zip(addresses, cached) if f is None))
    try:
        frames = list(symbolize(*args, missing))
    except Exception:  # symbolizers should not raise; the frames stay unknown
        frames = _unknown_frames(missing, kind)
    if len(frames) != len(missing):
        try:
            return tuple(symbolize(*args, addresses))
        except Exception:
            return tuple(_unknown_frames(addresses, kind))
    cache.update(zip(missing, frames))
    return tuple(map(cache.__getitem__, addresses))


def interleave(native: Sequence[Frame], runtime: RuntimeStack) -> Tuple[Frame, ...]:
    """User frames (leaf first) with the runtime's segments in place of its interpreter frames.

    The i-th native frame (leaf first) named in ``runtime.interpreter_functions`` is replaced by
    segment i. Segments left over (the native unwinding stopped, or lost an interpreter frame) go
    below the last native frame; with ``native_ends_at_interpreter`` (frame pointers cannot pass
    the eval loop) what the walk found below the last interpreter frame is dropped (it is not a
    real caller, at best a lucky one) and the Python frames end the stack. Interpreter frames left over (C calls of the eval loop that had not
    pushed a Python frame yet) stay native.
    """
    segments = runtime.segments
    names = runtime.interpreter_functions
    out: List[Frame] = []
    i = 0
    last = -1  # index in `out` after the last segment placed
    for f in native:
        if i < len(segments) and f.function in names:
            out.extend(segments[i])
            i += 1
            last = len(out)
        else:
            out.append(f)
    if runtime.native_ends_at_interpreter and last >= 0:
        del out[last:]
    for seg in segments[i:]:
        out.extend(seg)
    return tuple(out)


def build_profile(
    samples: Iterable[RawSample],
    resolve_process: ResolveProcess,
    symbolize_user: SymbolizeUser,
    symbolize_kernel: SymbolizeKernel,
    *,
    time_unix_nano: int,
    duration_nano: int,
    period_nano: int,
) -> Profile:
    """Group raw samples per process, symbolize each distinct stack once, and return a Profile.

    - Stacks are leaf first: kernel frames (leaf first) on top of user frames (leaf first).
    - A truncated user stack, or a lost user stack id, ends (at the root) with an ``abort``
      frame so that it is never mistaken for a complete stack.
    - ``samples`` are merged already: one per key (``profile.merge.sample_key``; the receiver's
      ``collect()`` merges them, ``profile.merge.merge_samples`` does for other callers). Each
      becomes one ``Sample``.
    - Samples whose value type is ``OFF_CPU_TIME`` go to ``Resource.off_cpu_samples``.
    - ``resolve_process`` is called once per pid. The symbolizers are called at most once
      per distinct (pid, user stack) / kernel stack, and only with the addresses not
      resolved yet in this build. A symbolizer that raises (it should not) leaves the
      frames unknown instead of failing the build.
    """
    processes: Dict[int, Any] = {}
    comms: Dict[int, str] = {}
    user_cache: Dict[Tuple[int, Tuple[int, ...]], Tuple[Frame, ...]] = {}
    kernel_cache: Dict[Tuple[int, ...], Tuple[Frame, ...]] = {}
    kernel_addr: Dict[int, Frame] = {}  # address -> frame
    user_addr: Dict[int, Dict[int, Frame]] = {}  # pid -> address -> frame
    stack_cache: Dict[Tuple, Tuple[Frame, ...]] = {}
    resources: Dict[int, Resource] = {}

    for s in samples:
        value = s.count
        if value <= 0:
            continue
        pid, tid, comm, ustack, kstack = s.pid, s.tid, s.comm, s.user_stack, s.kernel_stack
        truncated, lost, value_type = s.truncated, s.user_stack_lost, s.value_type
        runtime = s.runtime_stack if isinstance(s.runtime_stack, RuntimeStack) else None
        rid = id(runtime) if runtime is not None else 0
        if pid not in processes:
            try:
                processes[pid] = resolve_process(pid)
            except Exception:  # the registry should not raise; a vanished process is None
                processes[pid] = None
        process = processes[pid]
        # Process name: the registry's, else the main thread's comm, else any thread's.
        if pid not in comms:
            comms[pid] = _registry_comm(process) or comm
        elif tid == pid and not _registry_comm(process):
            comms[pid] = comm

        skey = (pid, ustack, kstack, truncated, lost, rid)
        frames = stack_cache.get(skey)
        if frames is None:
            kframes = kernel_cache.get(kstack) if kstack else ()
            if kframes is None:
                kframes = kernel_cache[kstack] = _symbolize(
                    kstack, kernel_addr, symbolize_kernel, (), FRAME_KERNEL
                )
            ukey = (pid, ustack)
            uframes = user_cache.get(ukey) if ustack else ()
            if uframes is None:
                addr_cache = user_addr.get(pid)
                if addr_cache is None:
                    addr_cache = user_addr[pid] = {}
                uframes = user_cache[ukey] = _symbolize(
                    ustack, addr_cache, symbolize_user, (process,), FRAME_NATIVE
                )
            if rid:
                uframes = interleave(uframes, runtime)
            frames = kframes + uframes
            if lost:
                frames += (USER_STACK_LOST_FRAME,)
            elif truncated:
                frames += (TRUNCATED_FRAME,)
            stack_cache[skey] = frames

        resource = resources.get(pid)
        if resource is None:
            resource = resources[pid] = Resource(attributes={})
        sample = Sample(frames=frames, value=value, thread_id=tid, thread_name=comm, truncated=truncated or lost,
                        link=s.link, context_attributes=s.context_attributes)
        if value_type == OFF_CPU_TIME:
            resource.off_cpu_samples.append(sample)
        else:
            resource.samples.append(sample)

    out: List[Resource] = []
    for pid in sorted(resources):
        resource = resources[pid]
        resource.comm = comms.get(pid, '')
        resource.attributes = resource_attributes(pid, resource.comm, processes.get(pid))
        out.append(resource)
    return Profile(
        time_unix_nano=int(time_unix_nano),
        duration_nano=int(duration_nano),
        period_nano=int(period_nano),
        resources=out,
    )


def _registry_comm(process: Optional[Any]) -> str:
    if process is None:
        return ''
    return getattr(process, 'comm', '') or ''
