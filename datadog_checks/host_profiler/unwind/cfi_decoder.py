# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The CFI decoder: CIEs, FDEs and CFA instructions of ``.eh_frame``/``.debug_frame`` to rows
of rules (see ``unwind/cfi.py`` for the rules, the formats and why this is hand-written).

``parse_frame_section(data, vaddr, is_eh)`` → ``([(pc_begin, pc_end, rows)], bad FDEs)``;
``_cie_at``/``_run``/``_read_encoded`` are also used by ``cfi_table.LazyCfiTable``, which decodes
one FDE at a time. LEB128 numbers come from ``host.elf`` (``read_uleb``/``read_sleb``).
"""
from __future__ import annotations

import struct
from typing import Any, Dict, List, Optional, Tuple

from ..host.elf import read_sleb as _sleb
from ..host.elf import read_uleb as _uleb

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
                except (IndexError, ValueError):
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
    except (IndexError, ValueError):
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


def record_extent(d: Any, pos: int) -> Tuple[int, int, int]:
    """``(position after the length, end, id size)`` of the CIE/FDE record at ``pos`` (a 32-bit
    length, or 0xffffffff and a 64-bit one: then the CIE id/pointer is 8 bytes too)."""
    length = _U32(d, pos)[0]
    if length == 0xFFFFFFFF:
        length = _U64(d, pos + 4)[0]
        return pos + 12, pos + 12 + length, 8
    return pos + 4, pos + 4 + length, 4


def _cie_at(d: bytes, off: int, is_eh: bool, cies: Dict[int, Any]) -> Any:
    """A CIE that appears after its FDE (allowed in .debug_frame)."""
    if off in cies:
        return cies[off]
    try:
        if off < 0 or off + 4 > len(d):
            return None
        p, end, id_size = record_extent(d, off)
        if end > len(d):
            return None
        cie = _parse_cie(d, p + id_size, end, is_eh)
    except (CfiError, IndexError, ValueError, struct.error):
        cie = False
    cies[off] = cie
    return cie
