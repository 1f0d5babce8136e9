# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Span links from OpenTelemetry thread contexts (OTEP 4947): finding ``otel_thread_ctx_v1`` and its
TLS model in real modules the test compiles (every model a reader must handle), checking the
reader's address arithmetic against what the publishing threads print, and the real BPF sampler
linking the samples of real publishers (a spec-following C publisher with static TLS, as a
dlopen'ed library through the DTV and through TLSDESC; the real dd-trace-py from PyPI) to exactly
the span that was running. Hostile publishers and fuzzed inputs must only ever be counted."""
import collections
import os
import struct
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.workloads import HERE

from datadog_checks.host_profiler.runtime.telemetry import Telemetry
from datadog_checks.host_profiler.runtimes.base import ProcessMemory
from datadog_checks.host_profiler.runtimes.otel_thread_tls import (
    MODEL_DTV,
    MODEL_STATIC,
    TlsError,
    TlsVariable,
    analyze,
    load_bias,
    resolve_module,
)

PUBLISHER = os.path.join(HERE, 'otel_thread_publisher.c')
CFLAGS = ['-O1', '-fno-omit-frame-pointer', '-pthread']


def _gcc(out, *args):
    subprocess.run(['gcc', *CFLAGS, *args, '-o', str(out)], check=True, capture_output=True)
    return str(out)


@pytest.fixture(scope='module')
def builds(tmp_path_factory):
    """The publisher as an executable with the variable (static TLS, local-exec), and as a library
    (general-dynamic; TLSDESC) a host loads with dlopen after start-up."""
    d = tmp_path_factory.mktemp('tls')
    return {
        'static': [_gcc(d / 'pub_static', '-DPUB_MAIN', '-DPUB_IMPL', '-fPIE', '-pie',
                        '-Wl,--export-dynamic-symbol=otel_thread_ctx_v1', PUBLISHER)],
        'dlopen_gd': [_gcc(d / 'pub_host', '-DPUB_MAIN', '-DPUB_DLOPEN', PUBLISHER, '-ldl'),
                      _gcc(d / 'libpub_gd.so', '-DPUB_IMPL', '-shared', '-fPIC', '-ftls-model=global-dynamic',
                           PUBLISHER)],
        'dlopen_tlsdesc': [str(d / 'pub_host'),
                           _gcc(d / 'libpub_desc.so', '-DPUB_IMPL', '-shared', '-fPIC',
                                '-ftls-model=global-dynamic', '-mtls-dialect=gnu2', PUBLISHER)],
    }


def _lib(tmp_path, name, source, *flags):
    src = tmp_path / (name + '.c')
    src.write_text(source)
    return _gcc(tmp_path / (name + '.so'), '-shared', '-fPIC', *flags, str(src))


VAR = '__thread void *otel_thread_ctx_v1;\nvoid *get(void) { return otel_thread_ctx_v1; }\n'


# ---------------------------------------------------------------------------- the models, from the files

def test_every_tls_model_is_recognised_from_the_relocations(builds, tmp_path):
    assert analyze(builds['static'][0]).model == 'local_exec'
    assert analyze(builds['static'][0]).tls_offset < 0  # below the thread pointer (x86-64 variant II)
    assert analyze(builds['dlopen_gd'][1]).model == 'general_dynamic'
    assert analyze(builds['dlopen_gd'][1]).dtpoff_got
    assert analyze(builds['dlopen_tlsdesc'][1]).model == 'tlsdesc'
    assert analyze(_lib(tmp_path, 'ie', VAR, '-ftls-model=initial-exec')).model == 'initial_exec'
    ld = '__attribute__((visibility("protected"))) ' + VAR
    assert analyze(_lib(tmp_path, 'ld', ld, '-ftls-model=local-dynamic')).model == 'local_dynamic'


def test_modules_without_the_variable_or_with_a_wrong_one(builds, tmp_path):
    assert analyze(builds['dlopen_gd'][0]) is None  # the host: it does not define it
    assert analyze('/bin/true') is None
    with pytest.raises(TlsError) as e:
        analyze(_lib(tmp_path, 'small',
                     '__thread int otel_thread_ctx_v1;\nint get(void) { return otel_thread_ctx_v1; }\n'))
    assert e.value.reason == 'bad_symbol'
    with pytest.raises(TlsError) as e:
        analyze(_lib(tmp_path, 'notls', 'void *otel_thread_ctx_v1;\n'))
    assert e.value.reason == 'bad_symbol'
    # exported but never accessed from its own (shared) module: no relocation tells its offset
    with pytest.raises(TlsError) as e:
        analyze(_lib(tmp_path, 'unused', '__thread void *otel_thread_ctx_v1;\n'))
    assert e.value.reason == 'unsupported_model'


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(cuts=st.lists(st.tuples(st.integers(0, 20000), st.binary(min_size=1, max_size=16)), min_size=1, max_size=8))
def test_fuzzed_modules_are_a_variable_none_or_a_counted_error(builds, tmp_path_factory, cuts):
    data = bytearray(open(builds['dlopen_gd'][1], 'rb').read())
    for off, patch in cuts:
        off %= len(data)
        data[off:off + len(patch)] = patch
    path = tmp_path_factory.mktemp('fuzz') / 'lib.so'
    path.write_bytes(bytes(data))
    try:
        var = analyze(str(path))
    except TlsError as e:
        assert e.reason in ('elf', 'bad_symbol', 'unsupported_model', 'unsupported_arch')
    else:
        assert var is None or isinstance(var, TlsVariable)


@settings(max_examples=200, deadline=None)
@given(model=st.sampled_from(['initial_exec', 'tlsdesc', 'general_dynamic', 'local_dynamic']),
       memory=st.dictionaries(st.integers(0, 64), st.binary(min_size=8, max_size=8)))
def test_fuzzed_got_contents_give_a_model_or_a_counted_error(model, memory):
    """Whatever the GOT slots and descriptors hold (a loader not done yet, a hostile process)."""
    var = TlsVariable(model, 0, got=8, dtpoff_got=16)

    def read(addr, n):
        word = memory.get(addr % 65)
        if word is None:
            raise OSError(14, 'unmapped')
        return word[:n]

    try:
        got = resolve_module(var, 0, read)
    except TlsError as e:
        assert e.reason in ('memory', 'unresolved')
    else:
        assert got[0] in (MODEL_STATIC, MODEL_DTV)
        if got[0] == MODEL_DTV:
            assert 1 <= got[2] < 1 << 20


# ---------------------------------------------------------------------------- the address arithmetic

def _start(cmd, *args):
    return subprocess.Popen([*cmd, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _tls_lines(proc, n):
    out = []
    while len(out) < n:
        line = proc.stdout.readline()
        assert line, 'the publisher ended early'
        if line.startswith('tls '):
            _, tid, var, tp = line.split()
            out.append((int(tid), int(var, 16), int(tp, 16)))
    return out


def _modules(pid):
    """(model, offset, module id) of each module of ``pid`` that exports the variable."""
    from datadog_checks.host_profiler.receiver.processes import read_process

    info = read_process(pid)
    mem = ProcessMemory()
    out = []
    seen = set()
    for m in info.mappings:
        if m.path in seen or not m.path.startswith('/'):
            continue
        seen.add(m.path)
        var = analyze(m.path)
        if var is not None:
            out.append(resolve_module(var, load_bias(var, m.start, m.offset), lambda a, k: mem.read(pid, a, k)))
    mem.close()
    return out


def test_a_process_is_looked_at_again_only_when_its_mappings_were_read_again():
    """The receiver observes every sampled process at every drain: the same mappings list is not
    walked again (nor any module opened); a new list (the maps read again) is."""
    from datadog_checks.host_profiler.receiver.processes import read_process
    from datadog_checks.host_profiler.runtimes.otel_thread_tls import ThreadTlsRuntime

    rt = ThreadTlsRuntime(telemetry=Telemetry())
    looks = []
    look = rt._look
    rt._look = lambda process, mappings: looks.append(process.pid) or look(process, mappings)
    info = read_process(os.getpid())
    assert info.mappings
    assert rt.observe(info) is False
    assert rt.observe(info) is False
    assert len(looks) == 1
    opened = []
    variable = rt._variable
    rt._variable = lambda *a: opened.append(a) or variable(*a)
    info.mappings = list(info.mappings)  # read again, the same files mapped: not looked at
    assert rt.observe(info) is False
    assert len(looks) == 1 and not opened
    gone = next(m for m in info.mappings if m.path.startswith('/'))
    info.mappings = [m for m in info.mappings if m.path != gone.path]  # a file unmapped: looked at
    assert rt.observe(info) is False
    assert len(looks) == 2
    rt.forget(info.pid)
    assert rt.observe(info) is False
    assert len(looks) == 3 and opened  # forgotten: looked at afresh
    rt.close()


@pytest.mark.parametrize('build,expect', [('static', MODEL_STATIC), ('dlopen_gd', MODEL_DTV),
                                          ('dlopen_tlsdesc', None)])
def test_the_variable_is_found_where_each_thread_has_it(requires_root, builds, build, expect):
    """What the BPF program computes (fs_base + offset, or DTV[module] + offset), done here from the
    same registration and each thread's thread pointer, lands on the address the thread printed."""
    proc = _start(builds[build], 3, 20, 5, 3, 'swap', '-')
    try:
        threads = _tls_lines(proc, 3)
        mods = _modules(proc.pid)
        assert len(mods) == 1, mods
        model, offset, module = mods[0]
        if expect is not None:
            assert model == expect
        mem = ProcessMemory()
        for _tid, var, tp in threads:
            if model == MODEL_STATIC:
                assert tp + offset == var
            else:
                dtv = struct.unpack('<Q', mem.read(proc.pid, tp + 8, 8))[0]
                slots = struct.unpack('<Q', mem.read(proc.pid, dtv - 16, 8))[0]
                assert 1 <= module <= slots
                block = struct.unpack('<Q', mem.read(proc.pid, dtv + 16 * module, 8))[0]
                assert block + offset == var
        mem.close()
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------- live: the real sampler

@pytest.fixture(scope='module')
def receiver(requires_bpf, tmp_path_factory):
    """One sampler for the live tests (a compile is seconds): span links on, Python frames on."""
    from datadog_checks.host_profiler.receiver.receiver import Receiver, ReceiverConfig

    telemetry = Telemetry()
    r = Receiver(ReceiverConfig(samples_per_second=99, drain_interval=0.5, check_interval=0,
                                unwinding='frame_pointers', interpreters=('python',),
                                lock_path=str(tmp_path_factory.mktemp('lock') / 'lock')), telemetry=telemetry)
    r.start()
    yield r
    r.stop(block=True, timeout=30)


def _run_and_collect(receiver, cmd, env=None):
    """Run a publisher to its end under the sampler; (its output lines, its samples)."""
    receiver.collect()  # start clean
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    lines = []
    samples = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout.read().splitlines()))
    reader.start()
    while proc.poll() is None:
        time.sleep(0.5)
        samples.extend(s for s in receiver.collect().samples if s.pid == proc.pid)
    reader.join()
    time.sleep(1.5)  # two drains
    samples.extend(s for s in receiver.collect().samples if s.pid == proc.pid)
    return lines, samples


