# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Separate debug files, found as GDB does, and the `.gnu_debugdata` mini symbol table.

Order (``find_debug_file``):

1. ``<debug dir>/.build-id/xx/rest.debug`` whose GNU build id matches the binary's;
2. the ``.gnu_debuglink`` target whose CRC32 matches, in the binary's directory, then
   ``<dir>/.debug/``, then ``<debug dir>/<dir>/``.

Every candidate is looked for inside the process's root (``/proc/PID/root``) first, then,
for debug directories only, on the host (a host debug dir may hold files for container
binaries; the build-id or CRC check keeps that safe). Each is opened through
``host.files.FileOpener`` (resolved inside its root, regular files only, size-capped).
"""
from __future__ import annotations

import lzma
import posixpath
import zlib
from typing import Any, BinaryIO, Iterable, Iterator, Optional, Sequence, Tuple

from ..host.elf import ElfInfo, elf_extent, read_elf_info
from ..host.files import (MAX_DEBUGDATA_COMPRESSED, MAX_DEBUGDATA_DECOMPRESSED, MAX_ELF_BYTES, FileOpener,
                          join_root, opener_for, record_refusal)

CRC_CHUNK = 1 << 20
DEBUGDATA_SLACK = 64 << 10  # bytes a mini ELF may hold after its header tables

Candidate = Tuple[str, str]  # (root, path inside it); root '/' is this host


def stream_crc32(f: BinaryIO) -> int:
    crc = 0
    while True:
        chunk = f.read(CRC_CHUNK)
        if not chunk:
            return crc & 0xFFFFFFFF
        crc = zlib.crc32(chunk, crc)


def file_crc32(path: str) -> Optional[int]:
    try:
        with open(path, 'rb') as f:
            return stream_crc32(f)
    except OSError:
        return None


def _dedupe(paths: Iterable[Candidate]) -> Iterator[Candidate]:
    seen = set()
    for p in paths:
        if p not in seen:
            seen.add(p)
            yield p


def _both(root: str, path: str) -> Iterator[Candidate]:
    """``path`` in the process's root, then on this host."""
    yield (root or '/', path)
    yield ('/', path)


def build_id_candidates(build_id: str, root: str, debug_dirs: Sequence[str]) -> Iterator[Candidate]:
    if len(build_id) < 4:
        return iter(())
    rel = posixpath.join('.build-id', build_id[:2], build_id[2:] + '.debug')
    return _dedupe(c for d in debug_dirs for c in _both(root, posixpath.join(d, rel)))


def debuglink_candidates(binary_path: str, link_name: str, root: str, debug_dirs: Sequence[str]) -> Iterator[Candidate]:
    """``binary_path`` is the path as the process sees it (inside its root)."""
    if not link_name or '/' in link_name:
        return iter(())
    root = root or '/'
    d = posixpath.dirname(binary_path) or '/'
    paths = [(root, posixpath.join(d, link_name)), (root, posixpath.join(d, '.debug', link_name))]
    for dd in debug_dirs:
        paths.extend(_both(root, posixpath.join(dd, d.lstrip('/'), link_name)))
    return _dedupe(paths)


def find_debug_file(info: ElfInfo, binary_path: str, root: str = '/', debug_dirs: Sequence[str] = ('/usr/lib/debug',),
                    telemetry: Any = None, own_ident: Optional[Tuple[int, int]] = None,
                    opener: Optional[FileOpener] = None, pid: int = 0) -> Optional[ElfInfo]:
    """ElfInfo of the separate debug file of ``info`` (which must have a symbol table), or None.
    Its ``location`` says where it was found, to open it again through the opener.

    ``binary_path`` is the binary's path inside ``root``; ``own_ident`` is the (dev, inode)
    of the binary itself (never returned as its own debug file). Every candidate is opened
    through ``opener`` (regular files inside the root, size-capped)."""
    opener = opener or opener_for(telemetry)
    if own_ident is None and info.inode:
        own_ident = (info.dev, info.inode)
    if info.gnu_build_id:
        for cand in build_id_candidates(info.gnu_build_id, root, debug_dirs):
            found = _check(cand, opener, pid, own_ident, telemetry, lambda d, f: d.gnu_build_id == info.gnu_build_id)
            if found is not None:
                if telemetry is not None:
                    telemetry.count('symbols.debug_files.found', 1, ('method:build_id',))
                return found
    if info.debuglink_name and binary_path:
        for cand in debuglink_candidates(binary_path, info.debuglink_name, root, debug_dirs):
            found = _check(cand, opener, pid, own_ident, telemetry, lambda d, f: _crc_matches(f, info.debuglink_crc))
            if found is not None:
                if telemetry is not None:
                    telemetry.count('symbols.debug_files.found', 1, ('method:debuglink',))
                return found
    return None


