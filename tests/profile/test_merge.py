# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
from datadog_checks.host_profiler.profile.merge import add_samples, merge_samples, merged_samples, sample_key
from datadog_checks.host_profiler.profile.model import CPU_SAMPLES, OFF_CPU_TIME, RawSample, SpanLink


def test_equal_keys_are_merged_once_and_everything_but_the_count_is_the_key():
    span = SpanLink(b'\x01' * 16, b'\x02' * 8)
    a = RawSample(1, 2, 'app', (0x10, 0x20), (0xF0,), 3)
    samples = [
        a,
        RawSample(1, 2, 'app', (0x10, 0x20), (0xF0,), 4),  # same key
        RawSample(1, 3, 'app', (0x10, 0x20), (0xF0,), 1),  # other thread
        RawSample(1, 2, 'app', (0x10, 0x20), (0xF0,), 1, link=span),  # same stack, in a span
        RawSample(1, 2, 'app', (0x10, 0x20), (0xF0,), 1, context_attributes=(('k', 'v'),)),
        RawSample(1, 2, 'app', (0x10, 0x20), (0xF0,), 9, OFF_CPU_TIME),  # other value type
        RawSample(1, 2, 'app', (0x10, 0x20), (0xF0,), 1, truncated=True),
    ]
    merged = merge_samples(samples)
    assert len(merged) == 6
    assert {sample_key(s): s.count for s in merged}[sample_key(a)] == 7
    assert sum(s.count for s in merged) == sum(s.count for s in samples)
    assert all(s.value_type in (CPU_SAMPLES, OFF_CPU_TIME) for s in merged)


def test_accumulator_across_drains_round_trips_every_field():
    s = RawSample(5, 6, 'w', (1,), (2,), 2, OFF_CPU_TIME, True, True, ('rt',), link=SpanLink(b'\x03' * 16, b'\x04' * 8),
                  context_attributes=(('a', 'b'),))
    acc = {}
    add_samples(acc, [s])
    add_samples(acc, [s])  # the next drain repeats the key
    (out,) = merged_samples(acc)
    assert sample_key(out) == sample_key(s) and out.count == 4


def test_with_fields_is_dataclasses_replace():
    """The drain's copy of a sample with new fields equals dataclasses.replace's (and hashes the
    same); an unknown field is refused, the original is untouched."""
    import dataclasses

    import pytest

    from datadog_checks.host_profiler.profile.model import with_fields

    s = RawSample(1, 2, 'x', (1, 2, 3), (4,), 7, runtime_stack=('cpython', (), False))
    for changes in ({'runtime_stack': None}, {'link': SpanLink(b'\x01' * 16, b'\x02' * 8), 'context_attributes': (('k', 'v'),)}):
        got = with_fields(s, **changes)
        assert got == dataclasses.replace(s, **changes) and hash(got) == hash(dataclasses.replace(s, **changes))
    assert s.runtime_stack == ('cpython', (), False) and s.link is None
    with pytest.raises(TypeError):
        with_fields(s, nope=1)