def _classify(lines, samples, where_of):
    """Samples per (where the thread was, link verdict): 'match' = exactly a span the same thread
    logged (trace and span id), 'wrong' = anything else, 'none' = no link."""
    spans = {}
    for line in lines:
        if line.startswith('span '):
            _, tid, trace, span = line.split()[:4]
            spans[span] = (int(tid), trace)
    out = collections.Counter()
    for s in samples:
        where = where_of(s)
        if s.link is None:
            verdict = 'none'
        else:
            logged = spans.get(s.link.span_id.hex())
            verdict = 'match' if logged == (s.tid, s.link.trace_id.hex()) else 'wrong'
        out[(where, verdict)] += s.count
    return out, spans


def _c_where(lines):
    fns = {line.split()[1]: int(line.split()[2], 16) for line in lines if line.startswith('fn ')}

    def where(s):
        leaf = s.user_stack[0] if s.user_stack else 0
        base, name = max([(a, n) for n, a in fns.items() if a <= leaf] or [(0, 'other')])
        return name if leaf - base < 200 else 'other'

    return where


def _assert_linked(counts, inside, outside, minimum=30):
    in_span = counts[(inside, 'match')] + counts[(inside, 'none')] + counts[(inside, 'wrong')]
    assert in_span >= minimum, counts
    assert counts[(inside, 'match')] >= 0.8 * in_span, counts
    assert counts[(inside, 'wrong')] == 0 and counts[(outside, 'wrong')] == 0, counts
    assert counts[(outside, 'match')] <= 0.05 * max(1, sum(v for (w, _), v in counts.items() if w == outside)), counts


