# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The OpenTelemetry process context (OTEP 4719) that instrumented processes publish about themselves.

A tracer (dd-trace-py 4.13+, libdatadog-based tracers, the sig-profiling C library) maps a region
named ``OTEL_CTX`` whose first 32 bytes are a header::

    0  8  signature  b'OTEL_CTX'
    8  4  version    2
    12 4  payload_size (bytes, 1..65536)
    16 8  monotonic_published_at_ns (0 = being written; every update changes it)
    24 8  payload    absolute address, in the publisher, of a ``ProcessContext`` protobuf

``ProcessContext { Resource resource = 1; repeated KeyValue attributes = 2; }``. Its resource
attributes (``service.name``, ``service.version``, ``deployment.environment.name``,
``service.instance.id``...) go onto the process's OTLP resource (see ``profile.builder``); field 2
holds reader settings such as the thread-context key map (OTEP 4947).

Reading is a seqlock keyed on the timestamp: read it (non-zero), copy the header and the payload,
read it again; a zero or changed timestamp means the publisher was writing, so try again, a
bounded number of times. Every failure is counted by reason. A parsed context is cached on the
process (``ProcessInfo.otel_context``) until its timestamp changes; each drain re-reads only those
8 bytes. Processes without a context have their maps scanned again now and then (publishers
usually start after the process's first sample), less often as they age.
"""
from __future__ import annotations

import ctypes
import errno
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Optional, Tuple

from google.protobuf.message import DecodeError

SIGNATURE = b'OTEL_CTX'
VERSION = 2
HEADER = struct.Struct('<8sIIQQ')  # little-endian: x86-64 and arm64, the profiler's targets
TIMESTAMP_OFFSET = 16
MAX_PAYLOAD_BYTES = 65536
# Names of the mapping in /proc/PID/maps, matched as prefixes (a memfd shows ' (deleted)' after it).
MAPPING_NAMES = ('[anon_shmem:OTEL_CTX]', '[anon:OTEL_CTX]', '/memfd:OTEL_CTX')
# Highest plausible user-space address (x86-64 5-level paging and arm64 52-bit VAs stay below it).
_USER_SPACE_END = 1 << 57
DEFAULT_ATTEMPTS = 3

# Why a read failed (the ``reason`` tag of ``otel_context.read_errors``).
READ_ERROR_REASONS = (
    'gone',  # the process exited while it was read
    'permission',  # /proc/PID/mem refused (not root, no CAP_SYS_PTRACE)
    'unreadable',  # the header or the payload address is not mapped (short read, EIO)
    'bad_signature',  # the mapping does not start with OTEL_CTX (unmapped and reused)
    'bad_version',  # not version 2 (1 was a development version)
    'bad_size',  # payload size 0 or above 64 KiB
    'bad_pointer',  # payload address 0 or outside user space
    'concurrent_update',  # the timestamp stayed 0 or kept changing over every attempt
    'bad_payload',  # not a ProcessContext protobuf
)

# Keys of OTEP 4947 (thread context) that describe how to read the thread context: settings for the
# reader, not resource attributes. libdatadog <= v37 (dd-trace-py 4.13) put them in the resource.
THREADLOCAL_PREFIX = 'threadlocal.'
ATTR_SCHEMA_VERSION = 'threadlocal.schema_version'
ATTR_KEY_MAP = 'threadlocal.attribute_key_map'

# Rescan the maps of a process without a context after max(min, min(max, age / 4)) seconds.
RESCAN_MIN_S = 1.0
RESCAN_MAX_S = 60.0
MAX_SCANS_PER_DRAIN = 32


class ContextReadError(Exception):
    def __init__(self, reason: str, detail: str = '') -> None:
        super().__init__('{}{}'.format(reason, ': ' + detail if detail else ''))
        self.reason = reason


@dataclass(frozen=True)
class ProcessContext:
    """One published context, decoded. Never mutated: a new one replaces it on update."""

    address: int  # start of the OTEL_CTX mapping in the process
    published_at_ns: int  # the publisher's CLOCK_BOOTTIME stamp: the cache key
    resource: Dict[str, Any]  # resource attributes, ``threadlocal.*`` moved to ``attributes``
    attributes: Dict[str, Any] = field(default_factory=dict)  # field 2 (reader settings, extra tags)

    @property
    def thread_local_schema(self) -> str:
        """``threadlocal.schema_version`` (``tlsdesc_v1_dev`` today); '' when not published."""
        value = self.attributes.get(ATTR_SCHEMA_VERSION)
        return value if isinstance(value, str) else ''

    @property
    def attribute_key_map(self) -> Tuple[str, ...]:
        """Thread-context attribute keys by index (OTEP 4947): record entry ``i`` is key ``[i]``."""
        value = self.attributes.get(ATTR_KEY_MAP)
        if not isinstance(value, list):
            return ()
        return tuple(v if isinstance(v, str) else str(v) for v in value)


# ---------------------------------------------------------------------------- discovery (pure)


def find_mapping(maps_text: str) -> int:
    """Start address of the OTEL_CTX mapping in the text of /proc/PID/maps, 0 when absent.

    Only non-executable mappings count (as the OTel eBPF profiler does): a publisher maps it
    read-write, and an executable mapping of that name is not a context."""
    at = maps_text.find('OTEL_CTX')  # absent in the common case: one scan, in C
    while at >= 0:
        start = maps_text.rfind('\n', 0, at) + 1
        end = maps_text.find('\n', at)
        if end < 0:
            end = len(maps_text)
        parts = maps_text[start:end].split(None, 5)
        if len(parts) == 6 and 'x' not in parts[1] and parts[5].startswith(MAPPING_NAMES):
            try:
                return int(parts[0].partition('-')[0], 16)
            except ValueError:
                pass
        at = maps_text.find('OTEL_CTX', end)
    return 0


# ---------------------------------------------------------------------------- payload (pure)

_PROCESS_CONTEXT_FILE = 'opentelemetry/proto/processcontext/v1development/process_context.proto'
_message_class: Any = None


def process_context_message() -> Any:
    """The ``ProcessContext`` message class.

    opentelemetry-proto 1.45 (generated from proto v1.10.0) does not ship it: proto v1.11.0 added it.
    Rather than decode the wire format by hand, the message is declared to protobuf's descriptor pool
    from its two fields, on top of the installed ``Resource`` and ``KeyValue``, so the protobuf library
    parses it (and validates UTF-8, lengths, nesting) exactly as generated code would."""
    global _message_class
    if _message_class is not None:
        return _message_class
    try:  # a future opentelemetry-proto that ships it
        from opentelemetry.proto.processcontext.v1development import process_context_pb2  # type: ignore

        _message_class = process_context_pb2.ProcessContext
        return _message_class
    except ImportError:
        pass
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.resource.v1 import resource_pb2

    pool = descriptor_pool.Default()
    try:
        file_desc = pool.FindFileByName(_PROCESS_CONTEXT_FILE)
    except KeyError:
        proto = descriptor_pb2.FileDescriptorProto(
            name=_PROCESS_CONTEXT_FILE,
            package='opentelemetry.proto.processcontext.v1development',
            syntax='proto3',
            dependency=[resource_pb2.DESCRIPTOR.name, common_pb2.DESCRIPTOR.name],
        )
        message = proto.message_type.add(name='ProcessContext')
        f = descriptor_pb2.FieldDescriptorProto
        message.field.add(name='resource', number=1, type=f.TYPE_MESSAGE, label=f.LABEL_OPTIONAL,
                          type_name='.opentelemetry.proto.resource.v1.Resource')
        message.field.add(name='attributes', number=2, type=f.TYPE_MESSAGE, label=f.LABEL_REPEATED,
                          type_name='.opentelemetry.proto.common.v1.KeyValue')
        pool.Add(proto)
        file_desc = pool.FindFileByName(_PROCESS_CONTEXT_FILE)
    _message_class = message_factory.GetMessageClass(file_desc.message_types_by_name['ProcessContext'])
    return _message_class


def any_value_to_python(value: Any) -> Any:
    """An OTel ``AnyValue`` as a Python value (lists for arrays, dicts for kvlists); None if unset."""
    kind = value.WhichOneof('value')
    if kind is None:
        return None
    if kind == 'array_value':
        return [any_value_to_python(v) for v in value.array_value.values]
    if kind == 'kvlist_value':
        return {kv.key: any_value_to_python(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def decode_payload(payload: bytes) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(resource attributes, extra attributes) of a ``ProcessContext`` payload.

    ``threadlocal.*`` keys found in the resource (libdatadog <= v37) move to the extra attributes.
    Raises ``ContextReadError('bad_payload')``."""
    message = process_context_message()()
    try:
        message.ParseFromString(payload)
    except (DecodeError, ValueError) as e:
        raise ContextReadError('bad_payload', str(e))
    resource: Dict[str, Any] = {}
    extra: Dict[str, Any] = {}
    for kv in message.resource.attributes:
        value = any_value_to_python(kv.value)
        # '' is "not set": dd-trace-py publishes service.version='' and container.id='' when unknown,
        # which must not erase what the environment or the cgroup says
        if value is None or value == '' or not kv.key:
            continue
        (extra if kv.key.startswith(THREADLOCAL_PREFIX) else resource)[kv.key] = value
    for kv in message.attributes:
        value = any_value_to_python(kv.value)
        if value is not None and kv.key:
            extra[kv.key] = value
    return resource, extra


# ---------------------------------------------------------------------------- reading another process


class _IoVec(ctypes.Structure):
    _fields_ = [('iov_base', ctypes.c_void_p), ('iov_len', ctypes.c_size_t)]


def _libc_process_vm_readv() -> Any:
    try:
        fn = ctypes.CDLL(None, use_errno=True).process_vm_readv
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.POINTER(_IoVec), ctypes.c_ulong, ctypes.POINTER(_IoVec), ctypes.c_ulong,
                   ctypes.c_ulong]
    fn.restype = ctypes.c_ssize_t
    return fn


