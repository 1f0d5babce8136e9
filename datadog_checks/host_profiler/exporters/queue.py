# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Delivery to one endpoint: a queue bounded in bytes, a sender thread, retries.

Contract
--------
- ``put()`` never blocks on the network: it appends the (already encoded and compressed)
  body and returns. When the queue would exceed its byte budget the OLDEST queued
  exports are dropped, each counted once (``reason:queue_full``).
- One daemon sender thread per endpoint sends the head of the queue, in order, one at a
  time. On a retryable failure (connection error, timeout, 429, 5xx) the head stays the
  head and is retried after an exponential backoff with full jitter
  (``uniform(0, min(max_interval, initial_interval * 2**attempt))``) or after the server's
  ``Retry-After`` when it gives one. So delivery is in order and exactly once per
  accepted export (as long as the server does not answer an error after having accepted
  the body, which no retry scheme over HTTP can rule out).
- Non-retryable answers (other 4xx, including 401/403) drop the export (counted).
- ``max_elapsed_time`` (seconds, per export, measured from its first attempt) gives up on
  an export that has been retried that long. The default is 0 = never give up by time:
  during an outage the whole queue waits behind its head, so a time limit would only
  throw away, one after the other, exports that the queue still has room for. Losses
  during a long outage then come only from the byte bound (drop-oldest), which is the
  one knob the user sizes: with the default 64 MB and typical 0.1-1 MB compressed
  exports per 60 s, a 5-minute outage (5 exports) is held entirely and delivered in order
  once the endpoint is back.
- The export being sent counts in the budget too, and it is the oldest: when room is
  needed it is abandoned first (counted as dropped once its current attempt ends without
  success, at once if it is waiting for a retry; if that attempt succeeds it is delivered,
  not counted), and its bytes count until the sender lets go of them, so the bodies held
  never exceed the bound (the one being enqueued aside, which the caller already holds).
- ``flush(timeout)`` waits until everything queued has been delivered or dropped.
- ``close(timeout)`` stops the thread within ``timeout`` (a request in flight cannot be
  interrupted: the daemon thread then ends after it); what is still queued is counted
  as dropped (``reason:closed``).
"""

from __future__ import annotations

import collections
import email.utils
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Deque, Optional

# Outcome kinds returned by the send function.
OK = 'ok'
RETRY = 'retry'
REJECT = 'reject'

MAX_RETRY_AFTER_S = 600.0


@dataclass
class SendResult:
    kind: str  # OK | RETRY | REJECT
    reason: str = ''  # for errors: timeout|connection|http_4xx|http_5xx|http_429|auth
    retry_after: Optional[float] = None  # seconds, from the server
    message: str = ''


@dataclass
class Item:
    seq: int
    body: bytes
    raw_size: int
    enqueued_at: float
    first_attempt_at: Optional[float] = None
    attempts: int = 0
    abandoned: bool = False
    meta: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.body)


@dataclass
class RetryPolicy:
    initial_interval: float = 5.0
    max_interval: float = 30.0
    max_elapsed_time: float = 0.0  # 0 = retry until the queue bound drops it

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform(0, min(max_interval, initial * 2**attempt)), attempt counted from 0."""
        cap = min(self.max_interval, self.initial_interval * (2 ** min(attempt, 30)))
        return rng.uniform(0, cap)


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Retry-After is either delay-seconds or an HTTP-date. Returns seconds (>= 0) or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            dt = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if dt is None:
            return None
        seconds = dt.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(seconds, MAX_RETRY_AFTER_S))


