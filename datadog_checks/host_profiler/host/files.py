# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The one opener for files read on behalf of a profiled process.

The profiler runs as root and reads files that other users and containers control: perf
maps, the binaries and libraries a process maps, their debug files. Every such read goes
through ``FileOpener``, which applies these rules:

- **Inside the process's root.** A path is resolved under the process's root directory
  (``/proc/PID/root``) as the process itself would resolve it, and no symlink leaves that
  root: ``openat2(2)`` with ``RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`` (an absolute symlink
  starts again at the process's root, ``..`` stops there, ``/proc/*/root``-style magic links
  are refused). Where ``openat2`` is unavailable (kernels before 5.6, seccomp profiles that
  deny it), the same walk is done here one component at a time with ``O_NOFOLLOW``.
  A mapped file is opened through ``/proc/PID/map_files/START-END``: that magic link names
  the mapped inode itself, so it cannot lead anywhere else (and works for deleted files).
- **Regular files only, nothing opened before that is known.** The path is first opened
  ``O_PATH`` (no open side effect: a FIFO does not block, a device's driver is not called),
  ``fstat``-ed, and only a regular file is then opened ``O_RDONLY | O_NONBLOCK`` through
  ``/proc/self/fd``.
- **Sizes capped before reading**: perf maps, ELF files (binaries and debug files); the
  decompressed size of ``.gnu_debugdata`` and the ELF section count are capped by their
  readers with the limits below.
- **A perf map only if the process's user or root owns it**, as perf does (perf refuses
  ``/tmp/perf-PID.map`` owned by another user); reached through a symlink, the link must
  pass the same test, and a link not owned by root may only lead to a file of its owner.

Every refusal is counted in ``symbols.files.refused{reason:...}`` (once per file and
reason: a file retried on every sample is one refusal) and kept in a short list of recent
refusals (path, pid, reason) for the diagnostics file.

