# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Kernel symbols from ``/proc/kallsyms``, modules included.

Lines are ``ADDR TYPE NAME [MODULE]``; text symbols (``t``/``T``/``w``/``W``) are kept.
A symbol ends where the next one starts. Module symbols keep their module: ``lookup``
returns ``(name, module)`` and the module's address range becomes the frame's mapping
(``[module]``); core kernel symbols map to ``[kernel.kallsyms]``.

Loaded once; ``maybe_refresh()`` re-reads when the list of loaded modules changed, which
it checks cheaply (a hash of ``/proc/modules`` names and addresses, at most every
``check_interval_s`` seconds).

Parsing the running kernel's ``/proc/kallsyms`` costs about 0.2 s of CPU (the kernel formats
~120k lines, then the parse), at every start. The parsed table is kept in
``/run/host_profiler/kallsyms.bin`` (tmpfs: gone at reboot) under the boot id, the kernel release
and the ``/proc/modules`` signature (modules load and unload within a boot), as ``host/btf.py``
keeps kernel offsets: a later start on the same boot with the same modules reads it back in a
few milliseconds. A cache file that is missing, foreign (another boot, kernel or module set, not
ours), truncated or malformed is ignored and the table is parsed from ``/proc/kallsyms`` (then
written again). BPF programs and other runtime text (``[bpf]``, trampolines) are those of the
read that made the file; a live table is no fresher, as it is only re-read when modules change.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from array import array
from itertools import accumulate
from typing import Any, Dict, List, Optional, Tuple

from ..host.kernel import kernel_release
from ..host.proc import boot_id
from .symtab import ZERO_SIZE_MAX_SPAN, SymbolTable

# ADDR TYPE NAME[\tMODULE] of a text symbol (t/T/w/W), not a `__pfx_` padding symbol
TEXT_LINE = re.compile(rb'^([0-9a-f]+) [tTwW] (?!__pfx_)(\S+)(?:\t\[([^\]\s]+)\])?$', re.M)
CORE = '[kernel.kallsyms]'
PROC_KALLSYMS = '/proc/kallsyms'
KALLSYMS_CACHE = '/run/host_profiler/kallsyms.bin'
CACHE_MAGIC = b'host_profiler kallsyms 1\n'


