# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""CPython structure offsets per minor version (x86-64, default GIL builds).

Each value was checked on this project's CI image against the headers (offsetof) and the DWARF of
pyenv's 3.8.18-3.13.0 and Debian's 3.11.2 builds: see /work/shared/reference/cpython-frames.md
section 3 for the table and the program that prints them. ``_Py_DebugOffsets`` (3.13+) gives many
of them at run time, but not the TSD key nor the frame markers, so one table serves every version.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Dict, Optional

# BPF layouts (keep in sync with PY_LAYOUT_* in receiver/bpf/sampler.c)
LAYOUT_FRAMEOBJECT = 1  # <= 3.10: PyFrameObject; each Python call is one C call of the eval loop
LAYOUT_IS_ENTRY = 2  # 3.11: _PyInterpreterFrame.is_entry marks the outermost frame of a C call
LAYOUT_SHIM = 3  # 3.12+: a shim frame owned by the C stack starts each C call

# glibc x86-64 struct pthread: specific_1stblock[0].data and specific[] (unchanged from 2.2x to
# 2.36, the glibc these offsets were read from; musl is not supported: see docs)
GLIBC_TSD_FIRST = 0x318
GLIBC_TSD_SECOND = 0x510

NO_CFRAME = 0xFFFF
FRAME_READ_MAX = 128  # PY_FRAME_READ in receiver/bpf/sampler.c


@dataclass(frozen=True)
class Offsets:
    minor: int
    layout: int
    tsd_key: int  # offset of autoTSSkey._key (a pthread_key_t) in _PyRuntime
    tstate_frame: int  # PyThreadState: frame (<= 3.10), cframe (3.11/3.12), current_frame (3.13)
    cframe_frame: int  # _PyCFrame.current_frame, or NO_CFRAME
    f_back: int
    f_code: int
    f_instr: int  # f_lasti (int) or prev_instr / instr_ptr
    f_marker: int  # is_entry (3.11), owner (3.12+); unused before
    co_firstlineno: int  # int
    co_filename: int
    co_name: int
    co_qualname: int  # 0: none (<= 3.10)
    co_linetable: int  # co_lnotab (<= 3.9), co_linetable (3.10+)
    co_code_adaptive: int  # 3.11+: the bytecode, inline in the code object
    str_ascii_data: int  # sizeof(PyASCIIObject)
    str_compact_data: int  # sizeof(PyCompactUnicodeObject)
    lasti_code_units: bool = False  # 3.10: f_lasti counts 2-byte code units

    @property
    def code_header_size(self) -> int:
        return max(self.co_linetable, self.co_qualname, self.co_name, self.co_filename) + 8

    @property
    def frame_read_size(self) -> int:
        """Bytes the BPF walk reads at the start of each frame: every field it takes is in them
        (one read per frame). Inside the frame structure, so never past its mapping."""
        ends = [self.f_code + 8, self.f_back + 8, self.f_instr + (4 if self.layout == LAYOUT_FRAMEOBJECT else 8)]
        if self.layout != LAYOUT_FRAMEOBJECT:
            ends.append(self.f_marker + 1)
        return max(ends)

    def bpf_state(self, tsd_key_addr: int) -> bytes:
        """struct py_proc_t of receiver/bpf/sampler.c (key_known 0: the program reads autoTSSkey once)"""
        size = self.frame_read_size
        if size > FRAME_READ_MAX:
            raise ValueError('frame fields past {} bytes'.format(FRAME_READ_MAX))
        return struct.pack('<QHHHHHHHHIHHII', tsd_key_addr, GLIBC_TSD_FIRST, GLIBC_TSD_SECOND, self.tstate_frame,
                           self.cframe_frame, self.f_back, self.f_code, self.f_instr, self.f_marker, self.layout,
                           size, 0, 0, 0)


_FRAMEOBJECT = dict(layout=LAYOUT_FRAMEOBJECT, tstate_frame=24, cframe_frame=NO_CFRAME, f_back=24, f_code=32,
                    f_marker=0, co_firstlineno=40, co_filename=104, co_name=112, co_qualname=0, co_linetable=120,
                    co_code_adaptive=0, str_ascii_data=48, str_compact_data=72)
_CODE_311 = dict(co_filename=112, co_name=120, co_qualname=128, co_linetable=136)

OFFSETS: Dict[int, Offsets] = {
    8: Offsets(minor=8, tsd_key=1396, f_instr=104, **_FRAMEOBJECT),
    9: Offsets(minor=9, tsd_key=588, f_instr=104, **_FRAMEOBJECT),
    10: Offsets(minor=10, tsd_key=588, f_instr=96, lasti_code_units=True, **_FRAMEOBJECT),
    11: Offsets(minor=11, layout=LAYOUT_IS_ENTRY, tsd_key=596, tstate_frame=56, cframe_frame=8, f_back=48, f_code=32,
                f_instr=56, f_marker=68, co_firstlineno=72, co_code_adaptive=184, str_ascii_data=48,
                str_compact_data=72, **_CODE_311),
    12: Offsets(minor=12, layout=LAYOUT_SHIM, tsd_key=1548, tstate_frame=56, cframe_frame=0, f_back=8, f_code=0,
                f_instr=56, f_marker=70, co_firstlineno=68, co_code_adaptive=192, str_ascii_data=40,
                str_compact_data=56, **_CODE_311),
    13: Offsets(minor=13, layout=LAYOUT_SHIM, tsd_key=2164, tstate_frame=72, cframe_frame=NO_CFRAME, f_back=8,
                f_code=0, f_instr=56, f_marker=70, co_firstlineno=68, co_code_adaptive=200, str_ascii_data=40,
                str_compact_data=56, **_CODE_311),
}


def offsets_for(major: int, minor: int) -> Optional[Offsets]:
    return OFFSETS.get(minor) if major == 3 else None
