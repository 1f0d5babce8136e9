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
binaries; the build-id or CRC check keeps that safe).
"""
from __future__ import annotations

import lzma
import os
import posixpath
import zlib
from typing import Any, Iterable, Iterator, Optional, Sequence

from .elf import ElfInfo, read_elf_info

MAX_DEBUGDATA_COMPRESSED = 64 << 20
MAX_DEBUGDATA_DECOMPRESSED = 256 << 20
CRC_CHUNK = 1 << 20


def _in_root(root: str, path: str) -> str:
    if not root or root == '/':
        return path
    return root.rstrip('/') + '/' + path.lstrip('/')


def file_crc32(path: str) -> Optional[int]:
    try:
        crc = 0
        with open(path, 'rb') as f:
            while True:
                chunk = f.read(CRC_CHUNK)
                if not chunk:
                    return crc & 0xFFFFFFFF
                crc = zlib.crc32(chunk, crc)
    except OSError:
        return None


def _dedupe(paths: Iterable[str]) -> Iterator[str]:
    seen = set()
    for p in paths:
        if p not in seen:
            seen.add(p)
            yield p


def build_id_candidates(build_id: str, root: str, debug_dirs: Sequence[str]) -> Iterator[str]:
    if len(build_id) < 4:
        return iter(())
    rel = posixpath.join('.build-id', build_id[:2], build_id[2:] + '.debug')
    paths = []
    for d in debug_dirs:
        paths.append(_in_root(root, posixpath.join(d, rel)))
        paths.append(posixpath.join(d, rel))
    return _dedupe(paths)


def debuglink_candidates(binary_path: str, link_name: str, root: str, debug_dirs: Sequence[str]) -> Iterator[str]:
    """``binary_path`` is the path as the process sees it (inside its root)."""
    if not link_name or '/' in link_name:
        return iter(())
    d = posixpath.dirname(binary_path) or '/'
    paths = [_in_root(root, posixpath.join(d, link_name)), _in_root(root, posixpath.join(d, '.debug', link_name))]
    for dd in debug_dirs:
        rel = posixpath.join(dd, d.lstrip('/'), link_name)
        paths.append(_in_root(root, rel))
        paths.append(rel)
    return _dedupe(paths)


def find_debug_file(info: ElfInfo, binary_path: str, root: str = '/', debug_dirs: Sequence[str] = ('/usr/lib/debug',),
                    telemetry: Any = None, own_path: str = '') -> Optional[ElfInfo]:
    """ElfInfo of the separate debug file of ``info`` (which must have a symbol table), or None.

    ``binary_path`` is the binary's path inside ``root``; ``own_path`` is the path the binary
    was opened from on this host (never returned as its own debug file)."""
    if info.gnu_build_id:
        for cand in build_id_candidates(info.gnu_build_id, root, debug_dirs):
            found = _check(cand, telemetry, own_path, lambda d: d.gnu_build_id == info.gnu_build_id)
            if found is not None:
                if telemetry is not None:
                    telemetry.count('symbols.debug_files.found', 1, ('method:build_id',))
                return found
    if info.debuglink_name and binary_path:
        for cand in debuglink_candidates(binary_path, info.debuglink_name, root, debug_dirs):
            if not os.path.isfile(cand) or (own_path and _same_file(cand, own_path)):
                continue
            if file_crc32(cand) != info.debuglink_crc:
                continue
            found = _check(cand, telemetry, own_path, lambda d: True)
            if found is not None:
                if telemetry is not None:
                    telemetry.count('symbols.debug_files.found', 1, ('method:debuglink',))
                return found
    return None


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check(path: str, telemetry: Any, own_path: str, accept: Any) -> Optional[ElfInfo]:
    if not os.path.isfile(path) or (own_path and _same_file(path, own_path)):
        return None
    d = read_elf_info(path, telemetry)
    if d is None or not accept(d) or not (d.has_symtab or d.has_debug_info):
        return None
    return d


def decompress_debugdata(blob: bytes, limit: int = MAX_DEBUGDATA_DECOMPRESSED) -> bytes:
    """Decompress a `.gnu_debugdata` section (an xz stream holding a small ELF with `.symtab`).
    Raises ``lzma.LZMAError``/``ValueError`` on bad data or when the output exceeds ``limit``."""
    if len(blob) > MAX_DEBUGDATA_COMPRESSED:
        raise ValueError('.gnu_debugdata too large')
    dec = lzma.LZMADecompressor(format=lzma.FORMAT_AUTO)
    out = dec.decompress(blob, max_length=limit)
    if not dec.eof and dec.needs_input is False:
        raise ValueError('.gnu_debugdata expands beyond the limit')
    if not dec.eof:
        raise ValueError('.gnu_debugdata truncated')
    return out


def read_debugdata(stream: Any, info: ElfInfo) -> bytes:
    sec = info.sections.get('.gnu_debugdata')
    if sec is None or sec.nobits or sec.size > MAX_DEBUGDATA_COMPRESSED:
        raise ValueError('no usable .gnu_debugdata')
    stream.seek(sec.offset)
    data = stream.read(sec.size)
    if len(data) != sec.size:
        raise ValueError('truncated .gnu_debugdata')
    return decompress_debugdata(data)
