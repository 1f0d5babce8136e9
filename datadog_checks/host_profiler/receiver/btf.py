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
"""
from __future__ import annotations

import struct
from typing import Dict, List, Optional, Sequence, Tuple

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


_cache: Dict[Tuple[str, Tuple[str, ...]], int] = {}


def kernel_offsetof(struct_name: str, path: Sequence[str], btf_path: str = VMLINUX_BTF) -> int:
    """Offset in the running kernel (cached). Raises BtfError or OSError."""
    key = (struct_name, tuple(path))
    if key not in _cache:
        with open(btf_path, 'rb') as f:
            _cache[key] = Btf(f.read()).offsetof(struct_name, path)
    return _cache[key]


def task_fsbase_offset(btf_path: str = VMLINUX_BTF) -> int:
    """offsetof(struct task_struct, thread.fsbase) in the running kernel (x86-64)."""
    return kernel_offsetof('task_struct', ('thread', 'fsbase'), btf_path)
