# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Native function names as people read them: no ELF symbol versions, demangled C++ and Rust.

``clean_name(raw, mode)`` is applied once per symbol looked up (``SymbolTable.name_at``
caches the result with the table, so a name is never demangled per sample).

* Symbol versions: ``__libc_start_main@@GLIBC_2.34`` -> ``__libc_start_main`` (every mode).
* Rust (legacy ``_ZN...17h<16 hex>E`` and v0 ``_R...``): demangled without the legacy hash
  and the v0 crate disambiguators, in every mode but ``none``. Rust generics are kept: the
  C++ modes below apply to C++ names only.
* C++ (Itanium ``_Z...``), ``receiver.symbolizer.demangle`` (Grafana's modes):
  ``full``       the whole name, as gdb and perf print it (and c++filt, but for its spelled-out
                 ``std::string``/iostream typedefs): ``ns::Foo<int>::bar(std::vector<int, ...> const&) const``
  ``templates``  no parameter list (nor return type): ``ns::Foo<int>::bar``
  ``simplified`` no parameter list, no template arguments: ``ns::Foo::bar`` (default)
  ``none``       the mangled name.

The demangler is GNU libiberty's ``cplus_demangle`` (C++, Rust legacy and Rust v0; what
``c++filt``, gdb and perf use), which binutils ships inside ``libbfd``: binutils is
installed by scripts/setup.sh. Why not a PyPI package: ``cxxfilt`` wraps libstdc++'s
``__cxa_demangle`` (no Rust, no way to drop parameters), ``cpp_demangle`` has neither Rust
nor options, and ``rust-demangler`` (pure Python, one release) failed 22 of 592 real v0
symbols of a rustc 1.95 binary (``dyn for<'a>`` binders, ``extern "C"`` ABIs). Without
libbfd, C++ names come from libstdc++'s ``__cxa_demangle`` (full names only, parameter
lists dropped by ``_strip_params``), Rust legacy hashes are cut by pattern, v0 names stay
mangled; a warning says to install binutils.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import logging
import re
import sysconfig
import threading
from typing import Any, Optional

LOG = logging.getLogger(__name__)

DEMANGLE_MODES = ('none', 'simplified', 'templates', 'full')
DEFAULT_DEMANGLE = 'simplified'
MAX_MANGLED = 4096  # longer names are left as they are (the demangler's cost grows with them)

# libiberty's demangle.h option bits
DMGL_PARAMS = 1 << 0
DMGL_ANSI = 1 << 1
DMGL_AUTO = 1 << 8

_VERSION_SUFFIX = re.compile(r'@@?[A-Za-z0-9_.]+$')
_RUST_LEGACY = re.compile(r'17h[0-9a-f]{16}E')  # the hash path element, last in the name
_RUST_HASH = re.compile(r'::h[0-9a-f]{16}$')
_OPERATOR_TAIL = re.compile(r'operator\s*$')


def normalize_mode(mode: Any) -> str:
    """``receiver.symbolizer.demangle`` (or a legacy bool: True -> default, False -> none)."""
    if mode is True or mode is None:
        return DEFAULT_DEMANGLE
    if mode is False:
        return 'none'
    m = str(mode).strip().lower()
    if m not in DEMANGLE_MODES:
        raise ValueError('receiver.symbolizer.demangle must be one of {}, not {!r}'.format(
            ', '.join(DEMANGLE_MODES), mode))
    return m


def strip_version(name: str) -> str:
    """``memcpy@@GLIBC_2.14`` -> ``memcpy``; ``@`` never occurs in mangled or C names."""
    at = name.find('@')
    if at <= 0:
        return name
    return _VERSION_SUFFIX.sub('', name) if _VERSION_SUFFIX.search(name, at) else name


# ------------------------------------------------------------------------------ libraries
_lock = threading.Lock()
_libiberty: Any = None  # None: not tried yet; False: unavailable
_cxa: Any = None


def _free_fn() -> Any:
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    free = libc.free
    free.argtypes = [ctypes.c_void_p]
    free.restype = None
    return free


def _libbfd_paths() -> list:
    # binutils ships libbfd-<version>-<flavour>.so without an unversioned link (that is in
    # binutils-dev), so find_library('bfd') finds nothing: look in the library directories.
    dirs = []
    multiarch = sysconfig.get_config_var('MULTIARCH')
    for base in ('/usr/lib', '/lib', '/usr/lib64', '/lib64'):
        if multiarch:
            dirs.append('{}/{}'.format(base, multiarch))
        dirs.append(base)
    named = ctypes.util.find_library('bfd')
    found = [named] if named else []
    for d in dirs:
        found.extend(sorted(glob.glob(d + '/libbfd-*.so'), reverse=True))
    return found


