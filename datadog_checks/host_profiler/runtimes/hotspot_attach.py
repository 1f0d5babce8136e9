# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The HotSpot attach mechanism, to have a running JVM write its perf map (``Compiler.perfmap``,
JDK 17+), as ``jcmd PID Compiler.perfmap`` does.

Hand-written because the alternative, running ``jcmd``, starts a JVM per attach (about 0.5 s of
CPU), and no Python library speaks this protocol. Protocol version 1 (JDK 6 to 25, Linux):

1. A JVM whose attach listener runs listens on ``/tmp/.java_pid<nspid>`` in its own mount
   namespace. Otherwise the client creates ``.attach_pid<nspid>`` in the JVM's working directory
   (or its /tmp) and sends SIGQUIT: the JVM's signal thread finds the file and starts the listener
   instead of printing a thread dump.
2. The client connects and writes ``1\\0`` (the version), ``jcmd\\0`` (the operation) and three
   arguments: ``Compiler.perfmap\\0``, ``\\0``, ``\\0``.
3. The JVM answers a decimal status line (0: success) and the command's output, then closes.

Trust: the JVM only takes an attach file owned by its effective uid (or root) and a peer whose
SO_PEERCRED uid and gid are its effective ones (or root). Every file and socket operation here
runs as the JVM's effective uid and gid (on this thread only, see ``as_user``), through directory
descriptors opened before: a process cannot make the profiler create a file or connect to a socket
that its own user could not, and its ``/tmp`` is never followed if it is a symbolic link (which
would lead out of its root). Paths go through ``/proc/PID/root``, so a JVM in a container is
attached in its own mount namespace; ``nspid`` is its pid there (the JVM names files by it).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import signal
import socket
import stat
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

ATTACH_TIMEOUT_S = 5.0  # SIGQUIT -> listening socket (a busy JVM may take a while)
COMMAND_TIMEOUT_S = 10.0  # request -> reply (the JVM walks its whole code cache)
MAX_REPLY_BYTES = 64 << 10
SIGQUIT_BIT = 1 << (signal.SIGQUIT - 1)  # in /proc/PID/status SigCgt

# Failure reasons (the tag of jvm.attach.errors)
GONE = 'gone'  # the process exited (or its pid now names another process)
NO_SIGNAL_HANDLER = 'no_signal_handler'  # no listener and SIGQUIT not caught (not a JVM, or still starting)
ATTACH_DISABLED = 'attach_disabled'  # -XX:+DisableAttachMechanism (SIGQUIT would print a thread dump)
UNSAFE_PATH = 'unsafe_path'  # its /tmp is a symbolic link, or the socket or map is not what it should be
PERMISSION = 'permission'  # the profiler cannot act as the JVM's user (not root)
TIMEOUT = 'timeout'  # no listener after SIGQUIT, or no reply in time
REFUSED = 'refused'  # connect() failed (stale socket)
UNSUPPORTED = 'unsupported'  # the JVM has no Compiler.perfmap (JDK < 17)
COMMAND_FAILED = 'command_failed'
PROTOCOL = 'protocol'  # a reply that is not a status line
NO_MAP = 'no_map'  # success, yet no perf map where the JVM writes it
REASONS = (GONE, NO_SIGNAL_HANDLER, ATTACH_DISABLED, UNSAFE_PATH, PERMISSION, TIMEOUT, REFUSED, UNSUPPORTED,
           COMMAND_FAILED, PROTOCOL, NO_MAP)


class AttachError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class CredentialsError(RuntimeError):
    """This thread could not return to its own credentials: it must not be used again."""


@dataclass(frozen=True)
class JvmStatus:
    nspid: int
    euid: int
    egid: int
    catches_sigquit: bool
    start_time: int


@dataclass(frozen=True)
class PerfMapWritten:
    path: str  # as the profiler sees it: /proc/PID/root/tmp/perf-NSPID.map
    size: int
    ident: tuple  # (st_dev, st_ino): to know it again
    started_listener: bool  # this attach had to start the JVM's attach listener


def read_status(pid: int, proc: str = '/proc') -> Optional[JvmStatus]:
    """NSpid, effective uid/gid, SigCgt and start time of ``pid``; None when it is gone."""
    try:
        with open('{}/{}/status'.format(proc, pid), 'rb') as f:
            text = f.read()
        with open('{}/{}/stat'.format(proc, pid), 'rb') as f:
            stat_text = f.read()
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(b':')
        fields[key] = value.split()
    try:
        start = int(stat_text[stat_text.rindex(b')') + 2:].split()[19])
        return JvmStatus(nspid=int(fields[b'NSpid'][-1]), euid=int(fields[b'Uid'][1]), egid=int(fields[b'Gid'][1]),
                         catches_sigquit=bool(int(fields[b'SigCgt'][0], 16) & SIGQUIT_BIT), start_time=start)
    except (KeyError, IndexError, ValueError):
        return None


