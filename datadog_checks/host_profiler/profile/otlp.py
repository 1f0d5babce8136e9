# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Profile -> OTLP ``profiles/v1development`` ``ProfilesData`` (one shared dictionary).

Layout: one ``ResourceProfiles`` per ``Resource`` (process), one ``ScopeProfiles`` in it,
and one ``Profile`` per sample type: CPU ``samples``/``count`` always, then
``off_cpu``/``nanoseconds`` when the resource has off-CPU samples (``Profile.sample_type``
is a single ``ValueType`` in this version of the proto).

Every dictionary table starts with its zero entry, as the spec requires, so that index 0
means "not set". Entries are deduplicated by value. A sample taken inside a span (thread context)
points with ``link_index`` to a ``Link(trace_id, span_id)`` of ``link_table``; ``link_table[0]`` is
the empty ``Link{}`` (proto v1.10, what opentelemetry-proto 1.45 is generated from: "must always
be zero value"), and ``link_index`` 0 means no span.

Speed: the tables are first built with plain dicts/lists (frames are looked up by object
identity first, then by value), and the protobuf messages are created once per distinct
entry at the end; samples and stacks are created with ``add(...)`` on the repeated fields,
which avoids the copy that constructing a message and appending it implies.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.profiles.v1development import profiles_pb2

from .model import (
    BUILD_ID_GNU,
    BUILD_ID_GO,
    BUILD_ID_HTLHASH,
    OFF_CPU_TIME,
    Frame,
    Mapping,
    Profile,
    SpanLink,
    ValueType,
)

SCOPE_NAME = 'host_profiler'

ATTR_FRAME_TYPE = 'profile.frame.type'
ATTR_THREAD_ID = 'thread.id'
ATTR_THREAD_NAME = 'thread.name'
BUILD_ID_ATTRIBUTES = {
    BUILD_ID_GNU: 'process.executable.build_id.gnu',
    BUILD_ID_GO: 'process.executable.build_id.go',
    BUILD_ID_HTLHASH: 'process.executable.build_id.htlhash',
}


def _package_version() -> str:
    try:
        from ..__about__ import __version__  # type: ignore

        return str(__version__)
    except Exception:
        return '0.0.0'


def any_value(value: Any) -> common_pb2.AnyValue:
    """A Python scalar as an OTel ``AnyValue`` (bool, int, float, str; lists as arrays)."""
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int):
        return common_pb2.AnyValue(int_value=value)
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    if isinstance(value, bytes):
        return common_pb2.AnyValue(bytes_value=value)
    if isinstance(value, (list, tuple)):
        return common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, dict):
        return common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(
            values=[common_pb2.KeyValue(key=str(k), value=any_value(v)) for k, v in value.items() if v is not None]))
    return common_pb2.AnyValue(string_value=str(value))