ctypes for ``openat2``: Python's ``os`` has no binding for it (os.open cannot pass
``struct open_how``), and no maintained PyPI package offers it without a compiled
extension; the call is one syscall with a three-word struct.
"""
from __future__ import annotations

import collections
import ctypes
import datetime
import errno
import os
import stat
import threading
from typing import Any, BinaryIO, Deque, Dict, FrozenSet, Iterable, List, Optional, Tuple

from .proc import DELETED_SUFFIX, maps_dev

# --- limits (one place for every reader's caps) -------------------------------------------
MAX_PERF_MAP_BYTES = 512 << 20
# Binaries and debug files: the biggest real ones (libLLVM with DWARF, CUDA fat binaries) are
# a few GiB; only headers and symbol sections are read, but a file claiming more is hostile.
MAX_ELF_BYTES = 8 << 30
# Section headers of one ELF: linked binaries and debug files have tens (a few hundred with
# unusual linker scripts); 65,535 headers cost ~0.1 s and ~30 MB to decode.
MAX_SECTIONS = 8192
MAX_DEBUGDATA_COMPRESSED = 16 << 20
# .gnu_debugdata is a mini ELF with .symtab (Fedora/RHEL: tens to hundreds of KiB)
MAX_DEBUGDATA_DECOMPRESSED = 64 << 20

REASONS = ('symlink_escape', 'magic_link', 'symlink', 'not_regular', 'too_large', 'foreign_owner',
           'too_many_sections', 'not_the_mapped_file')
MAX_RECENT = 32

# --- openat2 --------------------------------------------------------------------------------
SYS_OPENAT2 = 437  # the same number on every architecture (added after the syscall table unification)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
_O_PATH = getattr(os, 'O_PATH', 0o10000000)
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_MAX_SYMLINKS = 40  # the kernel's limit


class _OpenHow(ctypes.Structure):
    _fields_ = [('flags', ctypes.c_uint64), ('mode', ctypes.c_uint64), ('resolve', ctypes.c_uint64)]


_libc: Any = None
_openat2_available: Optional[bool] = None  # None: not tried yet


def _syscall() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    return _libc.syscall


def _openat2(dirfd: int, path: str, flags: int) -> int:
    how = _OpenHow(flags, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    fd = _syscall()(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(dirfd), ctypes.c_char_p(os.fsencode(path)),
                    ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def openat2_available() -> bool:
    """Whether openat2 works here (tried once); False means the component walk is used."""
    if _openat2_available is None:
        try:
            os.close(_resolve_in_root_fd(-100, '/', True))  # AT_FDCWD
        except OSError:
            pass
    return bool(_openat2_available)


def _walk(rootfd: int, path: str, nofollow: bool) -> int:
    """``openat2(RESOLVE_IN_ROOT)`` by hand: one component at a time under ``rootfd``, each
    opened ``O_PATH | O_NOFOLLOW``; symlinks are read and spliced in (absolute ones restart at
    the root), ``..`` never goes above the root. Magic links are only read as text, never
    followed by the kernel. Returns an ``O_PATH`` fd."""
    parts: Deque[str] = collections.deque(p for p in path.split('/') if p)
    dirs = [os.dup(rootfd)]
    links = 0
    try:
        if not parts:
            return os.dup(dirs[0])
        while parts:
            name = parts.popleft()
            if name == '.':
                continue
            if name == '..':
                if len(dirs) > 1:
                    os.close(dirs.pop())
                continue
            last = not parts
            fd = os.open(name, _O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirs[-1])
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode) and not (last and nofollow):
                os.close(fd)
                target = os.readlink(name, dir_fd=dirs[-1])
                links += 1
                if links > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                if target.startswith('/'):
                    while len(dirs) > 1:
                        os.close(dirs.pop())
                parts.extendleft(reversed([p for p in target.split('/') if p]))
                continue
            if last:
                return fd
            if not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            dirs.append(fd)
        return os.dup(dirs[-1])  # the path ended in '..' or '.'
    finally:
        for d in dirs:
            os.close(d)


def _resolve_in_root_fd(rootfd: int, path: str, nofollow: bool) -> int:
    global _openat2_available
    if _openat2_available is not False:
        flags = _O_PATH | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0)
        try:
            fd = _openat2(rootfd, path, flags)
            _openat2_available = True
            return fd
        except OSError as e:
            if e.errno not in (errno.ENOSYS, errno.EPERM) or _openat2_available:
                raise
            _openat2_available = False  # old kernel or a seccomp profile that denies it
    return _walk(rootfd, path, nofollow)


# --- refusals -------------------------------------------------------------------------------
class FileRefused(OSError):
    """A file the opener would not read (an OSError: callers treat it as unreadable)."""

    def __init__(self, reason: str, path: str) -> None:
        super().__init__(errno.EPERM, 'refused ({})'.format(reason), path)
        self.reason = reason


_lock = threading.Lock()
_recent: Deque[Dict[str, Any]] = collections.deque(maxlen=MAX_RECENT)
_counted: 'collections.OrderedDict[Any, None]' = collections.OrderedDict()


def declare_refusals(telemetry: Any) -> None:
    for reason in REASONS:
        telemetry.declare('symbols.files.refused', ('reason:' + reason,))


def record_refusal(telemetry: Any, reason: str, path: str, pid: int = 0, kind: str = '',
                   ident: Any = None) -> FileRefused:
    """Count a refusal (once per file and reason) and keep it for the diagnostics file.
    Returns the exception to raise."""
    key = (id(telemetry), reason, ident if ident is not None else (path, pid))
    with _lock:
        new = key not in _counted
        if new:
            _counted[key] = None
            if len(_counted) > 4096:
                _counted.popitem(last=False)
            _recent.append({'time': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                            'pid': int(pid or 0), 'path': path, 'kind': kind, 'reason': reason})
    if new and telemetry is not None:
        telemetry.count('symbols.files.refused', 1, ('reason:' + reason,))
    return FileRefused(reason, path)


def recent_refusals() -> List[Dict[str, Any]]:
    """The last refusals (oldest first): time, pid, path, kind, reason."""
    with _lock:
        return list(_recent)


# --- owners ---------------------------------------------------------------------------------
def process_owners(pid: int, proc: str = '/proc') -> FrozenSet[int]:
    """Users whose perf map is trusted for ``pid``: root, the owner of /proc/PID and the real
    and effective uids of /proc/PID/status."""
    owners = {0}
    base = '{}/{}'.format(proc, pid)
    try:
        owners.add(os.stat(base).st_uid)
    except OSError:
        pass
    try:
        with open(base + '/status', 'rb') as f:
            for line in f:
                if line.startswith(b'Uid:'):
                    owners.update(int(x) for x in line.split()[1:3])
                    break
    except (OSError, ValueError):
        pass
    return frozenset(owners)


def join_root(root: str, path: str) -> str:
    """``path`` (as the process sees it) prefixed with ``root``, for messages and cache keys."""
    if not root or root == '/':
        return path
    return root.rstrip('/') + '/' + path.lstrip('/')


def map_files_path(pid: int, start: int, end: int, proc: str = '/proc') -> str:
    """/proc/PID/map_files/START-END: names the inode mapped at [start, end) itself, whatever
    the process's namespaces, also when deleted or replaced."""
    return '{}/{}/map_files/{:x}-{:x}'.format(proc, pid, start, end)


