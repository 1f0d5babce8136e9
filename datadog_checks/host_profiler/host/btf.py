# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Struct member offsets of the running kernel, from its BTF (/sys/kernel/btf/vmlinux).

BCC compiles against the headers under /lib/modules/$(uname -r)/build, which may be those of
another kernel version (on our CI host: 6.1 headers for a 6.18 kernel), so a field such as
``task_struct.thread.fsbase`` compiles to the wrong offset. The BPF programs get such offsets as
-D constants computed here instead. Hand-written because no maintained Python library reads BTF
(pyelftools does not); only what member lookups need is decoded (format: the kernel's
Documentation/bpf/btf.rst).

Decoding vmlinux's BTF costs about 0.25 s of CPU, at every start. The offsets cannot change before
the next boot, so they are kept in ``/run/host_profiler/kernel-offsets.json`` (tmpfs: gone at
reboot) under the boot id and the kernel release; a later start on the same boot reads them from
there. A file that cannot be read, parsed or written is not an error: the offsets are computed.
"""
from __future__ import annotations

import json
import os
import struct
from typing import Dict, List, Optional, Sequence, Tuple

from .kernel import kernel_release
from .proc import boot_id

VMLINUX_BTF = '/sys/kernel/btf/vmlinux'
BTF_MAGIC = 0xEB9F

KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT = 8, 9, 10, 11
KIND_FUNC_PROTO, KIND_VAR, KIND_DATASEC, KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64 = 13, 14, 15, 17, 18, 19
# bytes that follow the 12-byte common header, per kind: (fixed, per vlen item)
_TRAILER = {KIND_INT: (4, 0), KIND_ARRAY: (12, 0), KIND_STRUCT: (0, 12), KIND_UNION: (0, 12), KIND_ENUM: (0, 8),
            KIND_FUNC_PROTO: (0, 8), KIND_VAR: (4, 0), KIND_DATASEC: (0, 12), KIND_DECL_TAG: (4, 0),
            KIND_ENUM64: (0, 12)}
_MODIFIERS = (KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG)


class BtfError(ValueError):
    pass


class Btf:
    def __init__(self, data: bytes) -> None:
        if len(data) < 24:
            raise BtfError('BTF data too short')
        magic, _version, _flags, hdr_len = struct.unpack_from('<HBBI', data, 0)
        if magic != BTF_MAGIC:
            raise BtfError('not BTF data (little endian)')
        type_off, type_len, str_off, str_len = struct.unpack_from('<IIII', data, 8)
        self._types = data[hdr_len + type_off:hdr_len + type_off + type_len]
        self._strs = data[hdr_len + str_off:hdr_len + str_off + str_len]
        self._offsets: List[int] = [0]  # type id -> offset of its record in _types (id 0 is void)
        off, n = 0, len(self._types)
        while off + 12 <= n:
            self._offsets.append(off)
            info = struct.unpack_from('<I', self._types, off + 4)[0]
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            fixed, per = _TRAILER.get(kind, (0, 0))
            off += 12 + fixed + per * vlen

    def _name(self, off: int) -> str:
        end = self._strs.find(b'\0', off)
        return self._strs[off:end if end >= 0 else len(self._strs)].decode('utf-8', 'replace')

    def _type(self, tid: int) -> Tuple[str, int, int, int, int]:
        """(name, kind, vlen, kind_flag, size_or_type, record offset)"""
        off = self._offsets[tid]
        name_off, info, size_type = struct.unpack_from('<III', self._types, off)
        return self._name(name_off), (info >> 24) & 0x1F, info & 0xFFFF, info >> 31, size_type, off

    def find_struct(self, name: str) -> Optional[int]:
        for tid in range(1, len(self._offsets)):
            off = self._offsets[tid]
            info = struct.unpack_from('<I', self._types, off + 4)[0]
            if (info >> 24) & 0x1F == KIND_STRUCT and self._name(struct.unpack_from('<I', self._types, off)[0]) == name:
                return tid
        return None

    def _resolve(self, tid: int) -> int:
        for _ in range(32):
            _n, kind, _v, _k, size_type, _o = self._type(tid)
            if kind not in _MODIFIERS:
                return tid
            tid = size_type
        raise BtfError('type chain too long')

    def members(self, tid: int) -> Dict[str, Tuple[int, int]]:
        """member name -> (byte offset, type id) of a struct or union."""
        _n, kind, vlen, kflag, _s, off = self._type(self._resolve(tid))
        if kind not in (KIND_STRUCT, KIND_UNION):
            raise BtfError('type {} is not a struct or union'.format(tid))
        out: Dict[str, Tuple[int, int]] = {}
        for i in range(vlen):
            name_off, mtype, moff = struct.unpack_from('<III', self._types, off + 12 + 12 * i)
            bits = moff & 0xFFFFFF if kflag else moff
            out[self._name(name_off)] = (bits // 8, mtype)
        return out

    def offsetof(self, struct_name: str, path: Sequence[str]) -> int:
        """Byte offset of a nested member, e.g. offsetof('task_struct', ['thread', 'fsbase'])."""
        tid = self.find_struct(struct_name)
        if tid is None:
            raise BtfError('struct {} not in BTF'.format(struct_name))
        total = 0
        for name in path:
            members = self.members(tid)
            if name not in members:
                raise BtfError('{} has no member {}'.format(struct_name, name))
            off, tid = members[name]
            total += off
        return total


OFFSETS_CACHE = '/run/host_profiler/kernel-offsets.json'

_cache: Dict[Tuple[str, Tuple[str, ...]], int] = {}


def _boot_key() -> str:
    return '{} {}'.format(boot_id(), kernel_release())


def _read_cached(cache_path: str, name: str) -> Optional[int]:
    try:
        with open(cache_path) as f:
            doc = json.load(f)
        if doc.get('boot') != _boot_key():
            return None
        v = doc.get('offsets', {}).get(name)
        return v if isinstance(v, int) and v >= 0 else None
    except (OSError, ValueError, AttributeError):
        return None


def _write_cached(cache_path: str, name: str, value: int) -> None:
    try:
        doc = {'boot': _boot_key(), 'offsets': {}}
        try:
            with open(cache_path) as f:
                old = json.load(f)
            if isinstance(old, dict) and old.get('boot') == doc['boot'] and isinstance(old.get('offsets'), dict):
                doc['offsets'].update(old['offsets'])
        except (OSError, ValueError):
            pass
        doc['offsets'][name] = value
        os.makedirs(os.path.dirname(cache_path), mode=0o700, exist_ok=True)
        tmp = '{}.{}'.format(cache_path, os.getpid())
        with open(tmp, 'w') as f:
            json.dump(doc, f)
        os.replace(tmp, cache_path)  # atomic: a concurrent reader sees the old file or the new one
    except OSError:
        pass  # read-only /run, not root: computed again at the next start


def kernel_offsetof(struct_name: str, path: Sequence[str], btf_path: str = VMLINUX_BTF,
                    cache_path: Optional[str] = OFFSETS_CACHE) -> int:
    """Offset in the running kernel: from memory, else from ``cache_path`` if it was written on this
    boot by this kernel, else from the BTF (then written there). Raises BtfError or OSError."""
    key = (struct_name, tuple(path))
    if key in _cache:
        return _cache[key]
    name = '.'.join((struct_name,) + tuple(path))
    # only the running kernel's BTF is worth a file keyed by this boot
    use_file = cache_path is not None and btf_path == VMLINUX_BTF
    value = _read_cached(cache_path, name) if use_file else None
    if value is None:
        with open(btf_path, 'rb') as f:
            value = Btf(f.read()).offsetof(struct_name, path)
        if use_file:
            _write_cached(cache_path, name, value)
    _cache[key] = value
    return value


def task_fsbase_offset(btf_path: str = VMLINUX_BTF, cache_path: Optional[str] = OFFSETS_CACHE) -> int:
    """offsetof(struct task_struct, thread.fsbase) in the running kernel (x86-64)."""
    return kernel_offsetof('task_struct', ('thread', 'fsbase'), btf_path, cache_path)
