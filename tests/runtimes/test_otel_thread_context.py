# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The user-space half of the OTel thread context (OTEP 4947): parsing a copied record, resolving its
attribute keys through the process's key map, and carrying the result into OTLP samples. The records
are laid out by a C struct the test compiles (the OTEP's packed layout, as libdatadog and the Java
profiler assert it), not by the parser's own struct format."""
import struct
import subprocess

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.profiles.v1development import profiles_pb2
from tests.workloads import compile_c

from datadog_checks.host_profiler.profile import otlp
from datadog_checks.host_profiler.profile.builder import build_profile
from datadog_checks.host_profiler.profile.model import Frame, RawSample, SpanLink
from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.runtimes.otel_process_context import ProcessContext
from datadog_checks.host_profiler.runtimes.otel_thread_context import (
    RecordError,
    RecordLinks,
    ThreadContextDecoder,
    parse_record,
    resolve_attributes,
)

TRACE = bytes.fromhex('4bf92f3577b34da6a3ce929d0e0e4736')
SPAN = bytes.fromhex('00f067aa0ba902b7')

RECORD_WRITER = r'''
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stddef.h>
struct __attribute__((packed)) otel_thread_ctx_record {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t valid;
    uint8_t trace_flags;
    uint16_t attrs_data_size;
    uint8_t attrs_data[612];
};
_Static_assert(offsetof(struct otel_thread_ctx_record, valid) == 24, "valid");
_Static_assert(offsetof(struct otel_thread_ctx_record, attrs_data) == 28, "attrs");
_Static_assert(sizeof(struct otel_thread_ctx_record) == 640, "size");
static void put(struct otel_thread_ctx_record *r, uint8_t key, const char *value) {
    uint8_t n = (uint8_t)strlen(value);
    r->attrs_data[r->attrs_data_size] = key;
    r->attrs_data[r->attrs_data_size + 1] = n;
    memcpy(r->attrs_data + r->attrs_data_size + 2, value, n);
    r->attrs_data_size += 2 + n;
}
int main(void) {
    static const uint8_t trace[16] = {0x4b,0xf9,0x2f,0x35,0x77,0xb3,0x4d,0xa6,0xa3,0xce,0x92,0x9d,0x0e,0x0e,0x47,0x36};
    static const uint8_t span[8] = {0x00,0xf0,0x67,0xaa,0x0b,0xa9,0x02,0xb7};
    struct otel_thread_ctx_record r;
    memset(&r, 0, sizeof r);
    memcpy(r.trace_id, trace, 16);   /* W3C byte order: as the hex string reads */
    memcpy(r.span_id, span, 8);
    r.trace_flags = 1;
    put(&r, 0, "a1b2c3d4e5f60718");  /* datadog.local_root_span_id */
    put(&r, 1, "GET /users/{id}");
    put(&r, 0, "00000000000000ff");  /* repeated: the last one wins */
    put(&r, 7, "unknown key");       /* outside the key map */
    r.valid = 1;                     /* last, as a writer publishes */
    fwrite(&r, 1, 28 + r.attrs_data_size, stdout);
    return 0;
}
'''

KEY_MAP = ('datadog.local_root_span_id', 'http.route')


def _record(tmp_path):
    src = tmp_path / 'record_writer.c'
    src.write_text(RECORD_WRITER)
    binary = compile_c(str(src), tmp_path, cflags=('-O1',))
    return subprocess.run([binary], check=True, capture_output=True).stdout


def test_a_record_laid_out_by_c_parses_per_the_otep(tmp_path):
    record = _record(tmp_path)
    ctx = parse_record(record)
    assert ctx.link == SpanLink(TRACE, SPAN)
    assert dict(ctx.attributes) == {0: '00000000000000ff', 1: 'GET /users/{id}', 7: 'unknown key'}
    assert not ctx.malformed
    attrs, unknown = resolve_attributes(ctx.attributes, KEY_MAP)
    assert attrs == (('datadog.local_root_span_id', '00000000000000ff'), ('http.route', 'GET /users/{id}'))
    assert unknown == 1


def test_records_being_written_cut_short_or_without_a_span(tmp_path):
    record = bytearray(_record(tmp_path))
    being_written = bytes(record[:24]) + b'\x00' + bytes(record[25:])
    for r, reason in ((being_written, 'not_valid'), (bytes(record[:27]), 'truncated'), (bytes(record[:40]), 'truncated')):
        try:
            parse_record(r)
        except RecordError as e:
            assert e.reason == reason
        else:
            raise AssertionError('accepted: {}'.format(reason))
    no_span = bytes(24) + bytes(record[24:])
    assert parse_record(no_span).link is None
    # attrs-data-size says more than the entries hold: the overrunning entry and the rest are dropped
    overrun = bytearray(record[:28]) + bytes([1, 200]) + b'x' * 10
    overrun[26:28] = struct.pack('<H', 12)
    ctx = parse_record(bytes(overrun))
    assert ctx.malformed and ctx.attributes == () and ctx.link == SpanLink(TRACE, SPAN)


