# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""host/budget.py: one byte-budgeted LRU shared by the symbolizer and the CFI tables."""
import threading

import pytest

from datadog_checks.host_profiler.host.budget import ByteLRU, budget_bytes, memory_cache, split_memory_budget
from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.symbols.symbolizer import Symbolizer
from datadog_checks.host_profiler.unwind.tables import CfiTables

pytestmark = pytest.mark.unit


class V:
    def __init__(self, n):
        self.nbytes = n


def test_views_share_one_budget_and_count_their_own():
    lru = ByteLRU(100)
    sym, cfi = lru.view('symbols'), lru.view('cfi')
    assert lru.view('symbols') is sym
    assert sym.put('k', V(40)) and cfi.put('k', V(40))  # same key, two owners: no collision
    assert sym.get('k').nbytes == 40 and cfi.get('k').nbytes == 40 and 'k' in sym and 'k' not in lru
    assert (sym.bytes, cfi.bytes, lru.bytes, len(sym), len(cfi)) == (40, 40, 80, 1, 1)
    assert cfi.put('k2', V(40))  # over budget: the least recently used entry (the symbolizer's) goes
    assert sym.get('k') is None and (sym.evictions, cfi.evictions, lru.evictions) == (1, 0, 1)
    assert sym.bytes == 0 and cfi.bytes == 80 <= lru.budget == sym.budget
    big = V(10)
    assert cfi.put('grow', big)
    big.nbytes = 30
    cfi.resize('grow', big)
    assert cfi.bytes == 110 and lru.bytes == 110  # resize re-accounts (eviction at the next put)
    cfi.pop('grow')
    assert cfi.bytes == 80
    assert not sym.put('huge', V(1000)) and sym.bytes == 0


def test_thread_safe_under_two_writers():
    lru = ByteLRU(10000)

    def work(owner):
        v = lru.view(owner)
        for i in range(20000):
            v.put(i % 500, V(7))
            v.get((i * 7) % 500)

    threads = [threading.Thread(target=work, args=(o,)) for o in ('symbols', 'cfi')]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lru.bytes <= lru.budget
    assert lru.bytes == lru.owner_bytes('symbols') + lru.owner_bytes('cfi') == 7 * len(lru)


def test_budget_split_and_shared_cache_size():
    assert budget_bytes(None) == 256 << 20 == memory_cache().budget
    assert memory_cache(64).budget == 64 << 20
    sym, cfi = split_memory_budget(256, 'auto')
    assert sym + cfi == 256 << 20


def test_symbolizer_and_cfi_tables_share_one_cache():
    cache = memory_cache(32)
    t = Telemetry()
    s = Symbolizer(t, cache=cache, debug_dirs=())
    tables = CfiTables(t, cache=cache)
    assert s.cache.lru is tables.cache.lru is cache
    assert s.memory_budget_bytes == 32 << 20
    # without one, each has its own (the budget given)
    assert Symbolizer(Telemetry(), memory_budget_bytes=1 << 20).cache.budget == 1 << 20
    assert CfiTables(Telemetry(), 2 << 20).cache.budget == 2 << 20


def test_the_pipeline_wires_one_cache_to_the_symbolizer_and_the_receiver():
    from datadog_checks.host_profiler.config.loader import build_config
    from datadog_checks.host_profiler.profiler_pipeline import ProfilerPipeline
    from datadog_checks.host_profiler.receiver.receiver import Receiver, ReceiverConfig

    p = ProfilerPipeline(build_config({'receiver': {'symbolizer': {'memory_budget_mb': 64}}, 'exporters': {'debug': {}}}, 'standalone'))
    cache = p.symbolizer.cache.lru
    assert cache.budget == 64 << 20 == p.symbolizer.memory_budget_bytes
    rx = Receiver(ReceiverConfig(unwinding='auto'), memory_cache=cache)  # as the pipeline starts it
    assert rx.unwinder.tables.cache.lru is cache
    # without one (a bare receiver: CLI tools, tests): the CFI tables' own quarter of the default 256 MiB
    assert Receiver(ReceiverConfig(unwinding='auto')).unwinder.tables.cache.budget == 64 << 20
