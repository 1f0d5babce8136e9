# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Profiles -> gzipped pprof (google/pprof ``profile.proto``), readable by ``go tool pprof``.

Why a hand-written encoder: no maintained Python package ships the pprof protobuf
bindings (the PyPI candidates are abandoned or pull in a whole profiler), and compiling
``profile.proto`` would add a code-generation step for one file. The message is small and
stable, so it is written here directly in the protobuf wire format: varints (wire type 0)
and length-delimited fields (wire type 2); repeated integers are packed.

pprof conventions used: ids start at 1 (0 means "none"); ``string_table[0] == ''``;
``Location.address`` is the absolute address inside ``Mapping.memory_start..memory_limit``.
Sample types: ``samples``/``count``, plus ``off_cpu``/``nanoseconds`` when any profile
has off-CPU samples (each sample then has two values, one of them 0). Labels: ``pid``
(numeric), ``comm``, ``thread_id`` (numeric), ``thread_name``, and for a sample taken inside a
span ``trace_id`` and ``span_id`` (lowercase hex, 32 and 16 digits: the W3C form), plus the thread
context's attributes under their keys.
"""
from __future__ import annotations

import gzip
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .model import CPU_PERIOD, CPU_SAMPLES, FRAME_KERNEL, OFF_CPU_TIME, Frame, Mapping, Profile

# --- wire format -----------------------------------------------------------------------------

def _varint(n: int) -> bytes:
    if n < 0:
        n &= 0xFFFFFFFFFFFFFFFF  # int64 negatives are 10-byte two's complement varints
    if n < 128:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# 0-16383: one or two bytes (made without _varint's loop: this runs at every import)
_SMALL = [bytes((i,)) for i in range(128)] + [bytes(((i & 0x7F) | 0x80, i >> 7)) for i in range(128, 1 << 14)]


def varint(n: int) -> bytes:
    return _SMALL[n] if 0 <= n < 16384 else _varint(n)


def _key(field: int, wire_type: int) -> bytes:
    return varint((field << 3) | wire_type)


def field_varint(field: int, n: int) -> bytes:
    """A varint field; 0 is omitted (proto3 default)."""
    if not n:
        return b''
    return _key(field, 0) + varint(n)


def field_bytes(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + varint(len(payload)) + payload


def field_packed(field: int, values: Iterable[int]) -> bytes:
    payload = b''.join([varint(v) for v in values])
    if not payload:
        return b''
    return field_bytes(field, payload)


# --- encoder -------------------------------------------------------------------------------


class _Builder:
    def __init__(self) -> None:
        self.strings: List[str] = ['']
        self.string_ids: Dict[str, int] = {'': 0}
        self.mappings: Dict[Mapping, int] = {}
        self.functions: Dict[Tuple[str, str, str], int] = {}
        self.locations: Dict[Tuple[int, int, int, int], int] = {}
        self.location_by_id: Dict[int, int] = {}
        self.out_mappings: List[bytes] = []
        self.out_functions: List[bytes] = []
        self.out_locations: List[bytes] = []

    def string(self, s: str) -> int:
        i = self.string_ids.get(s)
        if i is None:
            i = self.string_ids[s] = len(self.strings)
            self.strings.append(s)
        return i

    def mapping(self, m: Mapping) -> int:
        i = self.mappings.get(m)
        if i is None:
            i = self.mappings[m] = len(self.mappings) + 1
            self.out_mappings.append(
                field_bytes(
                    3,
                    field_varint(1, i)
                    + field_varint(2, m.start)
                    + field_varint(3, m.limit)
                    + field_varint(4, m.file_offset)
                    + field_varint(5, self.string(m.filename))
                    + field_varint(6, self.string(m.build_id))
                    # Every location carries a function (a module+offset name when unknown):
                    # has_functions stops pprof from re-symbolizing from local files.
                    + field_varint(7, 1)
                ),
            )
        return i

    def function(self, name: str, filename: str) -> int:
        k = (name, filename, '')
        i = self.functions.get(k)
        if i is None:
            i = self.functions[k] = len(self.functions) + 1
            n = self.string(name)
            fn = field_varint(1, i) + field_varint(2, n) + field_varint(3, n) + field_varint(4, self.string(filename))
            self.out_functions.append(field_bytes(5, fn))
        return i

    def location(self, f: Frame) -> int:
        i = self.location_by_id.get(id(f))
        if i is not None:
            return i
        mi = self.mapping(f.mapping) if f.mapping is not None else 0
        # Unsymbolized frames are named like the folded output, so pprof shows where they are.
        name = f.display_name + ('_[k]' if f.kind == FRAME_KERNEL else '')
        fi = self.function(name, f.source_file)
        k = (mi, f.address, fi, f.line)
        i = self.locations.get(k)
        if i is None:
            i = self.locations[k] = len(self.locations) + 1
            line = field_bytes(4, field_varint(1, fi) + field_varint(2, f.line))
            self.out_locations.append(
                field_bytes(4, field_varint(1, i) + field_varint(2, mi) + field_varint(3, f.address) + line)
            )
        self.location_by_id[id(f)] = i
        return i

    def label_str(self, key: str, value: str) -> bytes:
        return field_bytes(3, field_varint(1, self.string(key)) + field_varint(2, self.string(value)))

    def label_num(self, key: str, value: int) -> bytes:
        return field_bytes(3, field_varint(1, self.string(key)) + field_varint(3, value))


def encode_raw(profiles: Union[Profile, Sequence[Profile]]) -> bytes:
    """The uncompressed ``Profile`` message of one or more profiles (merged)."""
    if isinstance(profiles, Profile):
        profiles = [profiles]
    b = _Builder()
    with_off_cpu = any(p.has_off_cpu for p in profiles)
    sample_types = [CPU_SAMPLES] + ([OFF_CPU_TIME] if with_off_cpu else [])
    parts: List[bytes] = []
    for vt in sample_types:
        parts.append(field_bytes(1, field_varint(1, b.string(vt.type)) + field_varint(2, b.string(vt.unit))))

    samples: List[bytes] = []
    stack_ids: Dict[int, bytes] = {}
    for profile in profiles:
        for resource in profile.resources:
            pid_label = b.label_num('pid', resource.pid)
            comm = resource.comm or str(resource.attributes.get('process.executable.name', ''))
            proc_labels = pid_label + (b.label_str('comm', comm) if comm else b'')
            for off_cpu, group in ((False, resource.samples), (True, resource.off_cpu_samples)):
                for s in group:
                    if s.value <= 0:
                        continue
                    locs = stack_ids.get(id(s.frames))
                    if locs is None:
                        locs = stack_ids[id(s.frames)] = field_packed(1, [b.location(f) for f in s.frames])
                    values = [0, s.value] if off_cpu else ([s.value, 0] if with_off_cpu else [s.value])
                    labels = proc_labels + b.label_num('thread_id', s.thread_id)
                    if s.thread_name:
                        labels += b.label_str('thread_name', s.thread_name)
                    if s.link is not None:
                        labels += (b.label_str('trace_id', s.link.trace_id.hex())
                                   + b.label_str('span_id', s.link.span_id.hex()))
                    for key, value in s.context_attributes:
                        labels += b.label_str(key, value)
                    samples.append(field_bytes(2, locs + field_packed(2, values) + labels))

    parts.extend(samples)
    parts.extend(b.out_mappings)
    parts.extend(b.out_locations)
    parts.extend(b.out_functions)
    first: Optional[Profile] = profiles[0] if profiles else None
    time_nanos = min((p.time_unix_nano for p in profiles), default=0)
    end = max((p.time_unix_nano + p.duration_nano for p in profiles), default=0)
    period_type = first.period_type if first is not None else CPU_PERIOD
    pt = field_bytes(11, field_varint(1, b.string(period_type.type)) + field_varint(2, b.string(period_type.unit)))
    default_type = b.string(CPU_SAMPLES.type)
    # Strings last: every string above has been interned by now.
    parts.extend(field_bytes(6, s.encode('utf-8')) for s in b.strings)
    parts.append(field_varint(9, time_nanos))
    parts.append(field_varint(10, max(0, end - time_nanos)))
    parts.append(pt)
    parts.append(field_varint(12, first.period_nano if first is not None else 0))
    parts.append(field_varint(14, default_type))
    return b''.join(parts)


def encode(profiles: Union[Profile, Sequence[Profile]], compresslevel: int = 6) -> bytes:
    """Gzipped pprof of one or more profiles (merged): the content of ``profile.pb.gz``."""
    return gzip.compress(encode_raw(profiles), compresslevel=compresslevel)


def write(path: str, profiles: Union[Profile, Sequence[Profile]]) -> None:
    with open(path, 'wb') as f:
        f.write(encode(profiles))
