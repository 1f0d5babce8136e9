# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""User-space unwinding of a copied user stack with compiled CFI tables (x86-64).

The BPF program hands over, per sample, the user registers ``(ip, sp, bp)`` and the bytes
of the user stack from ``sp`` up (``stack_copy_size``). ``unwind`` walks them:

* per frame, the CFI row of the pc (``pc - 1`` for return addresses, so a call at the very
  end of a function still maps to it) gives the CFA; the return address and the caller's
  rbp are read from the copied bytes. At a function's first instruction the row is
  ``CFA = rsp + 8`` — nothing special to do;
* no CFI for the pc (JIT code, hand-written asm without CFI, a file we could not read):
  that one frame is walked with frame pointers (``auto``: a frame-pointer binary calling a
  libc without them, or the reverse, mixes both in one stack). ``fp_fallback=False`` makes
  such a frame the end of the stack (``dwarf`` only);
* signal frames: the rows of a CIE with augmentation 'S' (glibc's ``__restore_rt``): the
  interrupted registers are read from the ``rt_sigframe`` the kernel pushed (``sp`` points
  at its ``struct ucontext``: ``uc_mcontext`` at +40, rbp/rsp/rip at +40+8*{10,15,16}); the
  interrupted pc is used as is (not ``pc - 1``);
* PLT stubs: the ``.plt`` CFA expression (``CFA_PLT``);
* gcc's stack realignment (``CFA = *(rbp - 8)``, rbp saved at ``rbp + 0``);
* the vDSO: the caller's ``find_table`` compiles the ``[vdso]`` image (see ``tables.py``);
* a read past the end of the copied bytes ends the walk as ``truncated`` (the copy was too
  short), never with a guessed frame.

Termination: at most ``max_frames`` steps; except across a signal frame, the stack
pointer must strictly increase at every step. The walk ends ``complete`` at an undefined
return address (``_start``, ``clone``: glibc marks them with ``DW_CFA_undefined rip``), a
zero return address or a zero frame pointer (frame-pointer fallback). It never raises on
garbage: an impossible step ends it as ``failed`` with the frames found so far.
"""
from __future__ import annotations

import struct
from bisect import bisect_right
from time import perf_counter
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .cfi import (
    BP_AT_BP, BP_AT_CFA, BP_SAME, BP_UNDEFINED, CFA_BP, CFA_DEREF_BP, CFA_NONE, CFA_PLT, CFA_SIGNAL, CFA_SP,
    RA_UNDEFINED, RA_UNSUPPORTED,
)

COMPLETE = 'complete'
TRUNCATED = 'truncated'
FAILED = 'failed'
RESULTS = (COMPLETE, TRUNCATED, FAILED)
DEFERRED = 'deferred'  # Unwinder.unwind_sample(may_defer=True): a table was not compiled yet, retry later

MAX_FRAMES = 127

# struct rt_sigframe (x86-64): after __restore_rt's return the stack pointer is at &uc.
# struct ucontext: uc_flags(8) uc_link(8) uc_stack(24) → uc_mcontext (struct sigcontext) at 40:
# r8..r15 (8 regs), rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip.
SIGFRAME_RBP = 40 + 8 * 10
SIGFRAME_RSP = 40 + 8 * 15
SIGFRAME_RIP = 40 + 8 * 16

_U64 = struct.Struct('<Q').unpack_from
_MASK = 0xFFFFFFFFFFFFFFFF
USER_MAX = 0x0000800000000000  # canonical user addresses on x86-64

FindTable = Callable[[int], Optional[Tuple[Any, int]]]


def unwind_ex(regs: Sequence[int], stack: bytes, stack_base_sp: int, find_table: FindTable,
              max_frames: int = MAX_FRAMES, fp_fallback: bool = True,
              rule_cache: Optional[Dict[int, Any]] = None, read: Callable[[Any, int], Tuple[int]] = _U64,
              ) -> Tuple[List[int], str]:
    """Unwind; returns ``(addresses leaf first, result)`` with result one of ``RESULTS``.

    ``rule_cache``: a dict kept by the caller across walks of one process (same mappings), pc ->
    rule, filled with the pcs whose table was found (a pc without one may get it at a later
    drain, see ``CfiTables.set_build_budget``). ``read(stack, offset)``: every stack word the
    walk reads goes through it (``WalkMemo`` records them)."""
    try:
        ip, sp, bp = int(regs[0]) & _MASK, int(regs[1]) & _MASK, int(regs[2]) & _MASK
        base = int(stack_base_sp)
        top = base + len(stack)
    except (TypeError, ValueError, IndexError):
        return [], FAILED
    if not ip:
        return [], FAILED
    out = [ip]
    if max_frames <= 1:
        return out, TRUNCATED
    exact_pc = True  # the leaf pc (and one interrupted by a signal) is not a return address
    # pc -> rule memos (recursion hits the same pcs): rules found in a table go to the caller's
    # cache kept across walks, pcs without a table (yet) to this walk's only
    cached = rule_cache if rule_cache is not None else {}
    lookups = {}
    for _ in range(max_frames * 2):  # signal frames add a step without a frame
        pc = ip if exact_pc else ip - 1
        rule = cached.get(pc, 0)
        if rule == 0:
            rule = lookups.get(pc, 0)
        if rule == 0:
            rule = None
            try:
                found = find_table(pc)
            except Exception:  # noqa: BLE001 - a resolver bug must not break the walk
                found = None
            if found is not None:
                table, bias = found
                if table is not None:
                    rule = table.lookup(pc - bias)
                cached[pc] = rule
            else:
                lookups[pc] = rule
        if rule is None:
            # ------------------------------------------------- frame-pointer fallback
            if not fp_fallback:
                return out, FAILED
            if bp == 0:
                return out, COMPLETE
            if bp < sp or bp < base or bp & 7:
                return out, FAILED
            if bp + 16 > top:
                return out, TRUNCATED
            o = bp - base
            ra = read(stack, o + 8)[0]
            nbp = read(stack, o)[0]
            nsp = bp + 16
        else:
            kind = rule[0]
            if kind == CFA_SP:
                cfa = sp + rule[1]
            elif kind == CFA_BP:
                cfa = bp + rule[1]
            elif kind >= CFA_PLT:
                cfa = sp + rule[1] + (8 if (ip & 15) >= kind - CFA_PLT else 0)
            elif kind == CFA_SIGNAL:
                if sp < base:
                    return out, FAILED
                if sp + SIGFRAME_RIP + 8 > top:
                    return out, TRUNCATED
                o = sp - base
                nip = read(stack, o + SIGFRAME_RIP)[0]
                nsp = read(stack, o + SIGFRAME_RSP)[0]
                bp = read(stack, o + SIGFRAME_RBP)[0]
                if not nip or nip >= USER_MAX:
                    return out, FAILED
                out.append(nip)
                if len(out) >= max_frames:
                    return out, TRUNCATED
                ip, sp = nip, nsp
                exact_pc = True
                continue
            elif kind == CFA_DEREF_BP:
                a = bp + rule[1]
                if a < base:
                    return out, FAILED
                if a + 8 > top:
                    return out, TRUNCATED
                cfa = read(stack, a - base)[0]
            else:  # CFA_UNSUPPORTED (CFA_NONE never reaches here: lookup returns None)
                return out, FAILED
            ra_off = rule[2]
            if ra_off == RA_UNDEFINED:
                return out, COMPLETE
            if ra_off == RA_UNSUPPORTED:
                return out, FAILED
            a = cfa + ra_off
            if a < base or a < sp:
                return out, FAILED
            if a + 8 > top:
                return out, TRUNCATED
            ra = read(stack, a - base)[0]
            bk = rule[3]
            if bk == BP_SAME:
                nbp = bp
            elif bk == BP_AT_CFA:
                a = cfa + rule[4]
                if a < base:
                    return out, FAILED
                if a + 8 > top:
                    return out, TRUNCATED
                nbp = read(stack, a - base)[0]
            elif bk == BP_AT_BP:
                a = bp + rule[4]
                if a < base:
                    return out, FAILED
                if a + 8 > top:
                    return out, TRUNCATED
                nbp = read(stack, a - base)[0]
            elif bk == BP_UNDEFINED:
                nbp = 0
            else:  # unsupported: unknown from here; only matters if a later frame needs it
                nbp = 0
            nsp = cfa
        if ra == 0:
            return out, COMPLETE
        if nsp <= sp or ra >= USER_MAX:
            return out, FAILED
        out.append(ra)
        if len(out) >= max_frames:
            return out, TRUNCATED
        ip, sp, bp = ra, nsp, nbp
        exact_pc = False
    return out, TRUNCATED


def unwind(regs: Sequence[int], stack: bytes, stack_base_sp: int, find_table: FindTable,
           max_frames: int = MAX_FRAMES, fp_fallback: bool = True) -> Tuple[List[int], bool]:
    """``(addresses leaf first, truncated)``; ``truncated`` is true whenever the walk did not
    reach the outermost frame (copy too short, depth limit, or an impossible step)."""
    addresses, result = unwind_ex(regs, stack, stack_base_sp, find_table, max_frames, fp_fallback)
    return addresses, result != COMPLETE


def frame_pointer_only(ip: int) -> None:
    """A ``find_table`` that never finds CFI: unwinding by frame pointers only (tests)."""
    return None


def table_finder(entries: Sequence[Tuple[int, int, Any, int]]) -> FindTable:
    """A ``find_table`` over static ``[(start, end, table, bias)]`` ranges (tests, tools)."""
    ents = sorted(entries)
    starts = [e[0] for e in ents]

    def find(addr: int) -> Optional[Tuple[Any, int]]:
        i = bisect_right(starts, addr) - 1
        if i >= 0 and addr < ents[i][1]:
            return ents[i][2], ents[i][3]
        return None

    return find


__all__ = ['Unwinder', 'unwind', 'unwind_ex', 'table_finder', 'COMPLETE', 'TRUNCATED', 'FAILED', 'RESULTS', 'MAX_FRAMES',
           'CFA_NONE']


class Unwinder:
    """Unwinds samples of live processes and reports telemetry.

    ``mode``: ``dwarf`` (CFI; a frame without CFI ends the stack) or ``auto`` (CFI, and frame
    pointers for frames without CFI). Telemetry: ``unwind.samples{result:...}``,
    ``unwind.frames``, ``unwind.duration`` (seconds spent unwinding, so that
    ``duration / samples`` is the per-sample cost) plus the table cache metrics of ``CfiTables``.
    """

    def __init__(self, telemetry: Any, memory_budget_bytes: int = 64 << 20, proc: str = '/proc',
                 mode: str = 'auto', max_frames: int = MAX_FRAMES, tables: Any = None, cache: Any = None) -> None:
        from .tables import CfiTables

        self.telemetry = telemetry
        self.mode = mode
        self.fp_fallback = mode != 'dwarf'
        self.max_frames = max_frames
        # cache: the host.budget.ByteLRU shared with the symbolizer (else one of memory_budget_bytes)
        self.tables = tables if tables is not None else CfiTables(telemetry, memory_budget_bytes, proc, cache=cache)
        for r in RESULTS:
            telemetry.declare('unwind.samples', ('result:' + r,))
        telemetry.declare('unwind.frames')
        telemetry.declare('unwind.duration')
        self._pending = {r: 0 for r in RESULTS}
        self._frames = 0
        self._seconds = 0.0

    def unwind_sample(self, process: Any, regs: Sequence[int], stack: bytes, stack_base_sp: int,
                      find_table: Optional[FindTable] = None, may_defer: bool = False) -> Tuple[List[int], bool, str]:
        """``(addresses leaf first, truncated, result)``. ``find_table`` may be passed when the
        caller unwinds many samples of one process (``tables.finder(process)``). With
        ``may_defer``, a walk that met a file whose table the build budget postponed (see
        ``CfiTables.set_build_budget``) returns result ``DEFERRED`` and counts nothing: the caller
        keeps the copy and retries at the next drain."""
        if find_table is not None:
            return self._walk(find_table, None, None, regs, stack, stack_base_sp, may_defer)
        w = self.walker(process)
        return self._walk(w.find_table, w.rules, w.memo, regs, stack, stack_base_sp, may_defer)

    def walker(self, process: Any) -> 'ProcessWalk':
        """The walk of one process's samples taken together: its tables, rules and walk memo are
        looked up once (see ``ProcessWalk``)."""
        try:
            find_table, rules, memo = self.tables.walk_state(process)
        except Exception:  # noqa: BLE001 - a malformed process object
            find_table, rules, memo = frame_pointer_only, None, None
        return ProcessWalk(self, find_table, rules, memo)

    def _walk(self, find_table: FindTable, rules: Optional[Dict[int, Any]], memo: Any, regs: Sequence[int],
              stack: bytes, stack_base_sp: int, may_defer: bool = False) -> Tuple[List[int], bool, str]:
        t0 = perf_counter()
        deferrals = getattr(self.tables, 'deferrals', 0)
        # the memo's words are offsets from sp: only copies that start at sp (all of the sampler's)
        if memo is not None and stack_base_sp != regs[1]:
            memo = None
        hit = memo.get(regs, stack) if memo is not None else None
        if hit is not None:
            addresses, result = list(hit[0]), hit[1]
        elif memo is not None and memo.enabled:
            offsets, read = memo.recorder()
            addresses, result = unwind_ex(regs, stack, stack_base_sp, find_table, self.max_frames, self.fp_fallback,
                                          rules, read)
            if getattr(self.tables, 'deferrals', 0) == deferrals:  # no table was missing
                memo.put(regs, stack, offsets, addresses, result)
        else:
            addresses, result = unwind_ex(regs, stack, stack_base_sp, find_table, self.max_frames, self.fp_fallback,
                                          rules)
        self._seconds += perf_counter() - t0
        if may_defer and result != COMPLETE and getattr(self.tables, 'deferrals', 0) != deferrals:
            return addresses, True, DEFERRED
        self._pending[result] += 1
        self._frames += len(addresses)
        return addresses, result != COMPLETE, result

    def flush(self) -> None:
        """Push the accumulated counts to telemetry (the sampler calls it once per drain)."""
        t = self.telemetry
        for r, n in self._pending.items():
            if n:
                t.count('unwind.samples', n, ('result:' + r,))
                self._pending[r] = 0
        if self._frames:
            t.count('unwind.frames', self._frames)
            self._frames = 0
        if self._seconds:
            t.count('unwind.duration', self._seconds)
            self._seconds = 0.0


class ProcessWalk:
    """``walk(regs, stack, stack_base_sp, may_defer) -> (addresses leaf first, truncated,
    retry_later)`` for the samples of one process (``Unwinder.walker``)."""

    __slots__ = ('unwinder', 'find_table', 'rules', 'memo')

    def __init__(self, unwinder: Unwinder, find_table: FindTable, rules: Optional[Dict[int, Any]], memo: Any) -> None:
        self.unwinder = unwinder
        self.find_table = find_table
        self.rules = rules
        self.memo = memo

    def __call__(self, regs: Sequence[int], stack: bytes, stack_base_sp: int,
                 may_defer: bool = False) -> Tuple[Sequence[int], bool, bool]:
        addresses, truncated, result = self.unwinder._walk(self.find_table, self.rules, self.memo, regs, stack,
                                                           stack_base_sp, may_defer)
        return addresses, truncated, result == DEFERRED