def test_the_decoder_counts_what_it_drops_and_the_samples_it_links(tmp_path):
    record = _record(tmp_path)
    telemetry = Telemetry()
    decoder = ThreadContextDecoder(telemetry)
    process_context = ProcessContext(address=1, published_at_ns=1, resource={},
                                     attributes={'threadlocal.attribute_key_map': list(KEY_MAP)})
    link, attrs = decoder.decode(record, process_context, samples=3)
    assert link == SpanLink(TRACE, SPAN) and dict(attrs)['http.route'] == 'GET /users/{id}'
    assert decoder.decode(record[:24] + b'\x02' + record[25:], process_context) == (None, ())
    link, attrs = decoder.decode(record, None)  # no process context (yet): ids only
    assert link == SpanLink(TRACE, SPAN) and attrs == ()
    totals = telemetry.totals()
    assert totals['otel_context.samples_linked'] == 4
    assert totals['otel_context.record_errors{reason:not_valid}'] == 1
    assert totals['otel_context.record_errors{reason:unknown_key}'] == 1 + 3


def test_thread_context_attributes_become_otlp_sample_attributes(tmp_path):
    record = _record(tmp_path)
    decoder = ThreadContextDecoder(Telemetry())
    process_context = ProcessContext(address=1, published_at_ns=1, resource={},
                                     attributes={'threadlocal.attribute_key_map': list(KEY_MAP)})
    link, attrs = decoder.decode(record, process_context)
    raw = [RawSample(9, 9, 'app', (0x1000,), (), 5, link=link, context_attributes=attrs),
           RawSample(9, 9, 'app', (0x1000,), (), 2)]
    profile = build_profile(raw, lambda pid: None, lambda p, addrs: [Frame('handler', a) for a in addrs],
                            lambda addrs: [], time_unix_nano=1, duration_nano=1, period_nano=1)
    data = profiles_pb2.ProfilesData.FromString(otlp.encode_bytes(profile))
    assert otlp.validate(data) == []
    d = data.dictionary
    samples = data.resource_profiles[0].scope_profiles[0].profiles[0].samples
    linked = [s for s in samples if s.link_index]
    assert len(samples) == 2 and len(linked) == 1 and linked[0].values[0] == 5
    keys = {d.string_table[d.attribute_table[i].key_strindex]: d.attribute_table[i].value.string_value
            for i in linked[0].attribute_indices}
    assert keys['http.route'] == 'GET /users/{id}'
    assert keys['datadog.local_root_span_id'] == '00000000000000ff'
    assert d.link_table[linked[0].link_index].trace_id == TRACE


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=700))
def test_fuzzed_records_parse_or_fail_with_a_reason(data):
    try:
        ctx = parse_record(data)
    except RecordError as e:
        assert e.reason in ('not_valid', 'truncated')
    else:
        for key, value in ctx.attributes:
            assert 0 <= key < 256 and isinstance(value, str)


def test_record_links_decode_a_span_once_across_drains_and_again_for_a_new_key_map(tmp_path):
    """What the receiver's drains use: every sample of a span (the same record bytes) shares one
    SpanLink and one attribute tuple; the record is decoded once while it is in use, again when its
    process published a new context (key map), and forgotten after a drain without it."""
    record = _record(tmp_path)
    telemetry = Telemetry()
    first = ProcessContext(address=1, published_at_ns=1, resource={},
                           attributes={'threadlocal.attribute_key_map': list(KEY_MAP)})
    contexts = {9: None}
    links = RecordLinks(ThreadContextDecoder(telemetry), contexts.get)
    link, attrs = links(9, record)  # no process context yet: ids only, unknown keys counted
    assert link == SpanLink(TRACE, SPAN) and attrs == ()
    contexts[9] = first
    a = links(9, record)
    b = links(9, bytes(record))  # equal bytes, another object: a cache hit
    assert a[0] is b[0] and a[1] is b[1] and dict(a[1])['http.route'] == 'GET /users/{id}'
    assert links.decoded == 2
    links.end_drain()
    assert links(9, record)[0] is a[0] and links.decoded == 2  # the span goes on in the next drain
    links.end_drain()
    links.end_drain()  # a whole drain without it: forgotten
    c = links(9, record)
    assert links.decoded == 3 and c == a and c[0] is not a[0]
    assert links(10, record)[0] is not c[0]  # another process: its own entry
    totals = telemetry.totals()
    # counted at each decode, not at each sample or drain: no context (3 entries), the key map (1 entry
    # outside it), after the drain without it (1), pid 10 without context (3)
    assert totals['otel_context.record_errors{reason:unknown_key}'] == 3 + 1 + 1 + 3
    assert 'otel_context.samples_linked' not in totals or totals['otel_context.samples_linked'] == 0
