# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
from opentelemetry.proto.profiles.v1development import profiles_pb2

from datadog_checks.host_profiler.profile import otlp
from datadog_checks.host_profiler.profile.builder import TRUNCATED_FRAME
from datadog_checks.host_profiler.profile.model import (
    FRAME_KERNEL,
    Frame,
    Mapping,
    Profile,
    Resource,
    Sample,
)

EXE = Mapping(0x400000, 0x500000, 0x0, '/usr/bin/app', 'aa11', 'gnu')
LIBGO = Mapping(0x7F0000000000, 0x7F0000100000, 0x3000, '/usr/bin/goapp', 'go-id', 'go')
MAIN = Frame('main', 0x401000, mapping=EXE, source_file='app.c', line=12)
WORK = Frame('work', 0x401100, mapping=EXE, source_file='app.c')
UNKNOWN = Frame('', 0x7F0000001234, mapping=LIBGO)
KFRAME = Frame('do_syscall_64', 0xFFFFFFFF81001234, FRAME_KERNEL)


def make_profile():
    r1 = Resource(
        attributes={
            'process.pid': 42,
            'process.executable.name': 'app',
            'process.executable.path': '/usr/bin/app',
            'container.id': 'c0ffee',
            'service.name': 'web',
        },
        samples=[
            Sample((WORK, MAIN), 7, thread_id=42, thread_name='app'),
            Sample((KFRAME, WORK, MAIN), 3, thread_id=43, thread_name='app-worker'),
            # Equal values, distinct objects: must be deduplicated by value.
            Sample((Frame('work', 0x401100, mapping=Mapping(*EXE.__dict__.values()), source_file='app.c'), MAIN), 2, 42, 'app'),
        ],
        off_cpu_samples=[Sample((KFRAME, MAIN), 5_000_000, thread_id=42, thread_name='app')],
        comm='app',
    )
    r2 = Resource(
        attributes={'process.pid': 7, 'process.executable.name': 'goapp'},
        samples=[Sample((UNKNOWN, MAIN, TRUNCATED_FRAME), 1, thread_id=7, thread_name='goapp')],
    )
    return Profile(time_unix_nano=1_700_000_000 * 10**9, duration_nano=10 * 10**9, period_nano=50_000_000, resources=[r1, r2])


def decode():
    payload = otlp.encode_bytes(make_profile(), scope_version='1.2.3')
    data = profiles_pb2.ProfilesData()
    data.ParseFromString(payload)
    return data


def attrs_of(d, indices):
    out = {}
    for i in indices:
        kv = d.attribute_table[i]
        value = kv.value
        out[d.string_table[kv.key_strindex]] = getattr(value, value.WhichOneof('value'))
    return out


def stack_names(d, stack_index):
    names = []
    for li in d.stack_table[stack_index].location_indices:
        loc = d.location_table[li]
        names.append(d.string_table[d.function_table[loc.lines[0].function_index].name_strindex] if loc.lines else '')
    return names


def test_table_rules_hold():
    data = decode()
    assert otlp.validate(data) == []
    d = data.dictionary
    assert d.string_table[0] == ''
    for table in (d.mapping_table, d.location_table, d.function_table, d.link_table, d.attribute_table, d.stack_table):
        assert len(table) >= 1 and table[0].ByteSize() == 0
    # Deduplicated: no two equal entries in any table.
    for table in (d.mapping_table, d.location_table, d.function_table, d.attribute_table, d.stack_table):
        blobs = [m.SerializeToString() for m in table]
        assert len(blobs) == len(set(blobs))
    assert len(set(d.string_table)) == len(d.string_table)


def test_validate_reports_violations():
    data = decode()
    data.dictionary.stack_table[1].location_indices.append(9999)
    data.dictionary.string_table[0] = 'x'
    data.resource_profiles[0].scope_profiles[0].profiles[0].samples[0].stack_index = 12345
    errors = otlp.validate(data)
    assert any('string_table[0]' in e for e in errors)
    assert any('location index 9999' in e for e in errors)
    assert any('stack index 12345' in e for e in errors)
    empty = profiles_pb2.ProfilesData()
    assert any('zero entry' in e for e in otlp.validate(empty))


