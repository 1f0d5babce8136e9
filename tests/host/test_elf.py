# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""host/elf.py, the package's one ELF library, checked against pyelftools on real binaries."""
import io
import os
import struct

import pytest
from elftools.elf.elffile import ELFFile

from datadog_checks.host_profiler.host.elf import (
    ELFCOMPRESS_ZLIB, PT_GNU_EH_FRAME, SHF_COMPRESSED, LebError, elf_extent, find_symbols, parse_elf, read_sleb,
    read_uleb, read_vaddr,
)
from datadog_checks.host_profiler.unwind.cfi import read_elf_sections
from tests.workloads import compile_c

pytestmark = pytest.mark.unit

LIBC = '/usr/lib/x86_64-linux-gnu/libc.so.6'


def _uleb_bytes(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _sleb_bytes(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        done = (v == 0 and not b & 0x40) or (v == -1 and b & 0x40)
        out.append(b if done else b | 0x80)
        if done:
            return bytes(out)


@pytest.mark.parametrize('v', [0, 1, 127, 128, 300, 624485, 2 ** 32, 2 ** 64 - 1])
def test_read_uleb(v):
    data = b'\xaa' + _uleb_bytes(v) + b'\xbb'
    assert read_uleb(data, 1) == (v, len(data) - 1)
    assert read_uleb(memoryview(data), 1) == (v, len(data) - 1)


@pytest.mark.parametrize('v', [0, 1, -1, 63, -64, 64, -65, -123456, 2 ** 62, -(2 ** 63)])
def test_read_sleb(v):
    data = _sleb_bytes(v) + b'\0'
    assert read_sleb(data, 0) == (v, len(data) - 1)


def test_leb_errors():
    with pytest.raises(LebError):
        read_uleb(b'\x80' * 12 + b'\x01', 0)
    with pytest.raises(LebError):
        read_sleb(b'\xff' * 12 + b'\x01', 0)
    with pytest.raises(IndexError):
        read_uleb(b'\x80\x80', 0)


def _oracle(path):
    with open(path, 'rb') as f:
        elf = ELFFile(f)
        segs = [(s['p_type'], s['p_vaddr'], s['p_offset'], s['p_filesz'], s['p_memsz'], s['p_flags'])
                for s in elf.iter_segments()]
        secs = {s.name: (s['sh_addr'], s['sh_offset'], s['sh_size'], s['sh_flags']) for s in elf.iter_sections()
                if s.name}
        dynsym = elf.get_section_by_name('.dynsym')
        syms = {s.name: s['st_value'] for s in dynsym.iter_symbols() if s['st_shndx'] != 'SHN_UNDEF'}
        return segs, secs, syms


def test_program_headers_sections_and_symbols_match_pyelftools():
    segs, secs, syms = _oracle(LIBC)
    with open(LIBC, 'rb') as f:
        info = parse_elf(f, LIBC)
        types = {'PT_LOAD': 1, 'PT_NOTE': 4, 'PT_GNU_EH_FRAME': PT_GNU_EH_FRAME}
        mine = [(s.type, s.vaddr, s.offset, s.filesz, s.memsz, s.flags) for s in info.segments]
        assert [m[1:] for m in mine] == [s[1:] for s in segs]
        assert [m[0] for m in mine if m[0] in types.values()] == [types[s[0]] for s in segs if s[0] in types]
        assert info.segment(PT_GNU_EH_FRAME).vaddr == secs['.eh_frame_hdr'][0]
        assert {n: (s.addr, s.offset, s.size, s.flags) for n, s in info.sections.items()} == secs
        wanted = ['malloc', 'free', 'printf', 'no_such_symbol_here']
        found = find_symbols(f, info, wanted)
        assert found == {n: syms[n] for n in wanted if n in syms} and 'malloc' in found
        # read_vaddr reads through the PT_LOAD holding the address (the ELF header at vaddr 0)
        assert read_vaddr(f, info, info.loads[0].vaddr, 4) == b'\x7fELF'


def test_cfi_reads_elf_through_host_elf():
    with open(LIBC, 'rb') as f:
        data = f.read()
        info = parse_elf(io.BytesIO(data), LIBC)
    cfi = read_elf_sections(data)
    assert cfi.elf is not None and cfi.build_id == info.gnu_build_id != ''
    assert cfi.sections['.eh_frame'] == (info.sections['.eh_frame'].type, info.sections['.eh_frame'].addr,
                                         info.sections['.eh_frame'].offset, info.sections['.eh_frame'].size)
    assert cfi.loads == [(s.vaddr, s.offset, s.filesz, s.flags) for s in info.loads]
    hdr = info.segment(PT_GNU_EH_FRAME)
    assert cfi.eh_frame_hdr_seg == (hdr.vaddr, hdr.offset, hdr.filesz)
    assert cfi.elf_type == 3  # ET_DYN


def test_lenient_parse_ignores_section_headers_beyond_the_file():
    with open(LIBC, 'rb') as f:
        data = bytearray(f.read())
    struct.pack_into('<Q', data, 0x28, len(data) + 4096)  # e_shoff past the end
    with pytest.raises(ValueError):
        parse_elf(io.BytesIO(bytes(data)))
    info = parse_elf(io.BytesIO(bytes(data)), strict=False)
    assert not info.has_section_headers and info.segment(PT_GNU_EH_FRAME) is not None
    assert info.gnu_build_id  # from the PT_NOTE segment


def test_compression_header_of_a_gz_debug_section(tmp_path):
    src = tmp_path / 'z.c'
    src.write_text('int f(int x) { return x * 3; }\nint main(void) { return f(1); }\n')
    try:
        binary = compile_c(str(src), tmp_path, cflags=('-O1', '-g', '-gz=zlib'))
    except Exception:  # noqa: BLE001 - a toolchain without zlib debug sections
        pytest.skip('gcc -gz=zlib unavailable')
    with open(binary, 'rb') as f:
        info = parse_elf(f, binary)
        sec = info.sections['.debug_info']
        assert sec.flags & SHF_COMPRESSED
        ctype, size, hdr = info.compression_header(f, sec)
        f.seek(0)
        oracle = ELFFile(f).get_section_by_name('.debug_info')
        assert (ctype, hdr) == (ELFCOMPRESS_ZLIB, 24) and size == oracle.data_size


def test_elf_extent():
    with open(LIBC, 'rb') as f:
        head = f.read(64)
    assert elf_extent(head) == os.path.getsize(LIBC)  # strip puts the section headers last
    with pytest.raises(ValueError):
        elf_extent(b'not an elf' * 8)