class _Tables:
    """The dictionary under construction, as plain Python lists and dicts."""

    def __init__(self) -> None:
        self.strings: List[str] = ['']
        self.string_index: Dict[str, int] = {'': 0}
        # attribute entries: (key_strindex, value) ; value is a Python scalar
        self.attributes: List[Tuple[int, Any]] = [(0, None)]
        self.attribute_index: Dict[Tuple[str, type, Any], int] = {}
        # mappings: (memory_start, memory_limit, file_offset, filename_strindex, attribute_indices)
        self.mappings: List[Tuple[int, int, int, int, Tuple[int, ...]]] = [(0, 0, 0, 0, ())]
        self.mapping_index: Dict[Mapping, int] = {}
        self.mapping_by_id: Dict[int, int] = {}
        # functions: (name_strindex, filename_strindex)
        self.functions: List[Tuple[int, int]] = [(0, 0)]
        self.function_index: Dict[Tuple[str, str], int] = {}
        # locations: (mapping_index, address, function_index, line, frame type attribute index)
        self.locations: List[Tuple[int, int, int, int, int]] = [(0, 0, 0, 0, 0)]
        self.location_index: Dict[Tuple[int, int, int, int, int], int] = {}
        self.location_by_id: Dict[int, int] = {}
        self.location_raw: Dict[Tuple[int, int, str, str, int, str], int] = {}
        self.frame_types: Dict[str, int] = {}  # frame kind -> attribute index
        self.stacks: List[Tuple[int, ...]] = [()]
        self.stack_index: Dict[Tuple[int, ...], int] = {(): 0}
        self.stack_by_id: Dict[int, int] = {}
        self.links: List[SpanLink] = []  # link_table[1:]
        self.link_index: Dict[SpanLink, int] = {}  # (a named tuple of two bytes: hashed in C)
        # by id: every sample of a span shares one attribute tuple (the receiver decodes a record
        # once), so most samples cost a dict look-up here
        self.context_attributes_by_id: Dict[int, List[int]] = {}
        self.context_pair_index: Dict[Tuple[str, str], int] = {}  # (key, value) of a context attribute
        # The id()-keyed caches are valid because every object they see is reachable from the
        # Profile being encoded (or is a module constant), so no id is reused during an encode.

    def string(self, s: str) -> int:
        i = self.string_index.get(s)
        if i is None:
            i = self.string_index[s] = len(self.strings)
            self.strings.append(s)
        return i

    def attribute(self, key: str, value: Any) -> int:
        k = (key, type(value), value)
        i = self.attribute_index.get(k)
        if i is None:
            i = self.attribute_index[k] = len(self.attributes)
            self.attributes.append((self.string(key), value))
        return i

    def mapping(self, m: Optional[Mapping]) -> int:
        if m is None:
            return 0
        i = self.mapping_by_id.get(id(m))
        if i is not None:
            return i
        i = self.mapping_index.get(m)
        if i is None:
            attrs: Tuple[int, ...] = ()
            key = BUILD_ID_ATTRIBUTES.get(m.build_id_kind)
            if key and m.build_id:
                attrs = (self.attribute(key, m.build_id),)
            i = self.mapping_index[m] = len(self.mappings)
            self.mappings.append((m.start, m.limit, m.file_offset, self.string(m.filename), attrs))
        self.mapping_by_id[id(m)] = i
        return i

    def function(self, name: str, filename: str) -> int:
        k = (name, filename)
        i = self.function_index.get(k)
        if i is None:
            i = self.function_index[k] = len(self.functions)
            self.functions.append((self.string(name), self.string(filename)))
        return i

    def location(self, f: Frame) -> int:
        i = self.location_by_id.get(id(f))
        if i is not None:
            return i
        m = f.mapping
        mi = 0
        if m is not None:
            mi = self.mapping_by_id.get(id(m)) or self.mapping(m)
        # Cheap value key first (no dataclass hashing), the full entry only on a miss.
        raw = (mi, f.address, f.function, f.source_file, f.line, f.kind)
        i = self.location_raw.get(raw)
        if i is None:
            address = f.address - m.start + m.file_offset if m is not None else f.address
            fi = self.function(f.function, f.source_file) if f.function else 0
            frame_type = self.frame_types.get(f.kind)
            if frame_type is None:
                frame_type = self.frame_types[f.kind] = self.attribute(ATTR_FRAME_TYPE, f.kind)
            k = (mi, address, fi, f.line if fi else 0, frame_type)
            i = self.location_index.get(k)
            if i is None:
                i = self.location_index[k] = len(self.locations)
                self.locations.append(k)
            self.location_raw[raw] = i
        self.location_by_id[id(f)] = i
        return i

    def link(self, link: SpanLink) -> int:
        i = self.link_index.get(link)
        if i is None:
            self.links.append(link)
            i = self.link_index[link] = len(self.links)
        return i

    def context_attributes(self, attributes: Tuple[Tuple[str, str], ...]) -> List[int]:
        """Attribute indices of a sample's thread-context attributes (each a (key, value) pair of
        strings, looked up as it is: no key tuple built per attribute)."""
        i = self.context_attributes_by_id.get(id(attributes))
        if i is None:
            pairs = self.context_pair_index
            i = []
            for pair in attributes:
                a = pairs.get(pair)
                if a is None:
                    a = pairs[pair] = self.attribute(pair[0], pair[1])
                i.append(a)
            self.context_attributes_by_id[id(attributes)] = i
        return i

    def stack(self, frames: Sequence[Frame]) -> int:
        i = self.stack_by_id.get(id(frames))
        if i is not None:
            return i
        # Fast path in C: every frame object already seen.
        k = tuple(map(self.location_by_id.get, map(id, frames)))
        if None in k:
            loc = self.location
            k = tuple([i if i is not None else loc(f) for i, f in zip(k, frames)])
        i = self.stack_index.get(k)
        if i is None:
            i = self.stack_index[k] = len(self.stacks)
            self.stacks.append(k)
        self.stack_by_id[id(frames)] = i
        return i