def attach_disabled(pid: int, proc: str = '/proc') -> bool:
    """-XX:+DisableAttachMechanism on the command line or in the JVM's option variables: SIGQUIT
    would then print a thread dump on the JVM's output instead of starting the listener."""
    flag = b'-XX:+DisableAttachMechanism'
    try:
        with open('{}/{}/cmdline'.format(proc, pid), 'rb') as f:
            if flag in f.read():
                return True
        with open('{}/{}/environ'.format(proc, pid), 'rb') as f:
            for item in f.read().split(b'\0'):
                name, _, value = item.partition(b'=')
                if name in (b'JAVA_TOOL_OPTIONS', b'JDK_JAVA_OPTIONS', b'_JAVA_OPTIONS') and flag in value:
                    return True
    except OSError:
        pass
    return False


# ------------------------------------------------------------------------- per-thread identity

# setresuid, setresgid, setgroups
_SYSCALL_NUMBERS = {'x86_64': (117, 119, 116), 'aarch64': (147, 149, 159)}
_libc = None
_libc_lock = threading.Lock()


def _syscall(nr: int, *args: object) -> None:
    global _libc
    with _libc_lock:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.syscall(ctypes.c_long(nr), *args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _set_thread_ids(uid: int, gid: int, groups: tuple) -> None:
    nrs = _SYSCALL_NUMBERS[platform.machine()]
    arr = (ctypes.c_uint * max(1, len(groups)))(*groups)
    _syscall(nrs[2], ctypes.c_long(len(groups)), arr)
    _syscall(nrs[1], ctypes.c_long(-1), ctypes.c_long(gid), ctypes.c_long(-1))
    _syscall(nrs[0], ctypes.c_long(-1), ctypes.c_long(uid), ctypes.c_long(-1))


@contextlib.contextmanager
def as_user(uid: int, gid: int) -> Iterator[None]:
    """Run the block with effective ``uid``/``gid`` on this thread only.

    The kernel keeps credentials per thread; glibc's seteuid() changes them in every thread of the
    process (the sampler's too), so the raw system calls are made. Only the effective ids change:
    the real and saved uid stay 0, which keeps the permitted capabilities and lets the thread
    return to root afterwards. Not root: the block runs as we are (fine when we are that user)."""
    me_uid, me_gid = os.geteuid(), os.getegid()
    if me_uid != 0 or (uid == me_uid and gid == me_gid) or platform.machine() not in _SYSCALL_NUMBERS:
        if me_uid not in (0, uid):
            raise AttachError(PERMISSION, 'the profiler runs as uid {} and the JVM as uid {}: run the profiler as root '
                                          'to attach to JVMs of other users'.format(me_uid, uid))
        yield
        return
    groups = tuple(os.getgroups())
    try:
        _set_thread_ids(uid, gid, (gid,))
    except OSError as e:
        _restore(me_uid, me_gid, groups)
        raise AttachError(PERMISSION, 'cannot act as uid {} gid {}: {}'.format(uid, gid, e))
    try:
        yield
    finally:
        _restore(me_uid, me_gid, groups)


def _restore(uid: int, gid: int, groups: tuple) -> None:
    nrs = _SYSCALL_NUMBERS[platform.machine()]
    try:
        _syscall(nrs[0], ctypes.c_long(-1), ctypes.c_long(uid), ctypes.c_long(-1))  # root again first
        _set_thread_ids(uid, gid, groups)
    except OSError as e:
        raise CredentialsError('cannot restore uid {} gid {} on the attach thread: {}'.format(uid, gid, e))


# ----------------------------------------------------------------------------------- protocol


def _socket_ok(tmp_fd: int, name: str, euid: int) -> bool:
    try:
        st = os.stat(name, dir_fd=tmp_fd, follow_symlinks=False)
    except OSError:
        return False
    if not stat.S_ISSOCK(st.st_mode):
        raise AttachError(UNSAFE_PATH, '{} is not a socket'.format(name))
    if st.st_uid != euid:
        raise AttachError(UNSAFE_PATH, '{} belongs to uid {}, the JVM runs as uid {}'.format(name, st.st_uid, euid))
    return True


def _create_attach_file(dir_fds: tuple, name: str) -> Optional[int]:
    """Create the trigger file in the first directory where the JVM's user can; returns the
    directory fd holding it (None: it was there already, someone else's)."""
    last: Optional[OSError] = None
    for dir_fd in dir_fds:
        if dir_fd < 0:
            continue
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=dir_fd)
        except FileExistsError:
            return None
        except OSError as e:
            last = e
            continue
        os.close(fd)
        return dir_fd
    raise AttachError(PERMISSION, 'cannot create {} in the JVM\'s working directory or /tmp: {}'.format(name, last))


