# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The delivery queue alone, with a scripted send function (no network)."""

import random
import threading
import time

from datadog_checks.host_profiler.exporters.queue import OK, REJECT, RETRY, DeliveryQueue, RetryPolicy, SendResult


class Script:
    def __init__(self):
        self.fail = True
        self.sent = []
        self.attempts = 0
        self.drops = []
        self.lock = threading.Lock()

    def send(self, item):
        with self.lock:
            self.attempts += 1
            if self.fail:
                return SendResult(RETRY, 'http_5xx')
            self.sent.append(item.body)
            return SendResult(OK)


def make(script, max_bytes=1000, **retry):
    policy = RetryPolicy(**dict({'initial_interval': 0.005, 'max_interval': 0.02}, **retry))
    q = DeliveryQueue(
        't',
        max_bytes,
        script.send,
        policy,
        on_drop=lambda item, reason: script.drops.append((item.body, reason)),
        on_result=lambda *a: None,
    )
    q.start()
    return q


def test_outage_then_recovery_in_order_exactly_once():
    s = Script()
    q = make(s, max_bytes=10**6)
    for i in range(50):
        assert q.put(b'%03d' % i, 3)
    time.sleep(0.1)
    s.fail = False
    assert q.flush(5)
    assert s.sent == [b'%03d' % i for i in range(50)]
    assert s.drops == []
    q.close()


def test_drop_oldest_exact_counts():
    s = Script()
    q = make(s, max_bytes=100, initial_interval=0.05, max_interval=0.05)
    for i in range(100):
        assert q.put(bytes([i]) * 30, 30)
        assert q.queued_bytes <= 100
    while len(q) > 3 or q.abandoning:
        time.sleep(0.005)
    kept = len(q)
    assert kept in (2, 3)
    s.fail = False
    assert q.flush(5)
    assert s.sent == [bytes([i]) * 30 for i in range(100 - kept, 100)]
    assert len(s.drops) == 100 - kept
    assert {r for _, r in s.drops} == {'queue_full'}
    assert sorted(b[0] for b, _ in s.drops) == list(range(100 - kept))
    q.close()


def test_reject_is_not_retried():
    calls = []

    def send(item):
        calls.append(item.body)
        return SendResult(REJECT, 'http_4xx')

    drops = []
    q = DeliveryQueue('t', 1000, send, RetryPolicy(0.001, 0.001), lambda i, r: drops.append(r), lambda *a: None)
    q.start()
    q.put(b'a', 1)
    q.put(b'b', 1)
    assert q.flush(2)
    assert calls == [b'a', b'b'] and drops == ['rejected', 'rejected']
    q.close()


def test_backoff_full_jitter_bounds():
    p = RetryPolicy(initial_interval=1, max_interval=8)
    rng = random.Random(1)
    for attempt in range(10):
        cap = min(8, 2**attempt)
        for _ in range(50):
            assert 0 <= p.backoff(attempt, rng) <= cap
    assert max(p.backoff(20, rng) for _ in range(200)) > 6  # reaches the cap


def test_close_counts_what_is_left_and_flush_times_out():
    s = Script()
    q = make(s, initial_interval=10, max_interval=10)
    for i in range(5):
        q.put(b'x', 1)
    assert not q.flush(0.1)
    t0 = time.monotonic()
    q.close(1)
    assert time.monotonic() - t0 < 1
    time.sleep(0.05)
    assert len(s.drops) == 5 and {r for _, r in s.drops} == {'closed'}
    assert not q.put(b'y', 1)
