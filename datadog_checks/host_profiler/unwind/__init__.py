# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Whole user stacks without frame pointers (``receiver.unwinding: auto | dwarf``).

The BPF program copies the user registers (ip, sp, bp) and the top of the user stack
(``stack_copy_size``) of each sample to user space (perf ``--call-graph dwarf`` / ddprof's
way); this package unwinds them with compiled per-binary CFI tables:

* ``cfi``: ``.eh_frame`` (+ ``.eh_frame_hdr``, ``.debug_frame``) → ``CfiTable`` (sorted rows,
  interned rules, ``array`` columns) or, for big sections, ``LazyCfiTable`` (FDEs decoded on
  first use through the ``.eh_frame_hdr`` search table). Hand-written parser: pyelftools is
  20-40x slower (see the module docstring). ``cfi_decoder`` holds the CIE/FDE/CFA decoding,
  ``cfi_table`` the tables and their ELF input (read with ``host.elf``); ``cfi`` re-exports both.
* ``unwinder``: ``unwind(regs, stack, stack_base_sp, find_table, max_frames)`` →
  ``(addresses leaf first, truncated)``; ``unwind_ex`` gives the result
  (complete/truncated/failed); ``Unwinder`` adds per-process table lookup and telemetry.
* ``tables``: ``CfiTables.finder(process)`` → ``find_table(address) -> (table, load_bias)``,
  tables cached per file identity in the byte cache shared with the symbolizer
  (``host.budget``), files opened with ``host.files.FileOpener.open_mapping``, the vDSO image
  from ``host.proc.vdso_image``, a per-drain compile budget.
* ``copies``: ring-buffer records → unwound, aggregated samples per map generation.
* ``snapshot``: ptrace register + stack snapshots of a live thread (tests, benchmarks).
"""