@pytest.mark.integration
@pytest.mark.parametrize('build,mode', [('static', 'swap'), ('dlopen_gd', 'swap'), ('dlopen_tlsdesc', 'swap'),
                                        ('dlopen_gd', 'toggle')])
def test_samples_in_a_span_carry_exactly_that_span(receiver, builds, build, mode):
    """Threads switch spans every 40 ms (a context updated mid-run: a new record each time, or the same
    record rewritten under its valid flag); samples in burn_in (inside the span) carry that span's
    link, samples in burn_out (between spans) none; a sample never carries another span."""
    # the host loads the library as soon as it runs: the first maps read sees it (a library loaded
    # later is registered at the next read of the maps: test_a_library_loaded_later_is_registered)
    env = dict(os.environ, PUB_DLOPEN_DELAY_MS='0')
    lines, samples = _run_and_collect(receiver, builds[build] + ['3', '40', '20', '4', mode, 'tenant-7'], env=env)
    counts, spans = _classify(lines, samples, _c_where(lines))
    # well over 100 spans on an idle host; at load 20 one run logged 89 in the collection window: many
    # spans is what matters, the samples' verdicts are asserted below
    assert len(spans) >= 20
    _assert_linked(counts, 'burn_in', 'burn_out')
    t = receiver.telemetry
    assert t.total('otel_context.thread_context_reads') > 0
    assert t.total('otel_context.samples_linked') > 0