def _load_libiberty() -> Any:
    global _libiberty
    with _lock:
        if _libiberty is None:
            _libiberty = False
            for path in _libbfd_paths():
                try:
                    fn = ctypes.CDLL(path).cplus_demangle
                except (OSError, AttributeError):
                    continue
                fn.restype = ctypes.c_void_p
                fn.argtypes = [ctypes.c_char_p, ctypes.c_int]
                _libiberty = (fn, _free_fn())
                break
            if not _libiberty:
                LOG.warning('GNU libiberty (libbfd, from binutils) not found: Rust v0 names stay mangled and '
                            'C++ names fall back to libstdc++. Install binutils (apt-get install binutils).')
        return _libiberty


def _load_cxa() -> Any:
    global _cxa
    with _lock:
        if _cxa is None:
            try:
                lib = ctypes.CDLL(ctypes.util.find_library('stdc++') or 'libstdc++.so.6')
                fn = lib.__cxa_demangle
                fn.restype = ctypes.c_void_p
                fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
                _cxa = (fn, _free_fn())
            except (OSError, AttributeError):
                _cxa = False
        return _cxa


def libiberty_available() -> bool:
    return bool(_load_libiberty())


def _iberty(name: str, options: int) -> Optional[str]:
    lib = _load_libiberty()
    if not lib:
        return None
    fn, free = lib
    ptr = fn(name.encode('utf-8', 'replace'), options)
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode('utf-8', 'replace')
    finally:
        free(ptr)


def _cxa_demangle(name: str) -> Optional[str]:
    lib = _load_cxa()
    if not lib:
        return None
    fn, free = lib
    status = ctypes.c_int(0)
    ptr = fn(name.encode('utf-8', 'replace'), None, None, ctypes.byref(status))
    if not ptr or status.value != 0:
        return None
    try:
        return ctypes.string_at(ptr).decode('utf-8', 'replace')
    finally:
        free(ptr)


# ------------------------------------------------------------------------------- helpers
def _is_operator_bracket(s: str, i: int) -> bool:
    """Whether the ``<``/``>`` at ``i`` belongs to an operator's name (``operator<<``,
    ``operator->``, ``operator<=>``) rather than opening or closing template arguments."""
    j = i
    while j > 0 and s[j - 1] in '<>=-':
        j -= 1
    return bool(_OPERATOR_TAIL.search(s, 0, j)) and i - j < 3


def strip_template_args(s: str) -> str:
    """``ns::Foo<int>::bar<char>`` -> ``ns::Foo::bar``: every top-level ``<...>`` group goes,
    operator names stay. Unbalanced input is returned unchanged."""
    if '<' not in s:
        return s
    out = []
    depth = 0
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in '<>' and _is_operator_bracket(s, i):
            if depth == 0:
                out.append(c)
            i += 1
            continue
        if c == '<':
            depth += 1
        elif c == '>':
            if depth == 0:
                return s
            depth -= 1
        elif depth == 0:
            out.append(c)
        i += 1
    return ''.join(out) if depth == 0 else s


def _strip_params(s: str) -> str:
    """The libstdc++ fallback's full name without its parameter list and return type
    (libiberty drops them itself when asked)."""
    depth = 0
    end = len(s)
    # the parameter list is the last top-level (...) group (what follows is cv/ref qualifiers
    # or a clone suffix)
    for i in range(len(s) - 1, -1, -1):
        c = s[i]
        if c in ')>':
            if depth == 0 and c == ')':
                end = i
            depth += 1
        elif c in '(<':
            depth -= 1
            if depth == 0 and c == '(' and end != len(s):
                s = s[:i]
                break
    # a return type is separated from the name by a top-level space
    depth = 0
    for i, c in enumerate(s):
        if c in '(<':
            depth += 1
        elif c in ')>':
            depth -= 1
        elif c == ' ' and depth == 0 and not _OPERATOR_TAIL.search(s, 0, i):
            return s[i + 1:]
    return s


# ---------------------------------------------------------------------------------- entry
def clean_name(raw: str, mode: str = DEFAULT_DEMANGLE) -> str:
    """The name to show for symbol ``raw`` in demangle ``mode`` (see the module doc).
    Never raises: a name no demangler understands is returned without its version suffix."""
    name = strip_version(raw)
    if mode == 'none' or len(name) > MAX_MANGLED or not name.startswith(('_Z', '_R')):
        return name
    try:
        if name.startswith('_R'):
            return _iberty(name, DMGL_PARAMS | DMGL_ANSI | DMGL_AUTO) or name
        if _RUST_LEGACY.search(name, len(name) - 21 if len(name) > 21 else 0):
            out = _iberty(name, DMGL_PARAMS | DMGL_ANSI | DMGL_AUTO)
            if out is None:
                out = _cxa_demangle(name)
                out = _RUST_HASH.sub('', out) if out else None
            return out or name
        if libiberty_available():
            out = _iberty(name, DMGL_ANSI | DMGL_AUTO | (DMGL_PARAMS if mode == 'full' else 0))
        else:
            out = _cxa_demangle(name)
            if out and mode != 'full':
                out = _strip_params(out)
        if not out:
            return name
        if mode == 'simplified':
            out = strip_template_args(out).rstrip()  # 'operator<< <char>' -> 'operator<<'
        return out
    except Exception:  # noqa: BLE001 - a name must never break symbolization
        return name
