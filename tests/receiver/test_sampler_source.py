# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The BPF source and the Python side agree by construction (no BPF needed, but for the bytecode test)."""
import os
import re

from datadog_checks.host_profiler.receiver.sampler import (
    BPF_SOURCE, KERNEL_STATS, STATS, Sampler, SamplerConfig, bpf_source_text, stat_flags,
)

BPF_DIR = os.path.dirname(BPF_SOURCE)


def _sources():
    for name in sorted(os.listdir(BPF_DIR)):
        if name.endswith(('.c', '.h')):
            with open(os.path.join(BPF_DIR, name)) as f:
                yield name, f.read()


def test_no_stat_index_defined_in_the_bpf_source():
    # KERNEL_STATS in sampler.py is the only list: the indices reach the program as -D flags.
    for name, text in _sources():
        assert not re.search(r'^\s*#\s*define\s+(ST_\w+|N_STATS)\b', text, re.M), name


def test_every_stat_used_in_the_source_is_generated():
    flags = stat_flags()
    used = set()
    for _, text in _sources():
        used |= set(re.findall(r'\b(ST_[A-Z0-9_]+)\b', text))
    assert used, 'sampler.c counts nothing?'
    assert used <= set(flags), sorted(used - set(flags))
    assert flags['N_STATS'] == len(KERNEL_STATS) == len(STATS)
    assert sorted(flags[k] for k in flags if k != 'N_STATS') == list(range(len(KERNEL_STATS)))
    assert len({c for c, _ in KERNEL_STATS}) == len(KERNEL_STATS)


def test_cflags_carry_the_stat_indices():
    cflags = Sampler(SamplerConfig(unwinding='frame_pointers')).program.cflags()
    for i, (cname, _) in enumerate(KERNEL_STATS):
        assert '-DST_{}={}'.format(cname, i) in cflags
    assert '-DN_STATS={}'.format(len(KERNEL_STATS)) in cflags


def test_no_kernel_header_included():
    # <uapi/linux/ptrace.h> + <uapi/linux/bpf_perf_event.h> cost about 1.3 s of clang CPU per start;
    # sampler.c declares the perf-event context itself. Feature headers beside it ("...") are fine.
    for name, text in _sources():
        assert not re.search(r'^\s*#\s*include\s*<', text, re.M), name


PROBE_READ_ALIASES = re.compile(r'^#define (bpf_probe_read_(?:user|kernel)) hp_probe_read_(?:user|kernel)\n', re.M)


def test_probe_reads_go_through_aliases_before_any_use():
    # BCC looks each call of bpf_probe_read_user/_kernel up in /proc/kallsyms (~50 ms of CPU each):
    # sampler.c renames them before its first call and before the feature headers are pasted in.
    text = bpf_source_text()
    found = {m.group(1): m.start() for m in PROBE_READ_ALIASES.finditer(text)}
    assert set(found) == {'bpf_probe_read_user', 'bpf_probe_read_kernel'}
    for name, at in found.items():
        first_call = text.find(name + '(')
        assert first_call < 0 or first_call > at, name
    assert all(at < m.start() for at in found.values() for m in re.finditer(r'^#if ', text, re.M))


def test_probe_read_aliases_give_the_same_bytecode(requires_bpf):
    import bcc

    config = SamplerConfig(interpreters=('python',), span_links=True, unwinding='auto', off_cpu_threshold=0.5,
                           events=True)
    cflags = Sampler(config).program.cflags()
    text = bpf_source_text()
    plain = PROBE_READ_ALIASES.sub('', text)
    assert plain != text
    programs = [b'on_cpu_sample', b'tracepoint__sched__sched_process_exec', b'tracepoint__sched__sched_process_exit',
                b'tracepoint__sched__sched_switch']
    code = []
    for source in (text, plain):
        b = bcc.BPF(text=source, cflags=cflags)
        try:
            code.append([b.dump_func(p) for p in programs])
        finally:
            b.cleanup()
    assert all(code[0])
    assert code[0] == code[1]


def _without_map_fds(code: bytes) -> bytes:
    """The instructions with the map fd of each ld_imm64 (BPF_PSEUDO_MAP_FD) zeroed: fd numbers
    depend on what else the process has open (the program's BTF takes one)."""
    out = bytearray(code)
    for i in range(0, len(out) - 7, 8):
        if out[i] == 0x18 and (out[i + 1] >> 4) == 1:
            out[i + 4:i + 8] = b'\0\0\0\0'
    return bytes(out)


def test_no_debug_info_gives_the_same_instructions(requires_bpf):
    # -g0 (no program BTF) saves LLVM time at every start; the code must not change
    import bcc

    config = SamplerConfig(interpreters=('python',), span_links=True, unwinding='auto', off_cpu_threshold=0.5,
                           events=True)
    cflags = Sampler(config).program.cflags()
    assert cflags[-1] == '-g0'
    text = bpf_source_text()
    programs = [b'on_cpu_sample', b'ku_walk', b'tracepoint__sched__sched_process_exec',
                b'tracepoint__sched__sched_process_exit', b'tracepoint__sched__sched_switch']
    code = []
    for flags in (cflags, cflags[:-1]):
        b = bcc.BPF(text=text, cflags=flags)
        try:
            code.append([_without_map_fds(b.dump_func(p)) for p in programs])
        finally:
            b.cleanup()
    assert all(code[0])
    assert code[0] == code[1]