# process_vm_readv, as the spec recommends: one syscall and no file descriptor, half the cost of
# opening /proc/PID/mem for the 8-byte check of each drain. /proc/PID/mem is the fallback on kernels
# built without CONFIG_CROSS_MEMORY_ATTACH (ENOSYS).
_process_vm_readv = _libc_process_vm_readv()


def _error(e: OSError, what: str) -> ContextReadError:
    if e.errno == errno.ESRCH or isinstance(e, (FileNotFoundError, ProcessLookupError)):
        return ContextReadError('gone', str(e))
    if e.errno in (errno.EPERM, errno.EACCES):
        return ContextReadError('permission', '{} (run as root or grant CAP_SYS_PTRACE)'.format(e))
    return ContextReadError('unreadable', '{}: {}'.format(what, e))


def _read_proc_mem(pid: int, address: int, size: int, proc: str) -> bytes:
    try:
        fd = os.open('{}/{}/mem'.format(proc, pid), os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise _error(e, '{}/{}/mem'.format(proc, pid))
    try:
        return os.pread(fd, size, address)
    except OSError as e:
        raise _error(e, '{} bytes at 0x{:x}'.format(size, address))
    finally:
        os.close(fd)


def read_memory(pid: int, address: int, size: int, proc: str = '/proc') -> bytes:
    """``size`` bytes at ``address`` in ``pid``. Raises ``ContextReadError`` (gone, permission,
    unreadable: not mapped or a short read, bad_pointer: not an address)."""
    global _process_vm_readv
    if not 0 <= address < 1 << 64 or address + size > 1 << 64:
        raise ContextReadError('bad_pointer', '0x{:x}'.format(address))
    data = None
    if _process_vm_readv is not None and proc == '/proc':
        buf = ctypes.create_string_buffer(size)
        local = _IoVec(ctypes.addressof(buf), size)
        remote = _IoVec(address, size)
        n = _process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        if n >= 0:
            data = buf.raw[:n]
        else:
            err = ctypes.get_errno()
            if err == errno.ENOSYS:
                _process_vm_readv = None
            else:
                raise _error(OSError(err, os.strerror(err)), '{} bytes at 0x{:x}'.format(size, address))
    if data is None:
        data = _read_proc_mem(pid, address, size, proc)
    if len(data) != size:
        raise ContextReadError('unreadable', 'short read at 0x{:x} ({} of {} bytes)'.format(address, len(data), size))
    return data


def _timestamp(pid: int, address: int, proc: str) -> int:
    return struct.unpack('<Q', read_memory(pid, address + TIMESTAMP_OFFSET, 8, proc))[0]


def read_published_at(pid: int, address: int, proc: str = '/proc') -> int:
    """The 8-byte ``monotonic_published_at_ns`` alone: the cheap check of each drain."""
    return _timestamp(pid, address, proc)


def read_context(pid: int, address: int, proc: str = '/proc', attempts: int = DEFAULT_ATTEMPTS) -> ProcessContext:
    """Read and decode the context whose header is at ``address`` in ``pid``.

    The timestamp is read before the header and again after the payload; the copy is kept only
    when both are the same non-zero value. Raises ``ContextReadError`` (``.reason``)."""
    for _ in range(max(1, attempts)):
        before = _timestamp(pid, address, proc)
        if before == 0:  # being written
            continue
        signature, version, size, published_at, pointer = HEADER.unpack(read_memory(pid, address, HEADER.size, proc))
        if signature != SIGNATURE:
            raise ContextReadError('bad_signature', repr(signature))
        if version != VERSION:
            raise ContextReadError('bad_version', 'version {} (only {} is read)'.format(version, VERSION))
        if published_at != before:
            continue
        if not 0 < size <= MAX_PAYLOAD_BYTES or pointer == 0 or pointer + size > _USER_SPACE_END:
            if _timestamp(pid, address, proc) != before:  # a torn header, not a bad one
                continue
            if not 0 < size <= MAX_PAYLOAD_BYTES:
                raise ContextReadError('bad_size', '{} bytes (at most {})'.format(size, MAX_PAYLOAD_BYTES))
            raise ContextReadError('bad_pointer', '0x{:x}'.format(pointer))
        try:
            payload = read_memory(pid, pointer, size, proc)
        except ContextReadError:
            if _timestamp(pid, address, proc) != before:  # the old payload was freed meanwhile
                continue
            raise
        if _timestamp(pid, address, proc) != before:
            continue
        resource, extra = decode_payload(payload)
        return ProcessContext(address=address, published_at_ns=before, resource=resource, attributes=extra)
    raise ContextReadError('concurrent_update', 'the timestamp was 0 or changed at each of {} attempts'
                           .format(max(1, attempts)))


# ---------------------------------------------------------------------------- per drain


class ProcessContextReader:
    """Keeps ``ProcessInfo.otel_context`` current for the processes of each drain (receiver thread).

    - A process whose maps name a context (``ProcessInfo.otel_context_address``, set whenever the
      registry reads its maps) is read once, then only its timestamp is checked at each drain; a
      changed timestamp means a full read.
    - A process without one has its maps read again (``ProcessRegistry.refresh_mappings``) at most
      every ``max(RESCAN_MIN_S, min(RESCAN_MAX_S, age / 4))`` seconds, and at most
      ``MAX_SCANS_PER_DRAIN`` processes per drain.
    - A failed read keeps the cached context after a concurrent update (the next drain tries
      again); after any other failure the context is dropped and the maps scanned again later.
    """

    def __init__(self, telemetry: Any, proc: str = '/proc', attempts: int = DEFAULT_ATTEMPTS,
                 max_scans_per_drain: int = MAX_SCANS_PER_DRAIN, log: Any = None) -> None:
        self.telemetry = telemetry
        self.proc = proc
        self.attempts = attempts
        self.max_scans_per_drain = max_scans_per_drain
        self.log = log
        self._logged: set = set()
        telemetry.declare('otel_context.reads')
        telemetry.declare('otel_context.checks')
        telemetry.declare('otel_context.scans')
        for reason in READ_ERROR_REASONS:
            telemetry.declare('otel_context.read_errors', ['reason:' + reason])

    @staticmethod
    def rescan_delay(age_s: float) -> float:
        return max(RESCAN_MIN_S, min(RESCAN_MAX_S, age_s / 4.0))

    def update(self, registry: Any, pids: Iterable[int], now: float) -> None:
        """Check the contexts of the live processes among ``pids`` (the pids of one drain)."""
        t = self.telemetry
        checks = reads = scans = 0
        for pid in pids:
            info = registry.get(pid)
            if info is None or info.exited_at is not None:
                continue
            if not info.otel_context_address:
                if scans >= self.max_scans_per_drain:
                    continue
                if not info.otel_context_scan_at:
                    info.otel_context_scan_at = info.read_at + self.rescan_delay(info.age_s())
                if now < info.otel_context_scan_at:
                    continue
                scans += 1
                registry.refresh_mappings(pid)
                info.otel_context_scan_at = now + self.rescan_delay(info.age_s())
                if not info.otel_context_address:
                    continue
            cached: Optional[ProcessContext] = info.otel_context
            address = info.otel_context_address
            if cached is not None and cached.address == address:
                checks += 1
                try:
                    stamp = read_published_at(pid, address, self.proc)
                except ContextReadError as e:
                    self._failed(info, e)
                    continue
                if stamp == cached.published_at_ns or stamp == 0:  # unchanged, or being written: next drain
                    continue
            reads += 1
            try:
                info.otel_context = read_context(pid, address, self.proc, self.attempts)
            except ContextReadError as e:
                self._failed(info, e)
        t.count('otel_context.checks', checks)
        t.count('otel_context.reads', reads)
        t.count('otel_context.scans', scans)
        t.gauge('otel_context.processes', sum(1 for info in registry
                                              if info.otel_context is not None and info.exited_at is None))

    def _failed(self, info: Any, error: ContextReadError) -> None:
        self.telemetry.count('otel_context.read_errors', 1, ['reason:' + error.reason])
        if error.reason == 'concurrent_update':
            return  # keep what was read last; the timestamp differs, so the next drain reads again
        if self.log is not None and error.reason not in self._logged and error.reason != 'gone':
            self._logged.add(error.reason)  # once per reason: a hostile process must not flood the log
            self.log.warning('host_profiler: cannot read the OTel process context of pid %d (%s); its '
                             'profiles keep the attributes detected from its environment', info.pid, error)
        info.otel_context = None
        info.otel_context_address = 0
        info.otel_context_scan_at = time.monotonic() + self.rescan_delay(info.age_s())