@pytest.mark.integration
def test_a_library_loaded_later_is_registered(receiver, builds):
    """The library is loaded 0.5 s after start-up. If the process was first read before (sampled in its
    start-up), the variable is found when the receiver reads its maps again (a leaf in an unknown
    mapping, at most every MAPS_REFRESH_MIN_S): until then its samples have no link, never a wrong one."""
    env = dict(os.environ, PUB_DLOPEN_DELAY_MS='500')
    lines, samples = _run_and_collect(receiver, builds['dlopen_gd'] + ['3', '40', '20', '7', 'swap', '-'], env=env)
    counts, _ = _classify(lines, samples, _c_where(lines))
    assert counts[('burn_in', 'match')] > 0, counts
    assert counts[('burn_in', 'wrong')] == 0 and counts[('burn_out', 'wrong')] == 0, counts
    assert counts[('burn_in', 'match')] >= 0.5 * (counts[('burn_in', 'match')] + counts[('burn_in', 'none')]), counts


@pytest.mark.integration
def test_a_hostile_publisher_is_counted_and_the_sampler_keeps_going(receiver, builds):
    t = receiver.telemetry

    def errors(reason):
        return t.totals().get('otel_context.record_errors{reason:' + reason + '}', 0)

    before = {r: errors(r) for r in ('read_error', 'oversized')}
    lines, samples = _run_and_collect(receiver, builds['static'] + ['2', '30', '0', '3', 'hostile', '-'])
    assert samples
    assert errors('read_error') > before['read_error']
    assert errors('oversized') > before['oversized']
    # the oversized record is copied cut to 640 bytes: linked (its ids are valid), its attributes cut
    assert all(len(v) <= 640 for s in samples for _, v in s.context_attributes)
    assert receiver.running
    # and the sampler still links a good publisher afterwards
    lines, samples = _run_and_collect(receiver, builds['static'] + ['2', '40', '20', '3', 'swap', '-'])
    counts, _ = _classify(lines, samples, _c_where(lines))
    _assert_linked(counts, 'burn_in', 'burn_out', minimum=15)


DDTRACE_APP = r'''
import sys, threading, time
from ddtrace.trace import tracer

def burn_in_span(ms):
    end = time.monotonic() + ms / 1000.0
    x = 0
    while time.monotonic() < end:
        for i in range(2000):
            x += i
    return x

def burn_outside(ms):
    end = time.monotonic() + ms / 1000.0
    x = 0
    while time.monotonic() < end:
        for i in range(2000):
            x ^= i
    return x

lock = threading.Lock()

def worker(seconds, span_ms, gap_ms):
    tid = threading.get_native_id()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with tracer.trace('work', service='tcapp') as span:
            with lock:
                print('span %d %032x %016x %016x' % (tid, span.trace_id, span.span_id, span._local_root.span_id),
                      flush=True)
            burn_in_span(span_ms)
        with lock:
            print('gap %d' % tid, flush=True)
        burn_outside(gap_ms)

threads, span_ms, gap_ms, seconds = (int(a) for a in sys.argv[1:5])
ts = [threading.Thread(target=worker, args=(seconds, span_ms, gap_ms)) for _ in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
'''


def ddtrace_env():
    env = dict(os.environ)
    env.update(DD_TRACE_AGENT_URL='http://127.0.0.1:9', DD_INSTRUMENTATION_TELEMETRY_ENABLED='false',
               DD_REMOTE_CONFIGURATION_ENABLED='false', DD_SERVICE='tcapp')
    return env


