# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Hostile files a profiled process controls, for tests/reliability/test_hostile_files.py and
benchmarks/hostile_files_bench.py.

A real process (``jitspin``: static, so it runs in an empty chroot) maps an anonymous
executable region at ``ANON_ADDR`` (JIT code, named by a perf map) and sleeps; it is started
chrooted into a directory (``/proc/PID/root`` is that directory), optionally as another user.
The builders put hostile perf maps, debug files and ELF files around it.
"""
import lzma
import os
import shutil
import struct
import subprocess
import time
import zlib

ANON_ADDR = 0x7E0000000000
ANON_SIZE = 1 << 20
SECRET_FN = 'HOST_SECRET_LINE_NEVER_A_FUNCTION'

JITSPIN_C = r'''
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

__attribute__((noinline)) void jitspin_wait(void) { for (;;) pause(); }

int main(void) {
    void *p = mmap((void *)0x7e0000000000UL, 1 << 20, PROT_READ | PROT_WRITE | PROT_EXEC,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED) return 1;
    ((volatile char *)p)[0] = 1; /* touch it: the mapping is there */
    printf("ready\n");
    fflush(stdout);
    jitspin_wait();
    return 0;
}
'''


def build_jitspin(out_dir):
    """{'full': static binary with .symtab, 'stripped': without (GNU build id kept),
    'wait': address of jitspin_wait, 'build_id': hex}."""
    src = os.path.join(out_dir, 'jitspin.c')
    with open(src, 'w') as f:
        f.write(JITSPIN_C)
    full = os.path.join(out_dir, 'jitspin')
    subprocess.run(['gcc', '-O1', '-static', '-Wl,--build-id', '-o', full, src], check=True, capture_output=True)
    stripped = full + '.stripped'
    subprocess.run(['strip', '-o', stripped, full], check=True, capture_output=True)
    nm = subprocess.run(['nm', full], capture_output=True, text=True, check=True).stdout
    wait = int(next(line.split()[0] for line in nm.splitlines() if line.endswith(' jitspin_wait')), 16)
    notes = subprocess.run(['readelf', '-n', full], capture_output=True, text=True, check=True).stdout
    build_id = next(line.split()[-1] for line in notes.splitlines() if 'Build ID' in line)
    return {'full': full, 'stripped': stripped, 'wait': wait, 'build_id': build_id}


def make_root(base, binary, name='jitspin'):
    """A chroot directory holding ``binary`` as /NAME and an empty /tmp."""
    os.makedirs(os.path.join(base, 'tmp'), exist_ok=True)
    dst = os.path.join(base, name)
    shutil.copy(binary, dst)
    os.chmod(dst, 0o755)
    return base


def start_in_root(root, name='jitspin', uid=None):
    """Start /NAME chrooted into ``root`` (as ``uid`` when given); returns the Popen once the
    process has mapped its JIT region."""
    def enter():
        os.chroot(root)
        os.chdir('/')
        if uid is not None:
            os.setgid(uid)
            os.setuid(uid)

    p = subprocess.Popen(['/' + name], preexec_fn=enter, stdout=subprocess.PIPE)
    line = p.stdout.readline()
    if line.strip() != b'ready':
        p.kill()
        raise RuntimeError('jitspin did not start in {}'.format(root))
    return p


def stop(p):
    p.kill()
    p.wait()
    p.stdout.close()


def secret_host_file(path):
    """A root-only host file whose lines look like perf map entries for the JIT region."""
    with open(path, 'w') as f:
        f.write('{:x} {:x} {}\n'.format(ANON_ADDR, ANON_SIZE, SECRET_FN))
    os.chmod(path, 0o600)
    return path


def relative_up(root):
    """'../' enough times to climb from ``root``/tmp to the host's /."""
    depth = len([p for p in os.path.abspath(root).split('/') if p]) + 1
    return '../' * (depth + 3)


def sparse_file(path, size=10 << 30):
    with open(path, 'wb') as f:
        f.truncate(size)
    return path


def _varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _lzma2_chunk(data):
    """The one LZMA2 chunk (control, sizes, props, coded bytes) of ``data`` (1 MiB)."""
    raw = lzma.compress(data, format=lzma.FORMAT_RAW,
                        filters=[{'id': lzma.FILTER_LZMA2, 'preset': 0, 'dict_size': 1 << 20}])
    unpacked = (((raw[0] & 0x1F) << 16) | (raw[1] << 8) | raw[2]) + 1
    packed = ((raw[3] << 8) | raw[4]) + 1
    if raw[0] & 0xE0 != 0xE0 or unpacked != len(data) or len(raw) != 6 + packed + 1:
        raise RuntimeError('unexpected LZMA2 chunking')
    return raw[:6 + packed], unpacked, packed