def _fill_dictionary(d: profiles_pb2.ProfilesDictionary, t: _Tables) -> None:
    d.string_table.extend(t.strings)

    attribute_table = d.attribute_table
    add_attribute = attribute_table.add
    add_attribute()
    for key, value in t.attributes[1:]:
        if type(value) is str:  # most of them (thread names, thread-context attributes): no AnyValue copied
            a = add_attribute()
            a.key_strindex = key
            a.value.string_value = value
        else:
            add_attribute(key_strindex=key, value=any_value(value))

    mapping_table = d.mapping_table
    mapping_table.add()
    for start, limit, offset, filename, attrs in t.mappings[1:]:
        mapping = mapping_table.add()
        mapping.memory_start = start
        mapping.memory_limit = limit
        mapping.file_offset = offset
        mapping.filename_strindex = filename
        mapping.attribute_indices.extend(attrs)

    function_table = d.function_table
    function_table.add()
    for name, filename in t.functions[1:]:
        fn = function_table.add()
        fn.name_strindex = name
        fn.system_name_strindex = name
        if filename:
            fn.filename_strindex = filename

    # Setting fields one by one is about 3x faster than keyword arguments with upb.
    location_table = d.location_table
    add_location = location_table.add
    add_location()
    for mi, address, fi, line, frame_type in t.locations[1:]:
        loc = add_location()
        if mi:
            loc.mapping_index = mi
        loc.address = address
        loc.attribute_indices.append(frame_type)
        if fi:
            ln = loc.lines.add()
            ln.function_index = fi
            if line:
                ln.line = line

    stack_table = d.stack_table
    add_stack = stack_table.add
    add_stack()
    for locations in t.stacks[1:]:
        add_stack().location_indices.extend(locations)

    link_table = d.link_table
    link_table.add()
    if t.links:
        # one message per span: written as protobuf bytes (a Link of a 16-byte trace id and an
        # 8-byte span id is 28 bytes behind a fixed prefix) and parsed by upb in one call, instead of
        # three calls per link
        d.MergeFromString(b''.join([_LINK_PREFIX + link.trace_id + _SPAN_ID_TAG + link.span_id for link in t.links
                                    if len(link.trace_id) == 16 and len(link.span_id) == 8]))
        if len(link_table) != len(t.links) + 1:  # an id of another length (not built by the receiver)
            del link_table[1:]
            for link in t.links:
                pb = link_table.add()
                pb.trace_id = link.trace_id
                pb.span_id = link.span_id


# ProfilesDictionary.link_table (field 4, length-delimited), 28 bytes: Link.trace_id (field 1, 16 bytes)
_LINK_PREFIX = b'\x22\x1c\x0a\x10'
_SPAN_ID_TAG = b'\x12\x08'  # Link.span_id (field 2, 8 bytes)


