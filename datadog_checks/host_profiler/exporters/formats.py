# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Text and file formats used by the debug and file exporters.

``folded_lines`` is the folded-stack format of the design (``comm;root;...;leaf count``,
kernel frames suffixed ``_[k]``); ``pprof_bytes`` / ``folded_text`` use ``profile.pprof`` /
``profile.folded`` (written beside this package) when they provide an encoder, the folded
text falls back to ``folded_lines``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterable, List

from ..profile.model import FRAME_KERNEL


def resource_name(resource: Any) -> str:
    a = resource.attributes
    for key in ('process.executable.name', 'process.command', 'service.name'):
        v = a.get(key)
        if v:
            return str(v)
    path = a.get('process.executable.path')
    if path:
        return str(path).rsplit('/', 1)[-1]
    return 'pid-{}'.format(resource.pid)


def _frame_name(frame: Any) -> str:
    name = frame.display_name.replace(';', ':').replace('\n', ' ')
    if frame.kind == FRAME_KERNEL:
        name += '_[k]'
    return name


def folded_lines(profile: Any, off_cpu: bool = False) -> List[str]:
    """One line per distinct stack: ``name;root;...;leaf count`` (aggregated, in first-seen order)."""
    acc: 'OrderedDict[str, int]' = OrderedDict()
    for r in profile.resources:
        name = resource_name(r).replace(';', ':').replace(' ', '_')
        for s in r.off_cpu_samples if off_cpu else r.samples:
            key = ';'.join([name] + [_frame_name(f) for f in reversed(s.frames)])
            acc[key] = acc.get(key, 0) + int(s.value)
    return ['{} {}'.format(k, v) for k, v in acc.items()]


def _call_first(module: Any, names: Iterable[str], *args: Any) -> Any:
    for n in names:
        fn = getattr(module, n, None)
        if callable(fn):
            return fn(*args)
    raise AttributeError('{} has none of {}'.format(module.__name__, ', '.join(names)))


def pprof_bytes(profile: Any) -> bytes:
    """gzip-compressed pprof of the profile (``profile.pprof``)."""
    import gzip

    from ..profile import pprof

    data = _call_first(pprof, ('encode_gzip', 'encode_bytes', 'encode', 'to_pprof'), profile)
    if hasattr(data, 'SerializeToString'):
        data = data.SerializeToString()
    if not data[:2] == b'\x1f\x8b':
        data = gzip.compress(data, compresslevel=6, mtime=0)
    return data


def folded_text(profile: Any) -> str:
    try:
        from ..profile import folded

        out = _call_first(folded, ('encode', 'to_folded', 'folded_lines', 'render'), profile)
        if isinstance(out, bytes):
            out = out.decode('utf-8', errors='replace')
        if not isinstance(out, str):
            out = '\n'.join(out)
        return out if out.endswith('\n') or not out else out + '\n'
    except (ImportError, AttributeError):
        lines = folded_lines(profile)
        return '\n'.join(lines) + ('\n' if lines else '')