def _crc_matches(f: BinaryIO, crc: int) -> bool:
    f.seek(0)
    return stream_crc32(f) == crc


def _check(cand: Candidate, opener: FileOpener, pid: int, own_ident: Optional[Tuple[int, int]], telemetry: Any,
           accept: Any) -> Optional[ElfInfo]:
    root, path = cand
    try:
        f, st = opener.open_in_root(root, path, kind='debug', pid=pid, max_bytes=MAX_ELF_BYTES)
    except (OSError, ValueError):
        return None
    with f:
        if own_ident is not None and (st.st_dev, st.st_ino) == tuple(own_ident):
            return None
        shown = join_root(root, path)
        d = read_elf_info(shown, telemetry, stream=f)
        if d is None or not (d.has_symtab or d.has_debug_info):
            return None
        try:
            if not accept(d, f):
                return None
        except OSError:
            return None
        d.size = st.st_size
        d.location = (root, path)
        return d


def decompress_debugdata(blob: bytes, limit: int = MAX_DEBUGDATA_DECOMPRESSED) -> bytes:
    """Decompress a `.gnu_debugdata` section (an xz stream holding a small ELF with `.symtab`).

    Incremental, so that a bomb costs next to nothing: the first 64 bytes must be an ELF
    header, and the output may not exceed what that header spans (+ ``DEBUGDATA_SLACK``)
    nor ``limit``. Raises ``lzma.LZMAError``/``ValueError`` on bad data,
    ``DebugdataTooLarge`` when the output would exceed its bound."""
    if len(blob) > MAX_DEBUGDATA_COMPRESSED:
        raise DebugdataTooLarge('.gnu_debugdata too large')
    dec = lzma.LZMADecompressor(format=lzma.FORMAT_AUTO)
    head = dec.decompress(blob, max_length=64)
    if dec.eof:
        elf_extent(head)
        return head
    extent = elf_extent(head)
    bound = limit if extent is None else min(limit, extent + DEBUGDATA_SLACK)
    if bound < len(head):
        raise DebugdataTooLarge('.gnu_debugdata: an ELF header claiming {} bytes'.format(extent))
    rest = dec.decompress(b'', max_length=bound - len(head))
    if not dec.eof and not dec.needs_input:
        raise DebugdataTooLarge('.gnu_debugdata expands beyond {} bytes'.format(bound))
    if not dec.eof:
        raise ValueError('.gnu_debugdata truncated')
    return head + rest


class DebugdataTooLarge(ValueError):
    pass


def read_debugdata(stream: Any, info: ElfInfo, opener: Optional[FileOpener] = None, shown: str = '',
                   pid: int = 0) -> bytes:
    """The decompressed `.gnu_debugdata` of the ELF in ``stream``. Too large (compressed or
    decompressed): a counted refusal (``FileRefused``)."""
    sec = info.sections.get('.gnu_debugdata')
    if sec is None or sec.nobits:
        raise ValueError('no usable .gnu_debugdata')
    where = (shown or info.path) + ':.gnu_debugdata'
    telemetry = opener.telemetry if opener is not None else None
    ident = (info.dev, info.inode, 'gnu_debugdata') if info.inode else None
    if sec.size > MAX_DEBUGDATA_COMPRESSED:
        raise record_refusal(telemetry, 'too_large', where, pid, 'debugdata', ident)
    stream.seek(sec.offset)
    data = stream.read(sec.size)
    if len(data) != sec.size:
        raise ValueError('truncated .gnu_debugdata')
    try:
        return decompress_debugdata(data)
    except DebugdataTooLarge:
        raise record_refusal(telemetry, 'too_large', where, pid, 'debugdata', ident)