def _value_type(t: _Tables, vt: ValueType) -> profiles_pb2.ValueType:
    return profiles_pb2.ValueType(type_strindex=t.string(vt.type), unit_strindex=t.string(vt.unit))


def _fill_samples(pb_profile: profiles_pb2.Profile, samples: Sequence[Any], t: _Tables) -> None:
    add = pb_profile.samples.add
    stack = t.stack
    stack_by_id = t.stack_by_id
    thread_attrs: Dict[Tuple[int, str], Tuple[int, int]] = {}
    link_index = t.link_index
    context_by_id = t.context_attributes_by_id
    with_context: Dict[Tuple[Tuple[int, str], int], List[int]] = {}
    for s in samples:
        si = stack_by_id.get(id(s.frames))
        if si is None:
            si = stack(s.frames)
        tk = (s.thread_id, s.thread_name)
        attrs = thread_attrs.get(tk)
        if attrs is None:
            attrs = thread_attrs[tk] = (
                t.attribute(ATTR_THREAD_ID, int(s.thread_id)),
                t.attribute(ATTR_THREAD_NAME, s.thread_name),
            )
        msg = add()
        msg.stack_index = si
        ca = s.context_attributes
        if ca:  # thread-context attributes, under the keys of the process's key map
            # the thread's and the context's indices in one list per (thread, attribute set): one
            # extend per sample instead of two (the samples of a span share both)
            ck = (tk, id(ca))
            both = with_context.get(ck)
            if both is None:
                ci = context_by_id.get(id(ca))
                both = with_context[ck] = list(attrs) + (ci if ci is not None else t.context_attributes(ca))
            msg.attribute_indices.extend(both)
        else:
            msg.attribute_indices.extend(attrs)
        msg.values.append(s.value)
        link = s.link
        if link is not None:
            li = link_index.get(link)
            msg.link_index = li if li is not None else t.link(link)


def encode(
    profile: Profile, scope_name: str = SCOPE_NAME, scope_version: Optional[str] = None
) -> profiles_pb2.ProfilesData:
    """Encode one export interval as a ``ProfilesData`` message."""
    if scope_version is None:
        scope_version = _package_version()
    t = _Tables()
    data = profiles_pb2.ProfilesData()
    # Every profile id from one getrandom call: a syscall per resource gives up the GIL each time,
    # and getting it back from the busy sampler thread costs up to a switch interval (5 ms).
    ids = os.urandom(16 * 2 * len(profile.resources))
    for i, resource in enumerate(profile.resources):
        rp = data.resource_profiles.add()
        rp.resource.attributes.extend(
            [common_pb2.KeyValue(key=k, value=any_value(v)) for k, v in resource.attributes.items() if v is not None]
        )
        sp = rp.scope_profiles.add()
        sp.scope.name = scope_name
        sp.scope.version = scope_version
        cpu = sp.profiles.add(
            sample_type=_value_type(t, profile.sample_type),
            period_type=_value_type(t, profile.period_type),
            period=profile.period_nano,
            time_unix_nano=profile.time_unix_nano,
            duration_nano=profile.duration_nano,
            profile_id=ids[32 * i:32 * i + 16],
        )
        _fill_samples(cpu, resource.samples, t)
        if resource.off_cpu_samples:
            off = sp.profiles.add(
                sample_type=_value_type(t, OFF_CPU_TIME),
                period_type=_value_type(t, profile.period_type),
                period=profile.period_nano,
                time_unix_nano=profile.time_unix_nano,
                duration_nano=profile.duration_nano,
                profile_id=ids[32 * i + 16:32 * i + 32],
            )
            _fill_samples(off, resource.off_cpu_samples, t)
    _fill_dictionary(data.dictionary, t)
    return data


def encode_bytes(profile: Profile, scope_name: str = SCOPE_NAME, scope_version: Optional[str] = None) -> bytes:
    """``encode(...)`` serialized: the body of a POST to ``/v1development/profiles``."""
    return encode(profile, scope_name, scope_version).SerializeToString()


