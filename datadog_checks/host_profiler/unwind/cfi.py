# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Compile the call-frame information (CFI) of an x86-64 ELF into a compact unwind table.

Input: ``.eh_frame`` (found by section header, or through ``PT_GNU_EH_FRAME`` →
``.eh_frame_hdr`` when a file has no section headers) and ``.debug_frame`` when present
(its FDEs only fill ranges that ``.eh_frame`` does not cover). Output: a ``CfiTable``:
row start addresses (ELF virtual addresses, sorted, ``array('Q')``) and, per row, the index
of an interned *rule* ``(cfa_kind, cfa_offset, ra_offset, bp_kind, bp_offset)`` in
``array('H'/'I')``. Binaries have few distinct rules (libc.so.6: ~25k rows, a few hundred
rules), so a row costs 10-12 bytes. Lookup is ``bisect``.

Why not pyelftools: its CFI API (``DWARFInfo.EH_CFI_entries()`` + ``FDE.get_decoded()``)
was measured at 1.5 s for Debian's libc.so.6 and 5.8 s for python3.11 (the target is
≤ 300 ms cold for libc), because it builds a container object per instruction and a dict
per row. This module decodes the CIE/FDE/CFA-instruction encoding by hand (LSB 5.0
"Exception Frames", DWARF 5 §6.4) in one pass over the section bytes, tracking only the
three registers user-space unwinding needs on x86-64: the CFA, the return address
(column 16) and rbp (column 6).

Rules (what the unwinder reads; all offsets are bytes):
  * CFA: ``CFA_SP``/``CFA_BP`` → rsp/rbp + off; ``CFA_PLT`` (+threshold) → the well-known
    ``.plt`` expression ``rsp + off + ((rip & 15) >= threshold) * 8``; ``CFA_DEREF_BP`` →
    ``*(rbp + off)`` (gcc's stack-realignment pattern in ``main``); ``CFA_SIGNAL`` → a frame
    of a CIE with augmentation 'S' (``__restore_rt``: registers come from the ucontext);
    ``CFA_UNSUPPORTED`` → any other expression or register; ``CFA_NONE`` → no FDE covers
    the address (the unwinder may fall back to frame pointers).
  * RA: offset from the CFA, or ``RA_UNDEFINED`` (outermost frame: ``_start``,
    ``clone``), or ``RA_UNSUPPORTED``.
  * rbp: ``BP_SAME`` (unchanged), ``BP_AT_CFA`` (saved at CFA + off), ``BP_AT_BP``
    (saved at rbp + off: ``DW_CFA_expression rbp (DW_OP_breg6 off)``), ``BP_UNDEFINED``,
    ``BP_UNSUPPORTED``.

Malformed input never raises out of ``build_cfi_table``/``compile_cfi``: a bad FDE is
skipped (counted in ``CfiTable.bad_fdes``), a bad CIE skips its FDEs, and every loop is
bounded by the section length.

Modules: ``cfi_decoder`` (CIEs, FDEs, CFA instructions → rows), ``cfi_table`` (``CfiTable``,
``LazyCfiTable``, ``build_cfi_table``, the ELF input through ``host.elf``). This module keeps
every public name of both (the unwinder, ``tables.py`` and the tests import them from here).
"""
from __future__ import annotations

from .cfi_decoder import (  # noqa: F401
    BP_AT_BP, BP_AT_CFA, BP_SAME, BP_UNDEFINED, BP_UNSUPPORTED, CFA_BP, CFA_DEREF_BP, CFA_NONE, CFA_PLT, CFA_SIGNAL,
    CFA_SP, CFA_UNSUPPORTED, MAX_ROWS_PER_FDE, MAX_SECTION, NO_CFI, RA_UNDEFINED, RA_UNSUPPORTED, REG_RA, REG_RBP,
    REG_RSP, CfiError, Rule, _cie_at, _parse_cie, _read_encoded, _run, _sleb, _uleb, parse_frame_section,
)
from .cfi_table import (  # noqa: F401
    EMPTY_TABLE, LAZY_MIN_BYTES, CfiTable, ElfSections, LazyCfiTable, TooManySections, build_cfi_table, compile_cfi,
    lazy_table, merge_fdes, read_elf_sections,
)

__all__ = [
    'BP_AT_BP', 'BP_AT_CFA', 'BP_SAME', 'BP_UNDEFINED', 'BP_UNSUPPORTED', 'CFA_BP', 'CFA_DEREF_BP', 'CFA_NONE',
    'CFA_PLT', 'CFA_SIGNAL', 'CFA_SP', 'CFA_UNSUPPORTED', 'EMPTY_TABLE', 'LAZY_MIN_BYTES', 'MAX_ROWS_PER_FDE',
    'MAX_SECTION', 'NO_CFI', 'RA_UNDEFINED', 'RA_UNSUPPORTED', 'REG_RA', 'REG_RBP', 'REG_RSP', 'CfiError',
    'CfiTable', 'ElfSections', 'LazyCfiTable', 'Rule', 'TooManySections', 'build_cfi_table', 'compile_cfi',
    'lazy_table', 'merge_fdes', 'parse_frame_section', 'read_elf_sections',
]