@pytest.mark.integration
def test_the_real_dd_trace_py_links_samples_to_the_running_span(receiver, tmp_path):
    """dd-trace-py from PyPI publishes the thread context from its native extension (a dlopen'ed
    module, TLSDESC): samples in a span's Python function carry that span, and its local root span id
    as the attribute the process context's key map names. With Python frames walked too."""
    import ddtrace  # noqa: F401 - from PyPI, in the venv

    app = tmp_path / 'app.py'
    app.write_text(DDTRACE_APP)
    lines, samples = _run_and_collect(receiver, [sys.executable, str(app), '2', '40', '20', '5'], env=ddtrace_env())

    def where(s):
        names = [f.function for seg in s.runtime_stack.segments for f in seg] if s.runtime_stack else []
        return 'burn_in' if 'burn_in_span' in names else 'burn_out' if 'burn_outside' in names else 'other'

    counts, spans = _classify(lines, samples, where)
    assert len(spans) > 50
    _assert_linked(counts, 'burn_in', 'burn_out', minimum=20)
    roots = {line.split()[3]: line.split()[4] for line in lines if line.startswith('span ')}
    linked = [s for s in samples if s.link is not None]
    assert linked
    # the attribute names come from the process context's key map: samples of the first drains, before
    # the process context was read, have none (counted as unknown_key), never a wrong one
    named = [s for s in linked if s.context_attributes]
    assert len(named) >= 0.5 * len(linked), (len(named), len(linked))
    for s in named:
        assert dict(s.context_attributes) == {'datadog.local_root_span_id': roots[s.link.span_id.hex()]}


@pytest.mark.integration
def test_otlp_export_of_a_traced_app_carries_its_span_links(requires_bpf, tmp_path):
    """End to end, as exported: the pipeline (default configuration: span links on, Python frames on)
    profiles the dd-trace-py app; its OTLP samples point through link_index into the dictionary's
    link_table (entry 0 the empty Link) to the spans the app logged, and carry the local root span id
    as a sample attribute."""
    from datadog_checks.host_profiler.config.loader import build_config
    from datadog_checks.host_profiler.profiler_pipeline import ProfilerPipeline
    from datadog_checks.host_profiler.profile.otlp import encode, validate

    app = tmp_path / 'app.py'
    app.write_text(DDTRACE_APP)
    instance = {'lock_file': str(tmp_path / 'lock'), 'receiver': {'samples_per_second': 99},
                'exporters': {'file': {'directory': str(tmp_path / 'profiles'), 'formats': ['otlp']}}}
    pipeline = ProfilerPipeline(build_config(instance, 'standalone'), interval_s=60, hostname=lambda: 'test-host')
    pipeline.run_once()  # starts the sampler (the BCC compile) before the app
    proc = subprocess.Popen([sys.executable, str(app), '2', '40', '20', '8'], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=ddtrace_env())
    exported = []
    try:
        out = []
        reader = threading.Thread(target=lambda: out.extend(proc.stdout.read().splitlines()))
        reader.start()
        while proc.poll() is None:
            time.sleep(2)
            result = pipeline.run_once()
            if result.profile is not None:
                exported.append(encode(result.profile))
        reader.join()
        time.sleep(1.5)
        result = pipeline.run_once()
        if result.profile is not None:
            exported.append(encode(result.profile))
    finally:
        pipeline.close()
        proc.kill()
        proc.wait()
    spans = {line.split()[3]: line.split()[2] for line in out if line.startswith('span ')}
    roots = {line.split()[3]: line.split()[4] for line in out if line.startswith('span ')}
    linked = unlinked = 0
    for data in exported:
        assert validate(data) == []
        d = data.dictionary
        assert not d.link_table[0].trace_id and not d.link_table[0].span_id
        strings = d.string_table
        for rp in data.resource_profiles:
            pid = {kv.key: kv.value.int_value for kv in rp.resource.attributes}.get('process.pid')
            if pid != proc.pid:
                continue
            for prof in rp.scope_profiles[0].profiles:
                for s in prof.samples:
                    if not s.link_index:
                        unlinked += 1
                        continue
                    link = d.link_table[s.link_index]
                    assert spans.get(link.span_id.hex()) == link.trace_id.hex()
                    attrs = {strings[d.attribute_table[i].key_strindex]: d.attribute_table[i].value.string_value
                             for i in s.attribute_indices}
                    if 'datadog.local_root_span_id' in attrs:
                        assert attrs['datadog.local_root_span_id'] == roots[link.span_id.hex()]
                    linked += 1
    assert linked >= 20, (linked, unlinked)