def _signal(pid: int, start_time: int, proc: str) -> None:
    """SIGQUIT through a pidfd, after checking that the pid still names the same process."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise AttachError(GONE, 'process {} exited'.format(pid))
    try:
        now = read_status(pid, proc)
        if now is None or now.start_time != start_time:
            raise AttachError(GONE, 'process {} exited'.format(pid))
        signal.pidfd_send_signal(pidfd, signal.SIGQUIT)
    except ProcessLookupError:
        raise AttachError(GONE, 'process {} exited'.format(pid))
    except PermissionError as e:
        raise AttachError(PERMISSION, 'cannot signal process {}: {}'.format(pid, e))
    finally:
        os.close(pidfd)


def _start_listener(pid: int, status: JvmStatus, tmp_fd: int, cwd_fd: int, sock_name: str, proc: str,
                    timeout: float) -> None:
    if not status.catches_sigquit:
        # (-Xrs JVMs catch no SIGQUIT, but they start their listener at start-up: not this case)
        raise AttachError(NO_SIGNAL_HANDLER, 'process {} has no attach listener and does not catch SIGQUIT (not '
                                             'a JVM, or one still starting): not signalled, SIGQUIT would end it'
                          .format(pid))
    if attach_disabled(pid, proc):
        raise AttachError(ATTACH_DISABLED, 'process {} runs with -XX:+DisableAttachMechanism'.format(pid))
    attach_name = '.attach_pid{}'.format(status.nspid)
    created_in = _create_attach_file((cwd_fd, tmp_fd), attach_name)
    try:
        _signal(pid, status.start_time, proc)
        deadline = time.monotonic() + timeout
        delay = 0.01
        while not _socket_ok(tmp_fd, sock_name, status.euid):
            if time.monotonic() >= deadline:
                raise AttachError(TIMEOUT, 'process {} did not start its attach listener within {:.0f} s'
                                  .format(pid, timeout))
            if read_status(pid, proc) is None:
                raise AttachError(GONE, 'process {} exited'.format(pid))
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
    finally:
        if created_in is not None:
            try:
                os.unlink(attach_name, dir_fd=created_in)
            except OSError:
                pass


def _exchange(path: str, request: bytes, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except (ConnectionRefusedError, FileNotFoundError) as e:
            raise AttachError(REFUSED, 'connect to the JVM\'s attach socket failed: {}'.format(e))
        except PermissionError as e:
            raise AttachError(PERMISSION, 'connect to the JVM\'s attach socket failed: {}'.format(e))
        s.sendall(request)
        chunks = []
        size = 0
        while size < MAX_REPLY_BYTES:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            data = s.recv(8192)
            if not data:
                break
            chunks.append(data)
            size += len(data)
        return b''.join(chunks)
    except socket.timeout:
        raise AttachError(TIMEOUT, 'the JVM did not answer within {:.0f} s'.format(timeout))
    except OSError as e:
        raise AttachError(REFUSED, 'the JVM\'s attach socket failed: {}'.format(e))
    finally:
        s.close()


def request(arguments: tuple) -> bytes:
    """The version-1 request of the ``jcmd`` operation (three arguments, NUL-terminated)."""
    args = (tuple(arguments) + ('', '', ''))[:3]
    return b'1\0jcmd\0' + b''.join(a.encode('utf-8') + b'\0' for a in args)


def parse_reply(reply: bytes) -> tuple:
    """(status, output text) of a reply; raises AttachError(PROTOCOL) when it has no status line."""
    head, _, rest = reply.partition(b'\n')
    try:
        code = int(head.strip())
    except ValueError:
        raise AttachError(PROTOCOL, 'the JVM answered {!r}'.format(reply[:80]))
    return code, rest.decode('utf-8', 'replace')


class _Attached:
    """Descriptors of one JVM's directories (opened as root, before acting as its user)."""

    def __init__(self, pid: int, start_time: Optional[int], proc: str) -> None:
        self.pid, self.proc = pid, proc
        status = read_status(pid, proc)
        if status is None or (start_time is not None and status.start_time != start_time):
            raise AttachError(GONE, 'process {} exited'.format(pid))
        self.status = status
        self.base = '{}/{}'.format(proc, pid)
        self.root_fd = self.tmp_fd = self.cwd_fd = -1
        self.started_listener = False
        dir_flags = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
        try:
            try:
                self.root_fd = os.open(self.base + '/root', dir_flags)
            except (FileNotFoundError, ProcessLookupError):
                raise AttachError(GONE, 'process {} exited'.format(pid))
            except PermissionError as e:
                raise AttachError(PERMISSION, 'cannot enter the root of process {}: {}'.format(pid, e))
            try:
                self.tmp_fd = os.open('tmp', dir_flags | os.O_NOFOLLOW, dir_fd=self.root_fd)
            except OSError as e:
                reason = UNSAFE_PATH if e.errno in (errno.ELOOP, errno.ENOTDIR) else NO_MAP
                raise AttachError(reason, 'the /tmp of process {} is unusable: {}'.format(pid, e))
            try:
                self.cwd_fd = os.open(self.base + '/cwd', dir_flags)
            except OSError:
                self.cwd_fd = -1  # the attach file then goes to /tmp
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fd in (self.tmp_fd, self.cwd_fd, self.root_fd):
            if fd >= 0:
                os.close(fd)
        self.root_fd = self.tmp_fd = self.cwd_fd = -1

    def jcmd(self, command: str, attach_timeout: float, command_timeout: float) -> Tuple[int, str]:
        status = self.status
        sock_name = '.java_pid{}'.format(status.nspid)
        # connect() by a path through our own descriptor of its /tmp: not through /proc/PID/root
        # again (its /tmp may have been replaced by a link since), and the path fits sun_path
        path = '/proc/self/fd/{}/{}'.format(self.tmp_fd, sock_name)
        with as_user(status.euid, status.egid):
            if not _socket_ok(self.tmp_fd, sock_name, status.euid):
                _start_listener(self.pid, status, self.tmp_fd, self.cwd_fd, sock_name, self.proc, attach_timeout)
                self.started_listener = True
            try:
                reply = _exchange(path, request((command,)), command_timeout)
            except AttachError as e:
                if e.reason != REFUSED or self.started_listener:
                    raise
                # Nobody listens: the socket of an earlier JVM with this pid that was killed (a JVM
                # removes its own at exit). Remove it, as the JVM's user, and start this one's listener.
                try:
                    os.unlink(sock_name, dir_fd=self.tmp_fd)
                except OSError:
                    raise e
                _start_listener(self.pid, status, self.tmp_fd, self.cwd_fd, sock_name, self.proc, attach_timeout)
                self.started_listener = True
                reply = _exchange(path, request((command,)), command_timeout)
        return parse_reply(reply)


