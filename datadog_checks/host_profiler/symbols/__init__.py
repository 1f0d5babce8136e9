# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Symbolization: kallsyms, ELF .symtab/.dynsym, separate debug files, .gnu_debugdata,
Go pclntab, perf maps and the vDSO (see ``symbolizer.Symbolizer``)."""
from ..host.elf import ElfInfo, SymbolSource, read_elf_info, read_elf_info_bytes
from .symbolizer import Symbolizer

__all__ = ['ElfInfo', 'SymbolSource', 'Symbolizer', 'read_elf_info', 'read_elf_info_bytes']