def xz_bomb(decompressed=1 << 30, prefix=b''):
    """A valid .xz file (no integrity check) of ``decompressed`` bytes: ``prefix``, then zeros;
    ~220 bytes per MiB.

    Compressing a GiB of zeros takes ~25 s here, so the stream is assembled instead: LZMA2
    compresses 1 MiB of zeros into one chunk; after a state reset (control 0xA0: no dictionary
    reset, no new properties) the same coded bytes decode to the same MiB again, so the chunk
    is repeated. The xz container (header, block header, index, footer) is written around it."""
    chunk_size = 1 << 20
    zeros, unpacked, packed = _lzma2_chunk(bytes(chunk_size))
    first = _lzma2_chunk(prefix + bytes(chunk_size - len(prefix)))[0] if prefix else zeros
    # (the repeated chunk starts like the zeros did: previous byte 0, position a multiple of 4)
    again = bytes([0xA0 | ((unpacked - 1) >> 16), ((unpacked - 1) >> 8) & 0xFF, (unpacked - 1) & 0xFF,
                   (packed - 1) >> 8, (packed - 1) & 0xFF]) + zeros[6:]
    n = max(1, decompressed // chunk_size)
    data = first + again * (n - 1) + b'\x00'
    flags = b'\x00\x00'  # check: none
    out = bytearray(b'\xfd7zXZ\x00' + flags + struct.pack('<I', zlib.crc32(flags)))
    block = bytearray(b'\x00\x00\x21\x01\x10')  # size (below), flags, LZMA2, 1 prop byte, 1 MiB dictionary
    while (len(block) + 4) % 4:
        block.append(0)
    block[0] = (len(block) + 4) // 4 - 1
    block += struct.pack('<I', zlib.crc32(bytes(block)))
    out += block + data + bytes((-len(data)) % 4)
    index = bytearray(b'\x00' + _varint(1) + _varint(len(block) + len(data)) + _varint(n * chunk_size))
    while len(index) % 4:
        index.append(0)
    index += struct.pack('<I', zlib.crc32(bytes(index)))
    footer = struct.pack('<I', len(index) // 4 - 1) + flags
    out += index + struct.pack('<I', zlib.crc32(footer)) + footer + b'YZ'
    return bytes(out)


def elf_header_claiming(size):
    """A 64-byte ELF64 header whose section header table ends at ``size`` bytes."""
    head = bytearray(64)
    head[:6] = b'\x7fELF\x02\x01'
    head[6] = 1
    struct.pack_into('<HHI', head, 16, 1, 62, 1)  # ET_REL, x86-64, version
    struct.pack_into('<Q', head, 0x28, size - 64 * 4)  # e_shoff
    struct.pack_into('<HHHHHH', head, 0x34, 64, 0, 0, 64, 4, 0)  # ehsize, ph*, shentsize, shnum, shstrndx
    return bytes(head)


def with_debugdata_bomb(stripped, out, decompressed=1 << 30, prefix=b''):
    """``stripped`` with a .gnu_debugdata section holding an xz bomb (objcopy --add-section):
    ``prefix`` (e.g. ``elf_header_claiming(4096)``) then zeros."""
    bomb = out + '.xz'
    with open(bomb, 'wb') as f:
        f.write(xz_bomb(decompressed, prefix))
    subprocess.run(['objcopy', '--add-section', '.gnu_debugdata=' + bomb, stripped, out], check=True,
                   capture_output=True)
    os.unlink(bomb)
    os.chmod(out, 0o755)
    return out


def with_huge_section_table(binary, out, count=0xFFFF):
    """``binary`` with its section header table replaced by ``count`` real (empty, SHT_NULL)
    headers appended at the end of the file: the kernel still runs it."""
    data = bytearray(open(binary, 'rb').read())
    shoff = (len(data) + 7) & ~7
    data += bytes(shoff - len(data)) + bytes(64 * count)
    struct.pack_into('<Q', data, 0x28, shoff)  # e_shoff
    struct.pack_into('<HHH', data, 0x3A, 64, count, 0)  # e_shentsize, e_shnum, e_shstrndx
    with open(out, 'wb') as f:
        f.write(data)
    os.chmod(out, 0o755)
    return out


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0