class Kallsyms:
    def __init__(self, path: str = '/proc/kallsyms', modules_path: str = '/proc/modules',
                 telemetry: Any = None, check_interval_s: float = 10.0,
                 cache_path: Optional[str] = 'auto') -> None:
        self.path = path
        # 'auto': only the running kernel's table is worth a file keyed by this boot; None: no file
        self.cache_path = (KALLSYMS_CACHE if path == PROC_KALLSYMS else None) if cache_path == 'auto' else cache_path
        self.from_cache = False  # the last load read the cache file
        self.modules_path = modules_path
        self.telemetry = telemetry
        self.check_interval_s = check_interval_s
        self._lock = threading.Lock()
        self.table: Optional[SymbolTable] = None
        self.module_of: array = array('H')  # per symbol: index into module_names (0 = core)
        self.module_names: List[str] = [CORE]
        self.module_ranges: Dict[str, Tuple[int, int]] = {}
        self.restricted = False  # every address read as 0 (kptr_restrict)
        self._modules_sig = b''
        self._last_check = 0.0
        self.loads = 0

    def _modules_signature(self) -> bytes:
        try:
            with open(self.modules_path, 'rb') as f:
                data = f.read()
        except OSError:
            return b''
        # name, size and address (fields 1, 2 and 6): ignores the ever-changing refcounts
        h = hashlib.sha1()
        for line in data.splitlines():
            parts = line.split()
            if parts:
                h.update(parts[0] + b' ' + (parts[1] if len(parts) > 1 else b'') + b' '
                         + (parts[5] if len(parts) > 5 else b'') + b'\n')
        return h.digest()

    def load(self) -> bool:
        sig = self._modules_signature()
        key = self._cache_key(sig) if self.cache_path else ''
        if key and self._read_cache(key):
            self.from_cache = True
        else:
            try:
                with open(self.path, 'rb') as f:
                    data = f.read()
            except OSError:
                return False
            self.parse(data)
            self.from_cache = False
            # written only if no module came or went during the read (the key would not match it)
            if (key and not self.restricted and self.table is not None and len(self.table)
                    and self._modules_signature() == sig):
                self._write_cache(key)
        self._modules_sig = sig
        self._last_check = time.monotonic()
        return True

    # ------------------------------------------------------------------- per-boot cache
    @staticmethod
    def _cache_key(modules_sig: bytes) -> str:
        return '{} {} {}'.format(boot_id(), kernel_release(), modules_sig.hex())

    def _read_cache(self, key: str) -> bool:
        """Install the table of the cache file if it was written for ``key``. Never raises."""
        try:
            with open(self.cache_path, 'rb') as f:
                st = os.fstat(f.fileno())
                if st.st_uid != os.geteuid():  # not ours: ignored
                    return False
                data = f.read()
            if not data.startswith(CACHE_MAGIC):
                return False
            eol = data.index(b'\n', len(CACHE_MAGIC))
            head = json.loads(data[len(CACHE_MAGIC):eol])
            if not isinstance(head, dict) or head.get('key') != key:
                return False
            pos = eol + 1
            cols = []
            for code, nbytes in head['columns']:
                if code not in ('Q', 'I', 'H') or nbytes < 0 or pos + nbytes > len(data):
                    return False
                col = array(code)
                col.frombytes(data[pos:pos + nbytes])
                cols.append(col)
                pos += nbytes
            names_len = int(head['names'])
            if pos + names_len != len(data):
                return False
            names = data[pos:pos + names_len]
            starts, ends, offs, module_of = cols
            n = len(starts)
            module_names = [str(m) for m in head['modules']]
            if (len(ends) != n or len(offs) != n or len(module_of) != n or not n
                    or module_names[:1] != [CORE] or max(module_of) >= len(module_names)
                    or max(offs) >= max(1, names_len)):
                return False
            ranges = {str(k): (int(v[0]), int(v[1])) for k, v in head['ranges'].items()}
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
            return False
        self.restricted = False
        self._install(SymbolTable(starts, ends, offs, names, 'kallsyms', demangle_names=False),
                      module_of, module_names, ranges)
        return True

    def _write_cache(self, key: str) -> None:
        """Write the table for the next start on this boot. Never raises (read-only /run, not
        root: parsed again at the next start)."""
        with self._lock:
            table, module_of = self.table, self.module_of
            head = {'key': key, 'modules': self.module_names,
                    'ranges': {k: list(v) for k, v in self.module_ranges.items()}}
        cols = (table.starts, table.ends, table.name_offs, module_of)
        head['columns'] = [(c.typecode, len(c) * c.itemsize) for c in cols]
        head['names'] = len(table.names)
        tmp = '{}.{}'.format(self.cache_path, os.getpid())
        try:
            os.makedirs(os.path.dirname(self.cache_path), mode=0o700, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, 'wb') as f:
                f.write(CACHE_MAGIC + json.dumps(head).encode() + b'\n')
                for c in cols:
                    f.write(c.tobytes())
                f.write(table.names)
            os.replace(tmp, self.cache_path)  # atomic: a concurrent reader sees the old file or the new one
        except (OSError, ValueError):
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def parse(self, data: bytes) -> None:
        # One regex pass in C over ~120k lines, then whole-column steps (map, sorted, join)
        # rather than a Python statement per symbol: this is on the start-up path. `__pfx_`
        # symbols are the padding the compiler puts before functions (call-depth tracking, CFI):
        # a sample never lands there, and dropping them halves the table.
        found = TEXT_LINE.findall(data)
        addrs = list(map(int, [f[0] for f in found], [16] * len(found)))
        if addrs and not min(addrs):  # kptr_restrict: every address reads 0
            keep = [i for i, a in enumerate(addrs) if a]
            found = [found[i] for i in keep]
            addrs = [addrs[i] for i in keep]
        self.restricted = not addrs and bool(data)
        # modules numbered in order of first appearance (0 = core)
        mod_keys = [f[2] for f in found]
        index = {b'': 0}
        mod_names = [CORE]
        for mod in dict.fromkeys(mod_keys):
            if mod not in index:
                index[mod] = len(mod_names)
                mod_names.append('[{}]'.format(mod.decode('utf-8', 'replace')))
        # by address, stable: on equal addresses the first line wins
        order = sorted(range(len(addrs)), key=addrs.__getitem__)
        prev = -1
        kept = []
        for i in order:
            a = addrs[i]
            if a != prev:
                kept.append(i)
                prev = a
        starts = array('Q', [addrs[i] for i in kept])
        names = [found[i][1] for i in kept]
        blob = b'\0'.join(names) + b'\0' if names else b''
        offs = array('Q' if len(blob) >= 1 << 32 else 'I', accumulate([0] + [len(n) + 1 for n in names[:-1]])) \
            if names else array('I')
        # a symbol ends where the next starts (at most ZERO_SIZE_MAX_SPAN on), the last 4 KiB on
        ends = array('Q', list(map(min, starts[1:], [a + ZERO_SIZE_MAX_SPAN for a in starts[:-1]]))
                     + ([min(starts[-1] + 4096, 0xFFFFFFFFFFFFFFFF)] if starts else []))
        module_of = array('H', [index[mod_keys[i]] for i in kept])
        first: Dict[int, int] = {}
        last: Dict[int, int] = {}
        for j, m in enumerate(module_of):
            if m not in first:
                first[m] = j
            last[m] = j
        ranges = {mod_names[m]: (starts[j], ends[last[m]]) for m, j in first.items()}
        self._install(SymbolTable(starts, ends, offs, blob, 'kallsyms', demangle_names=False),
                      module_of, mod_names, ranges)

    def _install(self, table: Any, module_of: Any, module_names: Any, ranges: Any) -> None:
        with self._lock:
            self.table = table
            self.module_of = module_of
            self.module_names = module_names
            self.module_ranges = ranges
            self.loads += 1

    def maybe_refresh(self, now: Optional[float] = None) -> bool:
        """Reload when never loaded or when the loaded modules changed. Returns True on reload."""
        now = time.monotonic() if now is None else now
        if self.table is None:
            return self.load()
        if now - self._last_check < self.check_interval_s:
            return False
        self._last_check = now
        sig = self._modules_signature()
        if sig != self._modules_sig:
            return self.load()
        return False

    def lookup(self, addr: int) -> Optional[Tuple[str, str]]:
        """(function, module) — module is ``[kernel.kallsyms]`` for the core kernel."""
        table = self.table
        if table is None:
            return None
        i = table.index(addr)
        if i < 0:
            return None
        return table.name_at(i), self.module_names[self.module_of[i]]

    @property
    def nbytes(self) -> int:
        t = self.table
        return (t.nbytes if t else 0) + len(self.module_of) * 2