class DeliveryQueue:
    """A byte-bounded FIFO with one sender thread.

    ``send(item) -> SendResult`` does one attempt. ``on_drop(item, reason)`` is called once
    per dropped export; ``on_result(item, result, will_retry)`` after every attempt.
    """

    def __init__(
        self,
        name: str,
        max_bytes: int,
        send: Callable[[Item], SendResult],
        retry: RetryPolicy,
        on_drop: Callable[[Item, str], None],
        on_result: Callable[[Item, SendResult, bool], None],
        on_size: Callable[[int], None] = lambda n: None,
        rng: Optional[random.Random] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.max_bytes = int(max_bytes)
        self._send = send
        self._retry = retry
        self._on_drop = on_drop
        self._on_result = on_result
        self._on_size = on_size
        self._rng = rng or random.Random()
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: Deque[Item] = collections.deque()
        self._queued_bytes = 0
        self._inflight: Optional[Item] = None
        self._seq = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name='host-profiler-export-' + name, daemon=True)
        self._started = False

    # -- producer side -------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if not self._started:
                self._started = True
                self._thread.start()

    def put(self, body: bytes, raw_size: int, meta: Optional[dict] = None) -> bool:
        """Enqueue one export. Returns False if it was refused (larger than the whole budget
        or queue closed). Never blocks beyond taking a lock."""
        dropped = []
        with self._cond:
            self._seq += 1
            item = Item(self._seq, body, raw_size, self._clock(), meta=meta or {})
            if self._closed or item.size > self.max_bytes:
                refused = item
            else:
                refused = None
                while self._used_bytes() + item.size > self.max_bytes:
                    if self._inflight is not None and not self._inflight.abandoned:
                        # the oldest export is the one being sent: give it up (counted by
                        # the sender once its current attempt ends without success). Its
                        # bytes still count until the sender lets go of them, so the
                        # memory held never exceeds the bound.
                        self._inflight.abandoned = True
                    elif self._queue:
                        old = self._queue.popleft()
                        self._queued_bytes -= old.size
                        dropped.append(old)
                    else:
                        # only an abandoned export in flight is left: it is released at the
                        # end of its current attempt (bounded by the request timeout)
                        break
                self._queue.append(item)
                self._queued_bytes += item.size
                size = self._used_bytes()
                self._cond.notify_all()
        for old in dropped:
            self._on_drop(old, 'queue_full')
        if refused is not None:
            self._on_drop(refused, 'closed' if self._closed else 'too_large')
            return False
        self._on_size(size)
        return True

    def _used_bytes(self) -> int:
        inflight = self._inflight
        return self._queued_bytes + (inflight.size if inflight is not None else 0)

    @property
    def queued_bytes(self) -> int:
        with self._cond:
            return self._used_bytes()

    @property
    def abandoning(self) -> bool:
        """True while an abandoned export is still in flight (its drop is not counted yet)."""
        with self._cond:
            return self._inflight is not None and self._inflight.abandoned

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue) + (1 if self._inflight is not None else 0)

    def flush(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while self._queue or self._inflight is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return False
                self._cond.wait(min(remaining, 0.5))
            return True

    def close(self, timeout_s: float = 2.0) -> None:
        with self._cond:
            self._closed = True
            left = list(self._queue)
            self._queue.clear()
            self._queued_bytes = 0
            self._cond.notify_all()
        for item in left:
            self._on_drop(item, 'closed')
        if self._started and self._thread is not threading.current_thread():
            self._thread.join(max(0.0, timeout_s))
        self._on_size(0)

    # -- sender thread -------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                item = self._queue.popleft()
                self._queued_bytes -= item.size
                self._inflight = item
            try:
                self._deliver(item)
            finally:
                with self._cond:
                    self._inflight = None
                    size = self._used_bytes()
                    self._cond.notify_all()
                self._on_size(size)

    def _deliver(self, item: Item) -> None:
        while True:
            now = self._clock()
            if item.first_attempt_at is None:
                item.first_attempt_at = now
            try:
                result = self._send(item)
            except Exception as e:  # the send function should not raise; be safe
                result = SendResult(RETRY, 'connection', message='{}: {}'.format(type(e).__name__, e))
            item.attempts += 1
            if result.kind == OK:
                self._on_result(item, result, False)
                return
            if result.kind == REJECT:
                self._on_result(item, result, False)
                self._on_drop(item, 'rejected')
                return
            # retryable
            with self._cond:
                closed, abandoned = self._closed, item.abandoned
            elapsed = self._clock() - item.first_attempt_at
            mel = self._retry.max_elapsed_time
            give_up_reason = None
            if closed:
                give_up_reason = 'closed'
            elif abandoned:
                give_up_reason = 'queue_full'
            if result.retry_after is not None:
                delay = result.retry_after
            else:
                delay = self._retry.backoff(item.attempts - 1, self._rng)
            if give_up_reason is None and mel > 0 and elapsed + delay > mel:
                give_up_reason = 'max_elapsed_time'
            self._on_result(item, result, give_up_reason is None)
            if give_up_reason is not None:
                self._on_drop(item, give_up_reason)
                return
            # wait, but wake up early on close or when the head is abandoned
            deadline = time.monotonic() + delay
            with self._cond:
                while not self._closed and not item.abandoned:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._closed:
                    give_up_reason = 'closed'
                elif item.abandoned:
                    give_up_reason = 'queue_full'
            if give_up_reason is not None:
                self._on_drop(item, give_up_reason)
                return