def test_resources_scope_and_profile_fields():
    data = decode()
    d = data.dictionary
    assert len(data.resource_profiles) == 2
    rp = data.resource_profiles[0]
    attrs = {kv.key: kv.value for kv in rp.resource.attributes}
    assert attrs['process.pid'].int_value == 42
    assert attrs['process.executable.name'].string_value == 'app'
    assert attrs['container.id'].string_value == 'c0ffee'
    assert attrs['service.name'].string_value == 'web'
    (sp,) = rp.scope_profiles
    assert (sp.scope.name, sp.scope.version) == ('host_profiler', '1.2.3')
    cpu, off = sp.profiles
    st = lambda vt: (d.string_table[vt.type_strindex], d.string_table[vt.unit_strindex])  # noqa: E731
    assert st(cpu.sample_type) == ('samples', 'count')
    assert st(cpu.period_type) == ('cpu', 'nanoseconds')
    assert cpu.period == 50_000_000
    assert cpu.time_unix_nano == 1_700_000_000 * 10**9 and cpu.duration_nano == 10 * 10**9
    assert len(cpu.profile_id) == 16 and cpu.profile_id != off.profile_id
    assert st(off.sample_type) == ('off_cpu', 'nanoseconds')
    assert [s.values[0] for s in off.samples] == [5_000_000]
    # The second resource has no off-CPU samples: one profile only.
    assert len(data.resource_profiles[1].scope_profiles[0].profiles) == 1


def test_samples_round_trip_names_counts_and_thread_attributes():
    data = decode()
    d = data.dictionary
    cpu = data.resource_profiles[0].scope_profiles[0].profiles[0]
    got = [(stack_names(d, s.stack_index), s.values[0], attrs_of(d, s.attribute_indices)) for s in cpu.samples]
    assert got == [
        (['work', 'main'], 7, {'thread.id': 42, 'thread.name': 'app'}),
        (['do_syscall_64', 'work', 'main'], 3, {'thread.id': 43, 'thread.name': 'app-worker'}),
        (['work', 'main'], 2, {'thread.id': 42, 'thread.name': 'app'}),
    ]
    # Value dedupe: the equal stack of the third sample is the same stack entry as the first.
    assert cpu.samples[0].stack_index == cpu.samples[2].stack_index
    assert cpu.samples[0].attribute_indices == cpu.samples[2].attribute_indices
    assert sum(s.values[0] for s in cpu.samples) == 12


def test_locations_mappings_and_frame_types():
    data = decode()
    d = data.dictionary
    s = lambda i: d.string_table[i]  # noqa: E731
    locs = {}
    for loc in d.location_table[1:]:
        name = s(d.function_table[loc.lines[0].function_index].name_strindex) if loc.lines else ''
        locs[name or hex(loc.address)] = loc
    main = locs['main']
    assert main.address == 0x1000  # file address: 0x401000 - 0x400000 + 0
    assert main.lines[0].line == 12
    assert s(d.function_table[main.lines[0].function_index].filename_strindex) == 'app.c'
    m = d.mapping_table[main.mapping_index]
    assert (m.memory_start, m.memory_limit, m.file_offset, s(m.filename_strindex)) == (0x400000, 0x500000, 0, '/usr/bin/app')
    assert attrs_of(d, m.attribute_indices) == {'process.executable.build_id.gnu': 'aa11'}
    assert attrs_of(d, main.attribute_indices) == {'profile.frame.type': 'native'}

    kernel = locs['do_syscall_64']
    assert kernel.mapping_index == 0 and kernel.address == 0xFFFFFFFF81001234
    assert attrs_of(d, kernel.attribute_indices) == {'profile.frame.type': 'kernel'}

    # Unknown native frame: mapping + file address, no line.
    unknown = locs[hex(0x1234 + 0x3000)]
    assert not unknown.lines
    um = d.mapping_table[unknown.mapping_index]
    assert attrs_of(d, um.attribute_indices) == {'process.executable.build_id.go': 'go-id'}

    abort = locs['[truncated]']
    assert attrs_of(d, abort.attribute_indices) == {'profile.frame.type': 'abort'}


def test_empty_profile_is_valid():
    data = otlp.encode(Profile(time_unix_nano=1, duration_nano=2, period_nano=3))
    assert otlp.validate(data) == []
    assert len(data.resource_profiles) == 0


