# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
import gc
import pickle
import threading
import time

from datadog_checks.host_profiler.profile.model import FRAME_CPYTHON, Frame, RuntimeStack


def test_cached_hash_equal_values_equal_hashes():
    a, b = Frame('work', 0x10, source_file='w.c', line=3), Frame('work', 0x10, source_file='w.c', line=3)
    assert a == b and hash(a) == hash(b) and hash(a) != hash(Frame('work', 0x11))
    back = pickle.loads(pickle.dumps(a))
    assert back == a and '_hash' not in back.__dict__  # (a str's hash differs between processes)


def test_hashing_while_another_thread_lists_gc_objects():
    """The soak benchmark counts gc.get_objects() on its own thread while the receiver merges
    sample keys: hashing built its key with tuple(generator), whose half-built tuple that list
    exposed, and CPython raised SystemError in the drain (reproduced within 40 ms). Hash fresh
    frames and stacks for 1 s against a thread doing nothing but gc.get_objects()."""
    stop = threading.Event()

    def lister():
        while not stop.is_set():
            gc.get_objects()

    th = threading.Thread(target=lister, daemon=True)
    th.start()
    n = 0
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            for i in range(500):
                f = Frame('f{}'.format(i), i, kind=FRAME_CPYTHON, line=i)
                hash(RuntimeStack(segments=((f,),), interpreter_functions=frozenset(('f',))))
                n += 1
    finally:
        stop.set()
        th.join()
    assert n >= 500
