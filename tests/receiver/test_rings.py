# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
from datadog_checks.host_profiler.receiver.rings import EV_EXIT, EV_SAMPLED, EVENT, ProcessEvent, Rings, decode_event


def test_decode_event_records():
    buf = bytearray(8) + EVENT.pack(EV_SAMPLED, 100, 101, 0, 12345, b'python3\0garbage!')
    assert decode_event(buf, 8, EVENT.size) == ProcessEvent('sampled', 100, 101, 'python3', 12345)
    assert decode_event(EVENT.pack(EV_EXIT, 7, 7, 0, 1, b'x'), 0, EVENT.size).kind == 'exit'
    assert decode_event(EVENT.pack(99, 7, 7, 0, 1, b'x'), 0, EVENT.size) is None  # unknown kind
    assert decode_event(buf, 8, EVENT.size - 1) is None  # short record


def test_wake_ends_a_wait_and_close_is_final():
    import time

    rings = Rings()
    rings.wake()
    t0 = time.monotonic()
    rings.wait(5000)  # returns at once: woken
    assert time.monotonic() - t0 < 1.0
    rings.read()  # no ring: nothing to do
    rings.close()
    rings.wake()  # closed: a no-op
    rings.close()
