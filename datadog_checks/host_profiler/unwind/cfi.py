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
"""
from __future__ import annotations

import mmap
import os
import struct
import sys
from array import array
from bisect import bisect_right
from typing import Any, BinaryIO, Dict, List, Optional, Sequence, Tuple

from ..host.files import MAX_SECTIONS

# ---------------------------------------------------------------------------- rules
CFA_NONE = 0
CFA_SP = 1
CFA_BP = 2
CFA_DEREF_BP = 3
CFA_SIGNAL = 4
CFA_UNSUPPORTED = 5
CFA_PLT = 16  # CFA_PLT + threshold (0..15)

RA_UNDEFINED = 0x7FFFFFFF
RA_UNSUPPORTED = 0x7FFFFFFE

BP_SAME = 0
BP_AT_CFA = 1
BP_AT_BP = 2
BP_UNDEFINED = 3
BP_UNSUPPORTED = 4

Rule = Tuple[int, int, int, int, int]  # (cfa_kind, cfa_off, ra_off, bp_kind, bp_off)
NO_CFI: Rule = (CFA_NONE, 0, RA_UNSUPPORTED, BP_UNSUPPORTED, 0)

# DWARF register numbers on x86-64
REG_RBP = 6
REG_RSP = 7
REG_RA = 16

MAX_SECTION = 64 << 20  # refuse absurd sections (a corrupted header)
MAX_ROWS_PER_FDE = 1 << 16

_U16 = struct.Struct('<H').unpack_from
_U32 = struct.Struct('<I').unpack_from
_U64 = struct.Struct('<Q').unpack_from
_S16 = struct.Struct('<h').unpack_from
_S32 = struct.Struct('<i').unpack_from
_S64 = struct.Struct('<q').unpack_from


class CfiError(ValueError):
    pass


class TooManySections(CfiError):
    """More section headers than ``host.files.MAX_SECTIONS`` (refused, not decoded)."""


class CfiTable:
    """Sorted rows ``starts[i]`` → ``rules[rule_idx[i]]``, valid until ``starts[i+1]``."""

    __slots__ = ('starts', 'rule_idx', 'rules', 'nbytes', 'source', 'fdes', 'bad_fdes', '__weakref__')

    def __init__(self, starts: array, rule_idx: array, rules: List[Rule], source: str = '', fdes: int = 0,
                 bad_fdes: int = 0) -> None:
        self.starts = starts
        self.rule_idx = rule_idx
        self.rules = rules
        self.source = source
        self.fdes = fdes
        self.bad_fdes = bad_fdes
        self.nbytes = 200 + starts.itemsize * len(starts) + rule_idx.itemsize * len(rule_idx) + 120 * len(rules)

    def __len__(self) -> int:
        return len(self.starts)

    def lookup(self, vaddr: int) -> Optional[Rule]:
        """The rule for ELF virtual address ``vaddr``; ``None`` where no FDE covers it."""
        i = bisect_right(self.starts, vaddr) - 1
        if i < 0:
            return None
        rule = self.rules[self.rule_idx[i]]
        return None if rule[0] == CFA_NONE else rule

    def rows(self) -> List[Tuple[int, Rule]]:
        return [(self.starts[i], self.rules[self.rule_idx[i]]) for i in range(len(self.starts))]


EMPTY_TABLE = CfiTable(array('Q'), array('H'), [NO_CFI], 'none')


# ----------------------------------------------------------------------- LEB128 helpers
def _uleb(d: bytes, p: int) -> Tuple[int, int]:
    result = 0
    shift = 0
    while True:
        b = d[p]
        p += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, p
        shift += 7
        if shift > 70:
            raise CfiError('uleb128 too long')


def _sleb(d: bytes, p: int) -> Tuple[int, int]:
    result = 0
    shift = 0
    while True:
        b = d[p]
        p += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            if b & 0x40:
                result -= 1 << shift
            return result, p
        if shift > 70:
            raise CfiError('sleb128 too long')


def _read_encoded(d: bytes, p: int, enc: int, field_vaddr: int, datarel: int = 0) -> Tuple[int, int]:
    """A DW_EH_PE-encoded pointer at ``d[p]`` whose own address is ``field_vaddr``."""
    fmt = enc & 0x0F
    if fmt == 0x00:
        v = _U64(d, p)[0]
        n = 8
    elif fmt == 0x0B:
        v = _S32(d, p)[0]
        n = 4
    elif fmt == 0x03:
        v = _U32(d, p)[0]
        n = 4
    elif fmt == 0x01:
        v, q = _uleb(d, p)
        n = q - p
    elif fmt == 0x09:
        v, q = _sleb(d, p)
        n = q - p
    elif fmt == 0x02:
        v = _U16(d, p)[0]
        n = 2
    elif fmt == 0x0A:
        v = _S16(d, p)[0]
        n = 2
    elif fmt == 0x04:
        v = _U64(d, p)[0]
        n = 8
    elif fmt == 0x0C:
        v = _S64(d, p)[0]
        n = 8
    else:
        raise CfiError('pointer encoding 0x%x' % enc)
    app = enc & 0x70
    if app == 0x10:
        v += field_vaddr
    elif app == 0x30:
        v += datarel
    elif app not in (0x00,):
        raise CfiError('pointer application 0x%x' % enc)
    if enc & 0x80:
        raise CfiError('indirect pointer')
    return v & 0xFFFFFFFFFFFFFFFF, p + n


def _encoded_size(enc: int) -> int:
    return {0x00: 8, 0x02: 2, 0x03: 4, 0x04: 8, 0x0A: 2, 0x0B: 4, 0x0C: 8}.get(enc & 0x0F, 0)


# ------------------------------------------------------------------------------ CIEs
class _Cie:
    __slots__ = ('code_align', 'data_align', 'ra_reg', 'fde_enc', 'has_z', 'signal', 'init', 'ok', 'addr_size')

    def __init__(self) -> None:
        self.code_align = 1
        self.data_align = -8
        self.ra_reg = REG_RA
        self.fde_enc = 0
        self.has_z = False
        self.signal = False
        self.init = b''
        self.ok = True
        self.addr_size = 8


def _parse_cie(d: bytes, p: int, end: int, is_eh: bool) -> _Cie:
    cie = _Cie()
    version = d[p]
    p += 1
    if version not in (1, 3, 4):
        raise CfiError('CIE version %d' % version)
    z = d.find(b'\0', p, end)  # (bytes and mmap both have find)
    if z < 0:
        raise CfiError('unterminated augmentation')
    aug = bytes(d[p:z])
    p = z + 1
    if version == 4:
        cie.addr_size = d[p]
        seg = d[p + 1]
        p += 2
        if seg or cie.addr_size not in (4, 8):
            raise CfiError('segmented/odd address size')
    if aug.startswith(b'eh'):
        raise CfiError('old eh augmentation')
    cie.code_align, p = _uleb(d, p)
    cie.data_align, p = _sleb(d, p)
    if version == 1:
        cie.ra_reg = d[p]
        p += 1
    else:
        cie.ra_reg, p = _uleb(d, p)
    if aug.startswith(b'z'):
        cie.has_z = True
        alen, p = _uleb(d, p)
        aend = p + alen
        if aend > end:
            raise CfiError('augmentation beyond CIE')
        q = p
        for ch in aug[1:]:
            if ch == 0x52:  # 'R'
                cie.fde_enc = d[q]
                q += 1
            elif ch == 0x50:  # 'P' personality: encoding + pointer
                penc = d[q]
                q += 1
                sz = _encoded_size(penc)
                if not sz:
                    _, q = _uleb(d, q)
                else:
                    q += sz
            elif ch == 0x4C:  # 'L'
                q += 1
            elif ch == 0x53:  # 'S'
                cie.signal = True
            elif ch in (0x42, 0x47):  # 'B' (aarch64 BTI), 'G' (MTE): no data
                pass
            else:
                break  # unknown: the rest of the data is skipped through the length
        p = aend
    elif aug:
        raise CfiError('augmentation %r without z' % aug)
    if not is_eh:
        cie.fde_enc = 0x00 if cie.addr_size == 8 else 0x03
    cie.init = d[p:end]
    return cie


# ------------------------------------------------------------------- CFA instructions
def _run(insns: bytes, cie: _Cie, loc: int, end_loc: int, rows: List[Tuple[int, Rule]],
         init_state: Optional[list], fde_enc: int, insn_vaddr: int) -> list:
    """Execute CFA instructions from ``loc``; append (address, rule) rows, deduplicated.
    Returns the state at the end (used as the CIE's initial state for DW_CFA_restore)."""
    # state: [cfa_reg, cfa_off, cfa_special(kind or 0), ra_kind, ra_off, bp_kind, bp_off]
    # ra_kind/bp_kind: 0 same/default, 1 at CFA+off, 2 undefined, 3 at rbp+off, 4 unsupported
    if init_state is None:
        st = [REG_RSP, 8, 0, 4, 0, 0, 0]
    else:
        st = list(init_state)
    init = init_state if init_state is not None else st[:]
    stack: List[list] = []
    ca = cie.code_align
    da = cie.data_align
    ra_reg = cie.ra_reg
    n = len(insns)
    p = 0
    d = insns
    steps = 0
    while p < n:
        steps += 1
        if steps > 200000:
            raise CfiError('too many instructions')
        op = d[p]
        p += 1
        hi = op & 0xC0
        if hi == 0x40:  # advance_loc
            delta = (op & 0x3F) * ca
            _emit(rows, loc, st, cie)
            loc += delta
            continue
        if hi == 0x80:  # offset
            reg = op & 0x3F
            b = d[p]
            if b < 0x80:
                off = b
                p += 1
            else:
                off, p = _uleb(d, p)
            _set_reg(st, reg, 1, off * da, ra_reg)
            continue
        if hi == 0xC0:  # restore
            _restore(st, init, op & 0x3F, ra_reg)
            continue
        if op == 0x0E:  # def_cfa_offset
            b = d[p]
            if b < 0x80:
                st[1] = b
                p += 1
            else:
                st[1], p = _uleb(d, p)
            st[2] = 0
        elif op == 0x00:  # nop
            pass
        elif op == 0x0A:  # remember_state
            if len(stack) > 64:
                raise CfiError('state stack too deep')
            stack.append(st[:])
        elif op == 0x0B:  # restore_state
            if not stack:
                raise CfiError('restore_state with empty stack')
            saved = stack.pop()
            st[:] = saved
        elif op == 0x02:  # advance_loc1
            _emit(rows, loc, st, cie)
            loc += d[p] * ca
            p += 1
        elif op == 0x03:
            _emit(rows, loc, st, cie)
            loc += _U16(d, p)[0] * ca
            p += 2
        elif op == 0x04:
            _emit(rows, loc, st, cie)
            loc += _U32(d, p)[0] * ca
            p += 4
        elif op == 0x0C:  # def_cfa
            st[0], p = _uleb(d, p)
            st[1], p = _uleb(d, p)
            st[2] = 0
        elif op == 0x0D:  # def_cfa_register
            st[0], p = _uleb(d, p)
            st[2] = 0
        elif op == 0x12:  # def_cfa_sf
            st[0], p = _uleb(d, p)
            v, p = _sleb(d, p)
            st[1] = v * da
            st[2] = 0
        elif op == 0x13:  # def_cfa_offset_sf
            v, p = _sleb(d, p)
            st[1] = v * da
            st[2] = 0
        elif op == 0x0F:  # def_cfa_expression
            ln, p = _uleb(d, p)
            expr = d[p:p + ln]
            p += ln
            st[2], st[1] = _classify_cfa_expr(expr)
        elif op == 0x05 or op == 0x11 or op == 0x2F:  # offset_extended(_sf), GNU_negative_offset_extended
            reg, p = _uleb(d, p)
            if op == 0x11:
                v, p = _sleb(d, p)
            else:
                v, p = _uleb(d, p)
                if op == 0x2F:
                    v = -v
            _set_reg(st, reg, 1, v * da, ra_reg)
        elif op == 0x06:  # restore_extended
            reg, p = _uleb(d, p)
            _restore(st, init, reg, ra_reg)
        elif op == 0x07:  # undefined
            reg, p = _uleb(d, p)
            _set_reg(st, reg, 2, 0, ra_reg)
        elif op == 0x08:  # same_value
            reg, p = _uleb(d, p)
            _set_reg(st, reg, 0, 0, ra_reg)
        elif op == 0x09:  # register: value lives in another register (not tracked)
            reg, p = _uleb(d, p)
            _, p = _uleb(d, p)
            _set_reg(st, reg, 4, 0, ra_reg)
        elif op == 0x10:  # expression
            reg, p = _uleb(d, p)
            ln, p = _uleb(d, p)
            expr = d[p:p + ln]
            p += ln
            if reg == REG_RBP and ln >= 2 and expr[0] == 0x76:  # DW_OP_breg6 sleb
                try:
                    v, q = _sleb(expr, 1)
                except (IndexError, CfiError):
                    q = -1
                if q == ln:
                    _set_reg(st, reg, 3, v, ra_reg)
                    continue
            _set_reg(st, reg, 4, 0, ra_reg)
        elif op == 0x14 or op == 0x15:  # val_offset(_sf): value = CFA + off (not an address)
            reg, p = _uleb(d, p)
            if op == 0x15:
                v, p = _sleb(d, p)
            else:
                v, p = _uleb(d, p)
            _set_reg(st, reg, 4, 0, ra_reg)
        elif op == 0x16:  # val_expression
            reg, p = _uleb(d, p)
            ln, p = _uleb(d, p)
            p += ln
            _set_reg(st, reg, 4, 0, ra_reg)
        elif op == 0x2E:  # GNU_args_size
            _, p = _uleb(d, p)
        elif op == 0x01:  # set_loc
            _emit(rows, loc, st, cie)
            loc, p = _read_encoded(d, p, fde_enc, insn_vaddr + p)
        elif op == 0x2D:  # GNU_window_save (SPARC) / aarch64 negate_ra_state: no operands
            pass
        else:
            raise CfiError('CFA opcode 0x%x' % op)
        if p > n:
            raise CfiError('instruction beyond FDE')
        if len(rows) > MAX_ROWS_PER_FDE:
            raise CfiError('too many rows')
    _emit(rows, loc, st, cie)
    return st


def _set_reg(st: list, reg: int, kind: int, off: int, ra_reg: int) -> None:
    if reg == ra_reg:
        st[3] = kind
        st[4] = off
    elif reg == REG_RBP:
        st[5] = kind
        st[6] = off


def _restore(st: list, init: list, reg: int, ra_reg: int) -> None:
    if reg == ra_reg:
        st[3] = init[3]
        st[4] = init[4]
    elif reg == REG_RBP:
        st[5] = init[5]
        st[6] = init[6]


# The .plt CFA expression (binutils, x86-64): breg7 N; breg16 0; lit15; and; litT; ge; lit3; shl; plus
def _classify_cfa_expr(expr: bytes) -> Tuple[int, int]:
    try:
        if expr and expr[0] == 0x77:  # DW_OP_breg7 (rsp)
            off, q = _sleb(expr, 1)
            tail = bytes(expr[q:])
            if (len(tail) == 9 and tail[0] == 0x80 and tail[1] == 0x00 and tail[2] == 0x3F and tail[3] == 0x1A
                    and 0x30 <= tail[4] <= 0x3F and tail[5:] == b'\x2a\x33\x24\x22'):
                return CFA_PLT + (tail[4] - 0x30), off
        elif expr and expr[0] == 0x76:  # DW_OP_breg6 (rbp) N; DW_OP_deref
            off, q = _sleb(expr, 1)
            if bytes(expr[q:]) == b'\x06':
                return CFA_DEREF_BP, off
    except (IndexError, CfiError):
        pass
    return CFA_UNSUPPORTED, 0


def _rule(st: list, cie: _Cie) -> Rule:
    if cie.signal:
        return (CFA_SIGNAL, 0, 0, BP_SAME, 0)
    special = st[2]
    if special:
        kind = special
    elif st[0] == REG_RSP:
        kind = CFA_SP
    elif st[0] == REG_RBP:
        kind = CFA_BP
    else:
        kind = CFA_UNSUPPORTED
    rk = st[3]
    if rk == 1:
        ra = st[4]
    elif rk == 2:
        ra = RA_UNDEFINED
    else:
        ra = RA_UNSUPPORTED
    bk = st[5]
    if bk == 0:
        bp = (BP_SAME, 0)
    elif bk == 1:
        bp = (BP_AT_CFA, st[6])
    elif bk == 3:
        bp = (BP_AT_BP, st[6])
    elif bk == 2:
        bp = (BP_UNDEFINED, 0)
    else:
        bp = (BP_UNSUPPORTED, 0)
    return (kind, st[1] if kind != CFA_UNSUPPORTED else 0, ra, bp[0], bp[1])


def _emit(rows: List[Tuple[int, Rule]], loc: int, st: list, cie: _Cie) -> None:
    rule = _rule(st, cie)
    if rows:
        last_loc, last_rule = rows[-1]
        if last_loc == loc:
            rows[-1] = (loc, rule)
            if len(rows) > 1 and rows[-2][1] == rule:
                rows.pop()
            return
        if last_rule == rule:
            return
    rows.append((loc, rule))


# ------------------------------------------------------------------------ sections
def parse_frame_section(data: bytes, section_vaddr: int, is_eh: bool = True,
                        datarel: int = 0) -> Tuple[List[Tuple[int, int, List[Tuple[int, Rule]]]], int]:
    """Decode every FDE of an ``.eh_frame`` (``is_eh``) or ``.debug_frame`` section.
    Returns ``([(pc_begin, pc_end, rows)], bad_fde_count)``. Never raises."""
    out: List[Tuple[int, int, List[Tuple[int, Rule]]]] = []
    bad = 0
    cies: Dict[int, Any] = {}
    n = len(data)
    p = 0
    d = data
    while p + 4 <= n:
        start = p
        length = _U32(d, p)[0]
        p += 4
        if length == 0:
            if is_eh:
                break  # terminator
            continue
        if length == 0xFFFFFFFF:
            if p + 8 > n:
                break
            length = _U64(d, p)[0]
            p += 8
            id_size = 8
        else:
            id_size = 4
        end = p + length
        if end > n or length < id_size:
            bad += 1
            break
        id_pos = p
        cie_id = _U64(d, p)[0] if id_size == 8 else _U32(d, p)[0]
        p += id_size
        is_cie = (cie_id == 0) if is_eh else (cie_id == (0xFFFFFFFFFFFFFFFF if id_size == 8 else 0xFFFFFFFF))
        try:
            if is_cie:
                cie = _parse_cie(d, p, end, is_eh)
                cies[start] = cie
            else:
                cie_off = id_pos - cie_id if is_eh else cie_id
                cie = cies.get(cie_off)
                if cie is None:
                    cie = _cie_at(d, cie_off, is_eh, cies)
                if cie is None or cie is False:
                    raise CfiError('no CIE')
                enc = cie.fde_enc
                pc_begin, p = _read_encoded(d, p, enc, section_vaddr + p, datarel)
                pc_range, p = _read_encoded(d, p, enc & 0x0F, 0)
                if cie.has_z:
                    alen, p = _uleb(d, p)
                    p += alen
                if p > end or pc_range > (1 << 32):
                    raise CfiError('bad FDE')
                if pc_range:
                    if cie.ok is True:
                        init_rows: List[Tuple[int, Rule]] = []
                        cie.ok = _run(cie.init, cie, 0, 0, init_rows, None, enc, 0)
                    rows: List[Tuple[int, Rule]] = []
                    _run(d[p:end], cie, pc_begin, pc_begin + pc_range, rows, cie.ok, enc, section_vaddr + p)
                    pc_end = pc_begin + pc_range
                    rows = [r for r in rows if r[0] < pc_end] or [(pc_begin, rows[0][1] if rows else NO_CFI)]
                    out.append((pc_begin, pc_end, rows))
        except (CfiError, IndexError, ValueError, struct.error, OverflowError):
            bad += 1
            if is_cie:
                cies[start] = False
        p = end
    return out, bad


def _cie_at(d: bytes, off: int, is_eh: bool, cies: Dict[int, Any]) -> Any:
    """A CIE that appears after its FDE (allowed in .debug_frame)."""
    if off in cies:
        return cies[off]
    try:
        if off < 0 or off + 4 > len(d):
            return None
        length = _U32(d, off)[0]
        p = off + 4
        id_size = 4
        if length == 0xFFFFFFFF:
            length = _U64(d, p)[0]
            p += 8
            id_size = 8
        end = p + length
        if end > len(d):
            return None
        cie = _parse_cie(d, p + id_size, end, is_eh)
    except (CfiError, IndexError, ValueError, struct.error):
        cie = False
    cies[off] = cie
    return cie


def merge_fdes(groups: Sequence[List[Tuple[int, int, List[Tuple[int, Rule]]]]], source: str = '',
               bad: int = 0) -> CfiTable:
    """One sorted table from FDE lists in priority order (an earlier group wins overlaps)."""
    allf = []
    for prio, group in enumerate(groups):
        for pc_begin, pc_end, rows in group:
            allf.append((pc_begin, prio, pc_end, rows))
    allf.sort(key=lambda x: (x[0], x[1]))
    starts = array('Q')
    idx: List[int] = []
    rules: List[Rule] = [NO_CFI]
    rule_ids: Dict[Rule, int] = {NO_CFI: 0}
    covered_end = 0
    last_rule = -1
    n = len(allf)
    for k in range(n):
        pc_begin, prio, pc_end, rows = allf[k]
        if pc_begin < covered_end:
            continue  # overlaps an FDE already placed (same or higher priority)
        limit = pc_end
        # the next FDE that starts inside this one cuts it (only if it has higher priority)
        j = k + 1
        while j < n and allf[j][0] < pc_end:
            if allf[j][1] < prio:
                limit = allf[j][0]
                break
            j += 1
        for loc, rule in rows:
            if loc >= limit:
                break
            if loc < pc_begin:
                continue
            rid = rule_ids.get(rule)
            if rid is None:
                rid = rule_ids[rule] = len(rules)
                rules.append(rule)
            if starts and starts[-1] == loc:
                idx[-1] = rid
                continue
            if rid == last_rule:
                continue
            starts.append(loc)
            idx.append(rid)
            last_rule = rid
        covered_end = limit
        nxt = allf[j][0] if j < n else None
        if nxt is None or nxt > limit:
            # a gap after this FDE
            if starts and starts[-1] == limit:
                idx[-1] = 0
            else:
                starts.append(limit)
                idx.append(0)
            last_rule = 0
    rule_idx = array('H' if len(rules) < 65536 else 'I', idx)
    return CfiTable(starts, rule_idx, rules, source, len(allf), bad)


class LazyCfiTable:
    """A table over ``.eh_frame_hdr``'s binary-search table that decodes an FDE the first time
    one of its addresses is looked up (used for big ``.eh_frame`` sections, see ``LAZY_MIN_BYTES``).

    A compiled table costs ~1 µs of Python per CFA instruction (python3.11: 150 ms, a
    libLLVM-sized library: seconds) and the unwinder runs on the sampler thread, whose ring
    buffer must keep being read; this one costs one C-speed array copy of the search table
    (8 bytes per FDE) and ~30 µs per FDE actually used. It keeps the file mapped (``mmap``,
    page cache: only the FDEs read become resident)."""

    __slots__ = ('_buf', '_sv0', '_lo', '_hi', '_hdr', '_locs', '_ptrs', '_cies', '_decoded', 'nbytes', 'source',
                 'fdes', 'bad_fdes', '__weakref__')

    MAX_DECODED = 8192

    def __init__(self, buf: Any, section_vaddr0: int, eh_lo: int, eh_hi: int, hdr_vaddr: int, locs: array,
                 ptrs: array) -> None:
        self._buf = buf  # whole file (mmap) or image; position p has vaddr section_vaddr0 + p
        self._sv0 = section_vaddr0
        self._lo, self._hi = eh_lo, eh_hi  # positions of .eh_frame in buf
        self._hdr = hdr_vaddr
        self._locs = locs
        self._ptrs = ptrs
        self._cies: Dict[int, Any] = {}
        self._decoded: Dict[int, Any] = {}
        self.source = 'eh_frame_hdr(lazy)'
        self.fdes = len(locs)
        self.bad_fdes = 0
        self.nbytes = 4096 + 8 * len(locs)

    def __len__(self) -> int:
        return len(self._locs)

    def lookup(self, vaddr: int) -> Optional[Rule]:
        rel = vaddr - self._hdr
        if not -0x80000000 <= rel < 0x80000000:
            return None
        i = bisect_right(self._locs, rel) - 1
        if i < 0:
            return None
        ent = self._decoded.get(i)
        if ent is None:
            ent = self._decode(i)
            if len(self._decoded) >= self.MAX_DECODED:
                self._decoded.clear()
                self.nbytes = 4096 + 8 * len(self._locs)
            self._decoded[i] = ent
            self.nbytes += 64 + (24 * len(ent[2]) if ent else 0)
        if not ent:
            return None
        pc_begin, pc_end, starts, rules = ent
        if not pc_begin <= vaddr < pc_end:
            return None
        j = bisect_right(starts, vaddr) - 1
        if j < 0:
            return None
        rule = rules[j]
        return None if rule[0] == CFA_NONE else rule

    def _decode(self, i: int) -> Any:
        d = self._buf
        pos = self._hdr + self._ptrs[i] - self._sv0
        try:
            if not self._lo <= pos < self._hi:
                raise CfiError('FDE outside .eh_frame')
            length = _U32(d, pos)[0]
            p = pos + 4
            id_size = 4
            if length == 0xFFFFFFFF:
                length = _U64(d, p)[0]
                p += 8
                id_size = 8
            end = p + length
            if end > self._hi or length < id_size:
                raise CfiError('bad FDE length')
            id_pos = p
            cie_id = _U64(d, p)[0] if id_size == 8 else _U32(d, p)[0]
            p += id_size
            if cie_id == 0:
                raise CfiError('a CIE where an FDE was expected')
            cie = _cie_at(d, id_pos - cie_id, True, self._cies)
            if not cie:
                raise CfiError('no CIE')
            enc = cie.fde_enc
            pc_begin, p = _read_encoded(d, p, enc, self._sv0 + p, self._hdr)
            pc_range, p = _read_encoded(d, p, enc & 0x0F, 0)
            if cie.has_z:
                alen, p = _uleb(d, p)
                p += alen
            if p > end or not 0 < pc_range <= (1 << 32):
                raise CfiError('bad FDE')
            if cie.ok is True:
                cie.ok = _run(cie.init, cie, 0, 0, [], None, enc, 0)
            rows: List[Tuple[int, Rule]] = []
            _run(d[p:end], cie, pc_begin, pc_begin + pc_range, rows, cie.ok, enc, self._sv0 + p)
            pc_end = pc_begin + pc_range
            rows = [r for r in rows if r[0] < pc_end] or [(pc_begin, NO_CFI)]
            return (pc_begin, pc_end, [r[0] for r in rows], [r[1] for r in rows])
        except (CfiError, IndexError, ValueError, struct.error, OverflowError):
            self.bad_fdes += 1
            return False


LAZY_MIN_BYTES = 256 << 10  # .eh_frame sections at least this big get a LazyCfiTable


def lazy_table(buf: Any, info: 'ElfSections') -> Optional[LazyCfiTable]:
    """A LazyCfiTable from the ELF's .eh_frame_hdr search table, or None when it has none
    usable (then the table is compiled)."""
    hdr = info.sections.get('.eh_frame_hdr')
    if hdr is not None:
        _, hvaddr, hoff, hsize = hdr
    elif info.eh_frame_hdr_seg is not None:
        hvaddr, hoff, hsize = info.eh_frame_hdr_seg
    else:
        return None
    try:
        if hoff + 12 > len(buf) or buf[hoff] != 1:
            return None
        ptr_enc, count_enc, table_enc = buf[hoff + 1], buf[hoff + 2], buf[hoff + 3]
        if table_enc != 0x3B or ptr_enc == 0xFF or count_enc == 0xFF:  # datarel|sdata4 only
            return None
        eh_vaddr, p = _read_encoded(buf, hoff + 4, ptr_enc, hvaddr + 4, hvaddr)
        count, p = _read_encoded(buf, p, count_enc, hvaddr + (p - hoff), hvaddr)
        if count <= 0 or p + 8 * count > len(buf) or p + 8 * count > hoff + max(hsize, 12):
            return None
        flat = array('i')
        flat.frombytes(bytes(buf[p:p + 8 * count]))
        if sys.byteorder != 'little':
            flat.byteswap()
        locs, ptrs = flat[0::2], flat[1::2]
        # .eh_frame's position in the file: its section, else the PT_LOAD that holds it
        eh = info.sections.get('.eh_frame')
        if eh is not None and eh[1] == eh_vaddr and eh[0] != 8:
            lo, hi = eh[2], eh[2] + eh[3]
        else:
            for lv, loff, lsz, _ in info.loads:
                if lv <= eh_vaddr < lv + lsz:
                    lo, hi = eh_vaddr - lv + loff, loff + lsz
                    break
            else:
                return None
        hi = min(hi, len(buf))
        return LazyCfiTable(buf, eh_vaddr - lo, lo, hi, hvaddr, locs, ptrs)
    except (CfiError, IndexError, ValueError, struct.error, OverflowError):
        return None


# ------------------------------------------------------------------------- ELF input
class ElfSections:
    """The few ELF facts CFI compilation needs, read with ``struct`` (64-bit little endian)."""

    __slots__ = ('sections', 'loads', 'eh_frame_hdr_seg', 'build_id', 'elf_type')

    def __init__(self) -> None:
        self.sections: Dict[str, Tuple[int, int, int, int]] = {}  # name -> (type, addr, offset, size)
        self.loads: List[Tuple[int, int, int, int]] = []  # (vaddr, offset, filesz, flags)
        self.eh_frame_hdr_seg: Optional[Tuple[int, int, int]] = None  # (vaddr, offset, filesz)
        self.build_id = ''
        self.elf_type = 0


def read_elf_sections(buf: Any) -> ElfSections:
    """Parse the ELF header, program headers and section headers of ``buf`` (bytes/mmap)."""
    size = len(buf)
    if size < 64 or bytes(buf[:4]) != b'\x7fELF':
        raise CfiError('not an ELF file')
    if buf[4] != 2 or buf[5] != 1:
        raise CfiError('not ELF64 little endian')
    info = ElfSections()
    (info.elf_type, machine, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum,
     shstrndx) = struct.unpack_from('<HHIQQQIHHHHHH', buf, 16)
    if machine != 62:  # EM_X86_64
        raise CfiError('not x86-64')
    notes: List[Tuple[int, int]] = []
    if phoff and phnum and phentsize >= 56 and phoff + phnum * phentsize <= size:
        for i in range(min(phnum, 4096)):
            o = phoff + i * phentsize
            p_type, p_flags, p_offset, p_vaddr, _, p_filesz, _, _ = struct.unpack_from('<IIQQQQQQ', buf, o)
            if p_type == 1:
                info.loads.append((p_vaddr, p_offset, p_filesz, p_flags))
            elif p_type == 0x6474E550:  # PT_GNU_EH_FRAME
                info.eh_frame_hdr_seg = (p_vaddr, p_offset, p_filesz)
            elif p_type == 4:
                notes.append((p_offset, p_filesz))
    if shoff and shnum and shentsize >= 64 and shoff + shnum * shentsize <= size:
        if shnum > MAX_SECTIONS:
            raise TooManySections('{} section headers (at most {} are read)'.format(shnum, MAX_SECTIONS))
        hdrs = []
        for i in range(shnum):
            o = shoff + i * shentsize
            name, stype, _, addr, off, ssize = struct.unpack_from('<IIQQQQ', buf, o)
            hdrs.append((name, stype, addr, off, ssize))
        if shstrndx < len(hdrs):
            _, _, _, stroff, strsize = hdrs[shstrndx]
            if stroff + strsize <= size:
                strtab = bytes(buf[stroff:stroff + strsize])
                for name, stype, addr, off, ssize in hdrs:
                    end = strtab.find(b'\0', name)
                    if end < 0:
                        continue
                    nm = strtab[name:end].decode('latin-1')
                    info.sections.setdefault(nm, (stype, addr, off, ssize))
                    if nm == '.note.gnu.build-id':
                        notes.insert(0, (off, ssize))
    for off, sz in notes:
        if info.build_id:
            break
        if off + sz > size or sz > 1 << 16:
            continue
        q = off
        while q + 12 <= off + sz:
            namesz, descsz, ntype = struct.unpack_from('<III', buf, q)
            q += 12
            nstart = q
            q += (namesz + 3) & ~3
            dstart = q
            q += (descsz + 3) & ~3
            if q > off + sz:
                break
            if ntype == 3 and bytes(buf[nstart:nstart + namesz]).rstrip(b'\0') == b'GNU':
                info.build_id = bytes(buf[dstart:dstart + descsz]).hex()
                break
    return info


def _section_bytes(buf: Any, sec: Tuple[int, int, int, int]) -> Optional[bytes]:
    stype, addr, off, size = sec
    if stype == 8 or size == 0 or size > MAX_SECTION or off + size > len(buf):  # SHT_NOBITS
        return None
    return bytes(buf[off:off + size])


def _eh_frame_from_hdr(buf: Any, info: ElfSections) -> Optional[Tuple[bytes, int]]:
    """Locate .eh_frame through PT_GNU_EH_FRAME (files without section headers)."""
    if info.eh_frame_hdr_seg is None:
        return None
    vaddr, off, filesz = info.eh_frame_hdr_seg
    if off + 4 > len(buf):
        return None
    version, ptr_enc = buf[off], buf[off + 1]
    if version != 1:
        return None
    eh_vaddr, _ = _read_encoded(buf, off + 4, ptr_enc, vaddr + 4, vaddr)
    # the file offset of that vaddr, through the PT_LOAD that holds it
    for lv, lo, lsz, _ in info.loads:
        if lv <= eh_vaddr < lv + lsz:
            start = eh_vaddr - lv + lo
            end = min(lo + lsz, start + MAX_SECTION, len(buf))
            return bytes(buf[start:end]), eh_vaddr
    return None


def compile_cfi(buf: Any, info: Optional[ElfSections] = None) -> CfiTable:
    """The CFI table of the ELF image ``buf`` (bytes or mmap). Raises CfiError (only) on a file
    that is not x86-64 ELF64 or whose headers are corrupted; malformed CFI only skips FDEs."""
    try:
        return _compile_cfi(buf, info)
    except CfiError:
        raise
    except (IndexError, ValueError, struct.error, OverflowError, MemoryError) as e:
        raise CfiError('malformed ELF: {}'.format(e))


def _compile_cfi(buf: Any, info: Optional[ElfSections]) -> CfiTable:
    if info is None:
        info = read_elf_sections(buf)
    groups = []
    bad = 0
    sources = []
    eh = info.sections.get('.eh_frame')
    data = _section_bytes(buf, eh) if eh else None
    vaddr = eh[1] if eh else 0
    if data is None:
        found = _eh_frame_from_hdr(buf, info)
        if found is not None:
            data, vaddr = found
    if data is not None:
        hdr = info.sections.get('.eh_frame_hdr')
        fdes, b = parse_frame_section(data, vaddr, True, hdr[1] if hdr else 0)
        groups.append(fdes)
        bad += b
        sources.append('eh_frame')
    dbg = info.sections.get('.debug_frame')
    ddata = _section_bytes(buf, dbg) if dbg else None
    if ddata is not None:
        fdes, b = parse_frame_section(ddata, 0, False)
        groups.append(fdes)
        bad += b
        sources.append('debug_frame')
    if not groups:
        return CfiTable(array('Q'), array('H'), [NO_CFI], 'none')
    return merge_fdes(groups, '+'.join(sources), bad)


def build_cfi_table(path: str = '', stream: Optional[BinaryIO] = None, data: Optional[bytes] = None,
                    lazy: bool = True) -> Tuple[Any, ElfSections]:
    """The CFI table of a file (``path`` or an open binary ``stream``) or an in-memory image:
    compiled (``CfiTable``), or a ``LazyCfiTable`` for a big ``.eh_frame`` with a usable
    ``.eh_frame_hdr`` when ``lazy`` (not for in-memory images)."""
    if data is not None:
        try:
            info = read_elf_sections(data)
        except (IndexError, ValueError, struct.error, OverflowError) as e:
            if isinstance(e, CfiError):
                raise
            raise CfiError('malformed ELF: {}'.format(e))
        return compile_cfi(data, info), info
    own = stream is None
    f = open(path, 'rb') if own else stream
    try:
        size = os.fstat(f.fileno()).st_size
        if size < 64:
            raise CfiError('file too small')
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        keep = False
        try:
            try:
                info = read_elf_sections(m)
            except (IndexError, ValueError, struct.error, OverflowError) as e:
                if isinstance(e, CfiError):
                    raise
                raise CfiError('malformed ELF: {}'.format(e))
            eh = info.sections.get('.eh_frame')
            big = eh[3] if eh else (info.eh_frame_hdr_seg[2] * 8 if info.eh_frame_hdr_seg else 0)
            if lazy and big >= LAZY_MIN_BYTES and '.debug_frame' not in info.sections:
                table = lazy_table(m, info)
                if table is not None:
                    keep = True  # the table reads FDEs from the mapping
                    return table, info
            return compile_cfi(m, info), info
        finally:
            if not keep:
                m.close()
    finally:
        if own:
            f.close()
