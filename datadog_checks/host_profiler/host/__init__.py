# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The host layer, the bottom of the package: what the profiler reads from the host and from
the processes it profiles. It imports nothing else of the package.

``files``: the one opener for every file read on behalf of a profiled process, and the one
resolver from a process's file mapping to an opened file (``FileOpener.open_mapping``).
``elf``: the one ELF library (headers, sections, program headers, notes and build ids, symbol
lookups, debug links, compressed sections, LEB128), used by symbols, unwind, runtimes, uploader.
``budget``: the byte-budgeted LRU that the symbolizer and the CFI tables share under
``receiver.symbolizer.memory_budget_mb``.
``proc``: the boot id, the CPU lists, a mapping's device, the vDSO image (read once per boot),
special mapping names.
``kernel``: read-only probes of the kernel and privileges (``probe()`` for diagnostics and flare).
"""