# --- the opener -----------------------------------------------------------------------------
Opened = Tuple[BinaryIO, os.stat_result]
OpenedMapping = Tuple[BinaryIO, os.stat_result, str, bool]  # (file, fstat, path shown, through map_files)


class FileOpener:
    """Opens files on behalf of processes (see the module docstring). Thread-safe.

    Each ``open_*`` returns ``(binary file object, fstat result)`` of a regular file opened
    ``O_RDONLY | O_NONBLOCK | O_CLOEXEC``, raises ``FileRefused`` (counted) when a rule
    refuses it, or ``OSError`` when it cannot be opened at all (missing, process gone)."""

    def __init__(self, telemetry: Any = None, proc: str = '/proc') -> None:
        self.telemetry = telemetry
        self.proc = proc.rstrip('/') or '/proc'

    def refuse(self, reason: str, path: str, pid: int = 0, kind: str = '', ident: Any = None) -> FileRefused:
        return record_refusal(self.telemetry, reason, path, pid, kind, ident)

    def open_in_root(self, root: str, path: str, *, kind: str = 'elf', pid: int = 0,
                     max_bytes: int = MAX_ELF_BYTES, owners: Optional[Iterable[int]] = None) -> Opened:
        """Open ``path`` as the process whose root directory is ``root`` ('/proc/PID/root',
        '/' or any directory) sees it. ``owners``: when given, the file (and a symlink to
        it) must belong to one of these uids (perf maps)."""
        shown = join_root(root, path)
        rootfd = os.open(root or '/', _O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            owner_set = frozenset(owners) if owners is not None else None
            fd = self._resolve(rootfd, path, owner_set is not None, shown, pid, kind)
            try:
                st = os.fstat(fd)
                if owner_set is not None and stat.S_ISLNK(st.st_mode):
                    fd, st = self._through_link(rootfd, path, fd, st, owner_set, shown, pid, kind)
                return self._open_checked(fd, st, shown, pid, kind, max_bytes, owner_set)
            finally:
                os.close(fd)
        finally:
            os.close(rootfd)

    def open_mapped(self, pid: int, start: int, end: int, *, kind: str = 'elf',
                    max_bytes: int = MAX_ELF_BYTES) -> Opened:
        """Open the file mapped at [start, end) of ``pid`` through /proc/PID/map_files (the
        mapped inode itself, also when deleted or replaced)."""
        path = map_files_path(pid, start, end, self.proc)
        fd = os.open(path, _O_PATH | os.O_CLOEXEC)
        try:
            return self._open_checked(fd, os.fstat(fd), path, pid, kind, max_bytes, None)
        finally:
            os.close(fd)

    def open_mapping(self, pid: int, start: int, end: int, path: str, root: str = '', *, inode: int = 0,
                     dev: str = '', host_fallback: bool = False, verify: bool = False, kind: str = 'elf',
                     max_bytes: int = MAX_ELF_BYTES) -> Optional[OpenedMapping]:
        """The one resolver from a file mapping to an opened file: ``(file, fstat, path shown,
        through map_files)``, or None. The mapped inode first (/proc/PID/map_files: also when
        deleted or replaced; if it is refused, None: the path names the same file), else
        ``path`` (' (deleted)' stripped) inside the process's ``root`` (default
        /proc/PID/root: the process is gone), else with ``host_fallback`` the host's ``path``,
        only if it is the mapped file (``inode`` and ``dev`` as in /proc/PID/maps).

        ``verify`` (with ``inode``): the path inside the root must be the mapped file too, else
        it is refused (``not_the_mapped_file``, counted): a file swapped after it was mapped, or
        a path of another mount namespace than the process's, is never read in its place.
        ``max_bytes``: the size cap of every route (refused ``too_large``)."""
        try:
            f, st = self.open_mapped(pid, start, end, kind=kind, max_bytes=max_bytes)
            return f, st, map_files_path(pid, start, end, self.proc), True
        except FileRefused:
            return None
        except (OSError, ValueError):
            pass
        clean = path[: -len(DELETED_SUFFIX)] if path.endswith(DELETED_SUFFIX) else path
        root = root or '{}/{}/root'.format(self.proc, pid)
        try:
            f, st = self.open_in_root(root, clean, pid=pid, kind=kind, max_bytes=max_bytes)
        except FileRefused:
            if verify:
                return None
        except (OSError, ValueError):
            pass
        else:
            if not (verify and inode) or self._is_mapped_file(st, inode, dev):
                return f, st, join_root(root, clean), False
            f.close()
            self.refuse('not_the_mapped_file', join_root(root, clean), pid, kind, (st.st_dev, st.st_ino))
            return None
        if not (host_fallback and inode and root != '/'):
            return None
        try:
            f, st = self.open_host(clean, pid=pid, kind=kind, max_bytes=max_bytes)
        except (OSError, ValueError):
            return None
        if st.st_ino != inode or maps_dev(st.st_dev) != str(dev).lower():
            f.close()
            return None
        return f, st, clean, False

    @staticmethod
    def _is_mapped_file(st: os.stat_result, inode: int, dev: str) -> bool:
        """``st`` is the file mapped with ``inode`` and ``dev`` (as /proc/PID/maps shows them).
        The device is compared unless the file is on an anonymous device (major 0: overlayfs,
        FUSE, btrfs subvolumes), where maps shows the underlying file system's device."""
        if st.st_ino != int(inode):
            return False
        return not dev or os.major(st.st_dev) == 0 or maps_dev(st.st_dev) == str(dev).lower()

    def open_host(self, path: str, *, kind: str = 'elf', pid: int = 0, max_bytes: int = MAX_ELF_BYTES) -> Opened:
        """Open a path of this host (our own root): the same rules, with '/' as the root."""
        return self.open_in_root('/', path, kind=kind, pid=pid, max_bytes=max_bytes)

    # -- internals -----------------------------------------------------------------------
    def _resolve(self, rootfd: int, path: str, nofollow: bool, shown: str, pid: int, kind: str) -> int:
        try:
            return _resolve_in_root_fd(rootfd, path, nofollow)
        except OSError as e:
            if e.errno == errno.EXDEV:  # a rename raced the walk out of the root
                raise self.refuse('symlink_escape', shown, pid, kind)
            if e.errno == errno.ELOOP:  # a /proc magic link, or a symlink loop
                raise self.refuse('magic_link', shown, pid, kind)
            raise

    def _through_link(self, rootfd: int, path: str, linkfd: int, link_st: os.stat_result, owners: FrozenSet[int],
                      shown: str, pid: int, kind: str) -> Tuple[int, os.stat_result]:
        """A trusted file reached through a symlink: the link must belong to a trusted user,
        and a link not owned by root may only lead to a file of its own owner (else a user
        could name root's files as their process's perf map)."""
        if link_st.st_uid not in owners:
            raise self.refuse('foreign_owner', shown, pid, kind, (link_st.st_dev, link_st.st_ino))
        fd = self._resolve(rootfd, path, False, shown, pid, kind)
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        if link_st.st_uid != 0 and st.st_uid != link_st.st_uid and stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise self.refuse('symlink', shown, pid, kind, (st.st_dev, st.st_ino))
        os.close(linkfd)
        return fd, st

    def _open_checked(self, pathfd: int, st: os.stat_result, shown: str, pid: int, kind: str, max_bytes: int,
                      owners: Optional[FrozenSet[int]]) -> Opened:
        ident = (st.st_dev, st.st_ino)
        if not stat.S_ISREG(st.st_mode):
            raise self.refuse('not_regular', shown, pid, kind, ident)
        if st.st_size > max_bytes:
            raise self.refuse('too_large', shown, pid, kind, ident)
        if owners is not None and st.st_uid not in owners:
            raise self.refuse('foreign_owner', shown, pid, kind, ident)
        # Re-open the O_PATH fd for reading: the same inode, whatever the path has become since.
        fd = os.open('/proc/self/fd/{}'.format(pathfd), _OPEN_FLAGS)
        return os.fdopen(fd, 'rb'), st


_default: Dict[int, FileOpener] = {}


def opener_for(telemetry: Any = None) -> FileOpener:
    """A FileOpener counting into ``telemetry`` (shared per telemetry object)."""
    key = id(telemetry)
    op = _default.get(key)
    if op is None or op.telemetry is not telemetry:
        if len(_default) > 64:
            _default.clear()
        op = _default[key] = FileOpener(telemetry)
    return op