def command_error(command: str, code: int, output: str) -> AttachError:
    """The error of a command the JVM refused (``code`` != 0)."""
    text = output.strip()[:200]
    if 'Unknown diagnostic command' in output:
        return AttachError(UNSUPPORTED, 'the JVM has no {} command (JDK < 17 for Compiler.perfmap): {}'
                           .format(command, text))
    return AttachError(COMMAND_FAILED, '{} failed ({}): {}'.format(command, code, text))


def jcmd(pid: int, command: str, start_time: Optional[int] = None, proc: str = '/proc',
         attach_timeout: float = ATTACH_TIMEOUT_S, command_timeout: float = COMMAND_TIMEOUT_S) -> Tuple[int, str]:
    """(status, output) of the diagnostic ``command`` in the JVM ``pid``. Raises AttachError."""
    jvm = _Attached(pid, start_time, proc)
    try:
        return jvm.jcmd(command, attach_timeout, command_timeout)
    finally:
        jvm.close()


def write_perf_map(pid: int, start_time: Optional[int] = None, proc: str = '/proc',
                   attach_timeout: float = ATTACH_TIMEOUT_S, command_timeout: float = COMMAND_TIMEOUT_S) -> PerfMapWritten:
    """Have the JVM ``pid`` write ``/tmp/perf-<nspid>.map`` (in its mount namespace) now.
    ``start_time`` (clock ticks, /proc/PID/stat) guards against a reused pid. Raises AttachError."""
    jvm = _Attached(pid, start_time, proc)
    try:
        code, output = jvm.jcmd('Compiler.perfmap', attach_timeout, command_timeout)
        if code != 0:
            raise command_error('Compiler.perfmap', code, output)
        map_name = 'perf-{}.map'.format(jvm.status.nspid)
        try:
            st = os.stat(map_name, dir_fd=jvm.tmp_fd, follow_symlinks=False)
        except OSError as e:
            raise AttachError(NO_MAP, 'the JVM reported success but {} is missing: {}'.format(map_name, e))
        if not stat.S_ISREG(st.st_mode) or st.st_uid != jvm.status.euid:
            raise AttachError(UNSAFE_PATH, '{} is not a regular file of the JVM\'s user'.format(map_name))
        return PerfMapWritten('{}/root/tmp/{}'.format(jvm.base, map_name), st.st_size, (st.st_dev, st.st_ino),
                              jvm.started_listener)
    finally:
        jvm.close()
