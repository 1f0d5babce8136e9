# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The OpenTelemetry thread context record (OTEP 4947), parsed in user space.

A traced thread's TLS variable ``otel_thread_ctx_v1`` points to a packed record (native endianness for
multi-byte fields, ids in W3C byte order)::

    0  16 trace-id      all zero: no span
    16 8  span-id
    24 1  valid         1 = valid; any other value: being written, ignore the record
    25 1  trace-flags   (written 0 by several publishers: not relied on)
    26 2  attrs-data-size
    28 n  attrs-data    repeated {u8 key_index, u8 length, length bytes of UTF-8}

Whatever copies a sampled thread's record (the BPF program, reading the TLS variable through the
thread pointer or the DTV) hands the copied bytes to ``parse_record``; the attribute key indexes are
resolved against the process context's ``threadlocal.attribute_key_map`` by ``resolve_attributes``.
Parsing rules (the OTEP's): stop at an entry that would overrun; a repeated key keeps its last value;
an index outside the key map is dropped and counted (the reader should then refresh the map, which a
changed process-context timestamp triggers).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from ..profile.model import SpanLink

RECORD_HEADER = struct.Struct('<16s8sBBH')  # 28 bytes
MAX_RECORD_BYTES = 640  # the OTEP's recommended size, and what a reader copies at most
VALID = 1
# threadlocal.schema_version values this parser reads (the OTEP still says tlsdesc_v1_dev; it plans
# tls_v1; an early review wrote tlsdesc_v1)
SCHEMAS = ('tlsdesc_v1_dev', 'tlsdesc_v1', 'tls_v1')

# Why a record was ignored or shortened (counted by the caller).
RECORD_ERROR_REASONS = (
    'not_valid',  # valid != 1: the thread was writing it
    'truncated',  # shorter than its 28-byte header, or attrs-data-size runs past what was copied
    'bad_attribute',  # an attribute entry runs past attrs-data: the rest is dropped
    'unknown_key',  # a key index outside the published key map
    # counted by the BPF reader (receiver/bpf/thread_ctx.h), reported by the receiver
    'torn',  # `valid` or the trace id changed while the record was copied
    'read_error',  # the thread pointer, the DTV, the variable or the record could not be read
    'oversized',  # attrs-data past 640 bytes: the attributes that fit are kept
    'record_map_full',  # the kernel's record map was full: the sample is not linked
)


class RecordError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ThreadContext:
    link: Optional[SpanLink]  # None: valid record, but no span (ids zero)
    attributes: Tuple[Tuple[int, str], ...]  # (key index, value), one per key, in first-seen order
    malformed: bool = False  # an attribute entry overran attrs-data (the rest was dropped)


_NO_TRACE = bytes(16)
_NO_SPAN = bytes(8)
_unpack_header = RECORD_HEADER.unpack_from
_new_link = tuple.__new__  # SpanLink(t, s) without the named tuple's Python-level __new__


def _parse(record: bytes) -> Tuple[Optional[SpanLink], Tuple[Tuple[int, str], ...], bool]:
    """``parse_record`` without the ``ThreadContext`` (the receiver's path: once per distinct record)."""
    if len(record) < 28:
        raise RecordError('truncated')
    trace_id, span_id, valid, _flags, size = _unpack_header(record)
    if valid != VALID:
        raise RecordError('not_valid')
    end = 28 + size
    if len(record) < end:
        raise RecordError('truncated')
    values = {}
    i = 28
    malformed = False
    while i < end:
        if i + 2 > end or i + 2 + record[i + 1] > end:
            malformed = True
            break
        length = record[i + 1]
        values[record[i]] = record[i + 2:i + 2 + length].decode('utf-8', 'replace')  # last occurrence wins
        i += 2 + length
    # the OTEP requires both ids or neither (SpanLink.of)
    link = SpanLink(trace_id, span_id) if trace_id != _NO_TRACE and span_id != _NO_SPAN else None
    return link, tuple(values.items()), malformed


def parse_record(record: bytes) -> ThreadContext:
    """Parse the copied bytes of one record. Raises ``RecordError('not_valid' | 'truncated')``."""
    return ThreadContext(*_parse(record))


def resolve_attributes(entries: Sequence[Tuple[int, str]], key_map: Sequence[str]
                       ) -> Tuple[Tuple[Tuple[str, str], ...], int]:
    """((key, value), ...) of a record's entries through the process's key map, and how many entries
    had an index outside it (dropped)."""
    out = []
    unknown = 0
    n = len(key_map)
    for index, value in entries:
        if index < n:
            out.append((key_map[index], value))
        else:
            unknown += 1
    return tuple(out), unknown


class ThreadContextDecoder:
    """Turns a sampled thread's copied record into what a ``RawSample`` carries (``link``,
    ``context_attributes``), counting every record it ignores or shortens and every linked sample."""

    def __init__(self, telemetry) -> None:
        self.telemetry = telemetry
        self._key_map: Tuple[Any, Tuple[str, ...]] = (None, ())  # (process context, its key map), the last one
        telemetry.declare('otel_context.samples_linked')
        telemetry.declare('otel_context.thread_context_reads')
        for reason in RECORD_ERROR_REASONS:
            telemetry.declare('otel_context.record_errors', ['reason:' + reason])

    def decode(self, record: bytes, process_context, samples: int = 1
               ) -> Tuple[Optional[SpanLink], Tuple[Tuple[str, str], ...]]:
        """``process_context``: the process's ``ProcessContext`` (its key map names the attributes), or
        None. ``samples``: how many samples the record stands for (the count of an aggregated key)."""
        t = self.telemetry
        try:
            link, entries, malformed = _parse(record[:MAX_RECORD_BYTES] if len(record) > MAX_RECORD_BYTES else record)
        except RecordError as e:
            t.count('otel_context.record_errors', 1, ['reason:' + e.reason])
            return None, ()
        if malformed:
            t.count('otel_context.record_errors', 1, ['reason:bad_attribute'])
        attributes: Tuple[Tuple[str, str], ...] = ()
        if entries:
            cached = self._key_map
            if cached[0] is not process_context:
                cached = self._key_map = (
                    process_context, process_context.attribute_key_map if process_context is not None else ())
            attributes, unknown = resolve_attributes(entries, cached[1])
            if unknown:
                t.count('otel_context.record_errors', unknown, ['reason:unknown_key'])
        if link is not None and samples:
            t.count('otel_context.samples_linked', samples)
        return link, attributes


class RecordLinks:
    """What the samples of a drain carry for their copied records, decoded once per distinct record
    for as long as it is in use: (pid, record bytes) -> (SpanLink | None, context attributes).

    A span's record is the same bytes at every sample of the span, and across the drains it spans:
    it is decoded (and its errors counted) once, and every sample of the span shares the same
    ``SpanLink`` and attribute tuple (the OTLP encoder then finds them by identity). An entry is
    decoded again when its process's context changed (a new key map), and dropped once a whole
    drain went by without a sample of it (``end_drain``): memory is bounded by the records of two
    drains. ``context_of``: pid -> the process's ``ProcessContext`` or None."""

    def __init__(self, decoder: ThreadContextDecoder, context_of: Callable[[int], Any]) -> None:
        self.decoder = decoder
        self.context_of = context_of
        # (pid, record) -> ((link, attributes), the process context it was decoded with)
        self._current: Dict[Tuple[int, bytes], Tuple[Tuple[Any, tuple], Any]] = {}
        self._previous: Dict[Tuple[int, bytes], Tuple[Tuple[Any, tuple], Any]] = {}
        self._key_map: Tuple[Any, Tuple[str, ...]] = (None, ())  # (process context, its key map), the last one
        self._attributes: Dict[tuple, tuple] = {}  # equal attribute tuples, one object
        self.decoded = 0  # records decoded (cache misses), for tests and benchmarks

    def __call__(self, pid: int, record: bytes) -> Tuple[Optional[SpanLink], Tuple[Tuple[str, str], ...]]:
        key = (pid, record)
        context = self.context_of(pid)
        hit = self._current.get(key)
        if hit is None:
            hit = self._previous.get(key)
            if hit is not None:
                self._current[key] = hit
        if hit is not None and hit[1] is context:
            return hit[0]
        pair = self._decode(record, context)
        self._current[key] = (pair, context)
        self.decoded += 1
        return pair

    def _decode(self, record: bytes, context) -> Tuple[Optional[SpanLink], Tuple[Tuple[str, str], ...]]:
        """(link, attributes) of a new record. What publishers write (a valid record with its ids and
        no attribute or exactly one, every key in the key map) is decoded here with one unpack and no
        intermediate objects; anything else goes through ``ThreadContextDecoder.decode``, which counts
        what it ignores or shortens."""
        n = len(record)
        if 28 <= n <= MAX_RECORD_BYTES:
            trace_id, span_id, valid, _flags, size = _unpack_header(record)
            if valid == VALID and n >= 28 + size:
                attributes: Optional[tuple] = None
                if not size:
                    attributes = ()
                elif size == 2 + record[29]:  # exactly one entry, filling attrs-data
                    key_map = self._key_map_of(context)
                    index = record[28]
                    if index < len(key_map):
                        attributes = ((key_map[index], record[30:28 + size].decode('utf-8', 'replace')),)
                        attributes = self._attributes.setdefault(attributes, attributes)
                if attributes is not None:
                    link = (_new_link(SpanLink, (trace_id, span_id))
                            if trace_id != _NO_TRACE and span_id != _NO_SPAN else None)
                    return link, attributes
        link, attributes = self.decoder.decode(record, context, 0)
        if attributes:
            attributes = self._attributes.setdefault(attributes, attributes)
        return link, attributes

    def _key_map_of(self, context) -> Tuple[str, ...]:
        cached = self._key_map
        if cached[0] is not context:
            cached = self._key_map = (context, context.attribute_key_map if context is not None else ())
        return cached[1]

    def end_drain(self) -> None:
        """Forget the records no sample of the last two drains referred to."""
        self._previous, self._current = self._current, {}
        if len(self._attributes) > 4 * (len(self._previous) + 64):
            self._attributes.clear()