def test_any_value_types():
    assert otlp.any_value(True).bool_value is True
    assert otlp.any_value(3).int_value == 3
    assert otlp.any_value(1.5).double_value == 1.5
    assert otlp.any_value('x').string_value == 'x'
    assert [v.string_value for v in otlp.any_value(['a', 'b']).array_value.values] == ['a', 'b']


# --- span links (OTEP 4947 thread context -> OTLP Link) -------------------------------------


def test_samples_in_spans_point_to_their_link_and_link_table_0_is_empty():
    from datadog_checks.host_profiler.profile.builder import build_profile
    from datadog_checks.host_profiler.profile.merge import merge_samples
    from datadog_checks.host_profiler.profile.model import RawSample, SpanLink

    trace = bytes.fromhex('0af7651916cd43dd8448eb211c80319c')
    span_a = SpanLink(trace, bytes.fromhex('b7ad6b7169203331'))
    span_b = SpanLink(trace, bytes.fromhex('00f067aa0ba902b7'))
    stack = (0x401100, 0x401000)
    raw = [
        RawSample(42, 42, 'app', stack, (), 5, link=span_a),
        RawSample(42, 42, 'app', stack, (), 2, link=span_a),  # same key: merged
        RawSample(42, 42, 'app', stack, (), 3, link=span_b),  # same stack, other span: another sample
        RawSample(42, 42, 'app', stack, (), 4),  # outside any span
    ]
    profile = build_profile(merge_samples(raw), lambda pid: None,
                            lambda proc, addrs: [Frame('f%x' % a, a) for a in addrs],
                            lambda addrs: [], time_unix_nano=1, duration_nano=1, period_nano=1)
    data = profiles_pb2.ProfilesData()
    data.ParseFromString(otlp.encode_bytes(profile))  # the official message decodes it
    assert otlp.validate(data) == []
    d = data.dictionary
    assert len(d.link_table) == 3
    assert d.link_table[0] == profiles_pb2.Link() and d.link_table[0].ByteSize() == 0
    samples = data.resource_profiles[0].scope_profiles[0].profiles[0].samples
    assert len(samples) == 3
    by_link = {(d.link_table[s.link_index].trace_id, d.link_table[s.link_index].span_id): s for s in samples}
    assert by_link[(trace, span_a.span_id)].values[0] == 7
    assert by_link[(trace, span_b.span_id)].values[0] == 3
    assert by_link[(b'', b'')].values[0] == 4 and by_link[(b'', b'')].link_index == 0
    assert len({s.stack_index for s in samples}) == 1  # one stack, three samples


def test_link_ids_that_name_no_span_make_no_link():
    from datadog_checks.host_profiler.profile.model import SpanLink

    assert SpanLink.of(bytes(16), bytes(8)) is None
    assert SpanLink.of(b'\x01' * 16, bytes(8)) is None  # the OTEP: both ids or neither
    assert SpanLink.of(b'\x01' * 15, b'\x01' * 8) is None
    assert SpanLink.of(b'\x01' * 16, b'\x02' * 8) == SpanLink(b'\x01' * 16, b'\x02' * 8)


def test_validate_rejects_links_of_the_wrong_size():
    data = profiles_pb2.ProfilesData()
    data.ParseFromString(otlp.encode_bytes(make_profile()))
    data.dictionary.link_table.add(trace_id=b'\x01' * 8, span_id=b'\x02' * 8)
    assert any('link_table[1]' in e for e in otlp.validate(data))


def test_merged_profiles_keep_samples_of_different_spans_apart():
    from datadog_checks.host_profiler.profile.merge import merge_profiles
    from datadog_checks.host_profiler.profile.model import SpanLink

    link = SpanLink(b'\x01' * 16, b'\x02' * 8)
    frames = (WORK, MAIN)
    p = [Profile(i, 1, 1, resources=[Resource({'process.pid': 1}, [Sample(frames, 1, 1, 'a', link=link),
                                                                    Sample(frames, 1, 1, 'a')])])
         for i in range(2)]
    merged = merge_profiles(p).resources[0].samples
    assert sorted((s.link is not None, s.value) for s in merged) == [(False, 2), (True, 2)]