def decode_bytes(payload: bytes) -> profiles_pb2.ProfilesData:
    data = profiles_pb2.ProfilesData()
    data.ParseFromString(payload)
    return data


# --- validation ----------------------------------------------------------------------------


def validate(data: profiles_pb2.ProfilesData) -> List[str]:
    """Violations of the dictionary rules: index 0 of each table is the zero entry, every
    index is in range, no duplicated strings. An empty list means valid."""
    errors: List[str] = []
    d = data.dictionary
    n_str = len(d.string_table)
    n_attr = len(d.attribute_table)
    n_map = len(d.mapping_table)
    n_loc = len(d.location_table)
    n_fun = len(d.function_table)
    n_link = len(d.link_table)
    n_stack = len(d.stack_table)

    if n_str == 0 or d.string_table[0] != '':
        errors.append('string_table[0] must be ""')
    for name in ('mapping_table', 'location_table', 'function_table', 'link_table', 'attribute_table', 'stack_table'):
        table = getattr(d, name)
        if len(table) == 0:
            errors.append('{}[0] (zero entry) is missing'.format(name))
        elif table[0].ByteSize() != 0:
            errors.append('{}[0] is not the zero entry'.format(name))
    if len(set(d.string_table)) != n_str:
        errors.append('string_table has duplicates')

    def check(where: str, index: int, size: int, table: str) -> None:
        if not 0 <= index < size:
            errors.append('{}: {} index {} out of range (size {})'.format(where, table, index, size))

    for i, a in enumerate(d.attribute_table):
        check('attribute_table[{}].key'.format(i), a.key_strindex, n_str, 'string')
        check('attribute_table[{}].unit'.format(i), a.unit_strindex, n_str, 'string')
    for i, m in enumerate(d.mapping_table):
        check('mapping_table[{}].filename'.format(i), m.filename_strindex, n_str, 'string')
        for a in m.attribute_indices:
            check('mapping_table[{}]'.format(i), a, n_attr, 'attribute')
    for i, f in enumerate(d.function_table):
        for field in ('name_strindex', 'system_name_strindex', 'filename_strindex'):
            check('function_table[{}].{}'.format(i, field), getattr(f, field), n_str, 'string')
    for i, loc in enumerate(d.location_table):
        check('location_table[{}]'.format(i), loc.mapping_index, n_map, 'mapping')
        for line in loc.lines:
            check('location_table[{}].lines'.format(i), line.function_index, n_fun, 'function')
        for a in loc.attribute_indices:
            check('location_table[{}]'.format(i), a, n_attr, 'attribute')
    for i, link in enumerate(d.link_table[1:], 1):
        if len(link.trace_id) != 16 or len(link.span_id) != 8:
            errors.append('link_table[{}]: trace_id must be 16 bytes and span_id 8'.format(i))
    for i, st in enumerate(d.stack_table):
        for li in st.location_indices:
            check('stack_table[{}]'.format(i), li, n_loc, 'location')
    for ri, rp in enumerate(data.resource_profiles):
        for si, sp in enumerate(rp.scope_profiles):
            for pi, p in enumerate(sp.profiles):
                where = 'resource_profiles[{}].scope_profiles[{}].profiles[{}]'.format(ri, si, pi)
                for vt_name in ('sample_type', 'period_type'):
                    vt = getattr(p, vt_name)
                    check(where + '.' + vt_name, vt.type_strindex, n_str, 'string')
                    check(where + '.' + vt_name, vt.unit_strindex, n_str, 'string')
                for a in p.attribute_indices:
                    check(where, a, n_attr, 'attribute')
                for k, s in enumerate(p.samples):
                    w = '{}.samples[{}]'.format(where, k)
                    check(w, s.stack_index, n_stack, 'stack')
                    check(w, s.link_index, n_link, 'link')
                    for a in s.attribute_indices:
                        check(w, a, n_attr, 'attribute')
    return errors
