# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The pure profile model: what every stage hands to the next. No I/O here.

Data flow: the receiver produces ``RawSample`` (addresses only); the symbolizer turns
addresses into ``Frame``; ``profile.builder`` groups samples per process into a
``Profile``; processors edit ``Resource.attributes``; exporters encode a ``Profile``
(OTLP, pprof, folded).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any, Dict, FrozenSet, List, NamedTuple, Optional, Tuple

# profile.frame.type values, as the OTel eBPF profiler names them.
FRAME_KERNEL = 'kernel'
FRAME_NATIVE = 'native'
FRAME_GO = 'go'
FRAME_JIT = 'jit'  # resolved from /tmp/perf-PID.map
FRAME_JVM = 'jvm'  # code of a HotSpot JVM's code cache: compiled Java methods, the interpreter, stubs
FRAME_V8JS = 'v8js'  # code V8 generated (Node.js): JavaScript functions, V8's interpreter and stubs
FRAME_ABORT = 'abort'  # marks a truncated stack
FRAME_CPYTHON = 'cpython'  # a Python function (runtimes/python)

BUILD_ID_GNU = 'gnu'
BUILD_ID_GO = 'go'
BUILD_ID_HTLHASH = 'htlhash'


@dataclass(frozen=True)
class ValueType:
    type: str
    unit: str


CPU_SAMPLES = ValueType('samples', 'count')
OFF_CPU_TIME = ValueType('off_cpu', 'nanoseconds')
CPU_PERIOD = ValueType('cpu', 'nanoseconds')


class SpanLink(NamedTuple):
    """The span a sample ran in (the sampled thread's OTel thread context, OTEP 4947): an OTLP
    ``Link``. Ids in W3C byte order (as in their hex form); never all zero (no span: no link).

    A named tuple, not a frozen dataclass: every sample key that holds one is hashed at every drain
    and merge, and a tuple's hash is computed in C (the dataclass's ``__hash__`` is a Python call
    building a tuple, ~0.3 us); it is also built without one ``object.__setattr__`` per field."""

    trace_id: bytes  # 16 bytes
    span_id: bytes  # 8 bytes

    @staticmethod
    def of(trace_id: bytes, span_id: bytes) -> Optional['SpanLink']:
        """The link of a thread-context record's ids, or None when they do not name a span (either
        id all zero, or of the wrong length): the OTEP requires both or neither."""
        if len(trace_id) != 16 or len(span_id) != 8 or not any(trace_id) or not any(span_id):
            return None
        return SpanLink(bytes(trace_id), bytes(span_id))


@dataclass(frozen=True, init=False)
class RawSample:
    """One aggregated key drained from the kernel: addresses only, leaf first.

    ``__init__`` is written out (the dataclass's sets each of the 12 fields with
    ``object.__setattr__``, ~3x slower): one is built per aggregated key at every drain and again at
    every collect, and a span splits a stack into one key per span (span links)."""

    pid: int  # tgid
    tid: int
    comm: str
    user_stack: Tuple[int, ...]  # absolute virtual addresses in the process, leaf first
    kernel_stack: Tuple[int, ...]  # kernel addresses, leaf first
    count: int  # samples (on-CPU) or nanoseconds (off-CPU)
    value_type: ValueType = CPU_SAMPLES
    truncated: bool = False  # the user stack was cut (depth limit or copy size)
    user_stack_lost: bool = False  # the stack id was lost (map full / collision)
    # Frames of an interpreted runtime, interleaved with the user stack by profile.builder: what the
    # BPF program recorded (the sampler), then a RuntimeStack (the receiver resolves it at the drain)
    runtime_stack: Any = None
    link: Optional[SpanLink] = None  # the span the thread was in (thread context), if any
    # the thread context's attributes, keys resolved through the process's key map (OTEP 4947)
    context_attributes: Tuple[Tuple[str, str], ...] = ()

    def __init__(self, pid: int, tid: int, comm: str, user_stack: Tuple[int, ...], kernel_stack: Tuple[int, ...],
                 count: int, value_type: ValueType = CPU_SAMPLES, truncated: bool = False,
                 user_stack_lost: bool = False, runtime_stack: Any = None, link: Optional[SpanLink] = None,
                 context_attributes: Tuple[Tuple[str, str], ...] = ()) -> None:
        self.__dict__.update(pid=pid, tid=tid, comm=comm, user_stack=user_stack, kernel_stack=kernel_stack,
                             count=count, value_type=value_type, truncated=truncated,
                             user_stack_lost=user_stack_lost, runtime_stack=runtime_stack, link=link,
                             context_attributes=context_attributes)


_RAW_FIELDS = frozenset(f.name for f in fields(RawSample))


def with_fields(sample: RawSample, **changes: Any) -> RawSample:
    """``dataclasses.replace`` for a RawSample (no ``__post_init__``, fields in ``__dict__``): a
    copy of its fields, 3 us instead of 26 (the drain does it for every sample with runtime
    frames)."""
    out = object.__new__(RawSample)
    d = out.__dict__
    d.update(sample.__dict__)
    for k, v in changes.items():
        if k not in _RAW_FIELDS:
            raise TypeError('RawSample has no field {!r}'.format(k))
        d[k] = v
    return out


@dataclass(frozen=True)
class Mapping:
    """A file mapped in a process. ``file_offset`` is the offset of ``start`` in the file."""

    start: int
    limit: int
    file_offset: int
    filename: str
    build_id: str = ''  # hex
    build_id_kind: str = ''  # BUILD_ID_GNU | BUILD_ID_GO | BUILD_ID_HTLHASH


class _CachedHash:
    """A frozen dataclass's hash computed once (``_hash_fields`` in order). The cache is not
    pickled: a str's hash differs between processes.

    The fields' tuple comes from an ``attrgetter``, not ``tuple(generator)``: CPython builds the
    latter in a tuple it resizes, which fails with SystemError ("bad argument to internal
    function") when another thread's ``gc.get_objects()`` holds the half-built tuple (seen in the
    soak benchmark, which counts objects while the receiver drains)."""

    __slots__ = ()

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls._hash_key = attrgetter(*cls._hash_fields)  # (not a descriptor: called with the instance)

    def __hash__(self) -> int:
        d = self.__dict__
        h = d.get('_hash')
        if h is None:
            h = d['_hash'] = hash(self._hash_key(self))  # (frozen: the instance dict, not setattr)
        return h

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != '_hash'}


@dataclass(frozen=True)
class Frame(_CachedHash):
    """One location of a stack. ``function`` is '' when the symbolizer found nothing:
    the frame then keeps ``mapping`` + ``address`` so a backend can symbolize it."""

    function: str
    address: int  # absolute virtual address (kernel address for kernel frames)
    kind: str = FRAME_NATIVE
    mapping: Optional[Mapping] = None
    source_file: str = ''
    line: int = 0

    # frames are shared by many stacks, which hash them again and again
    __hash__ = _CachedHash.__hash__
    _hash_fields = ('function', 'address', 'kind', 'mapping', 'source_file', 'line')

    @property
    def display_name(self) -> str:
        if self.function:
            return self.function
        if self.mapping is not None:
            return '{}+0x{:x}'.format(self.mapping.filename.rsplit('/', 1)[-1], self.file_address)
        return '[unknown]'

    @property
    def file_address(self) -> int:
        """The address as an offset into the mapped file (what backends symbolize)."""
        if self.mapping is None:
            return self.address
        return self.address - self.mapping.start + self.mapping.file_offset


@dataclass(frozen=True)
class RuntimeStack(_CachedHash):
    """The frames of one interpreted runtime in one sample, leaf first, cut into segments: segment
    i is what the i-th native frame of the interpreter loop (leaf first) was running, and replaces
    that frame (``interpreter_functions`` names them). ``native_ends_at_interpreter``: the native
    unwinding cannot pass an interpreter frame (frame pointers), so the native frames below the
    last one replaced are dropped and the segments left over end the stack."""

    segments: Tuple[Tuple[Frame, ...], ...]
    interpreter_functions: FrozenSet[str]
    truncated: bool = False
    native_ends_at_interpreter: bool = False

    # a sample key holds it, and the drains hash every key (~3 us for 26 frames uncached)
    __hash__ = _CachedHash.__hash__
    _hash_fields = ('segments', 'interpreter_functions', 'truncated', 'native_ends_at_interpreter')


@dataclass(frozen=True, init=False)
class Sample:
    frames: Tuple[Frame, ...]  # leaf first
    value: int
    thread_id: int = 0
    thread_name: str = ''
    truncated: bool = False
    link: Optional[SpanLink] = None  # same stack in two spans = two samples
    context_attributes: Tuple[Tuple[str, str], ...] = ()  # thread-context attributes: sample attributes

    # written out, as RawSample's: one per sample of every profile built
    def __init__(self, frames: Tuple[Frame, ...], value: int, thread_id: int = 0, thread_name: str = '',
                 truncated: bool = False, link: Optional[SpanLink] = None,
                 context_attributes: Tuple[Tuple[str, str], ...] = ()) -> None:
        self.__dict__.update(frames=frames, value=value, thread_id=thread_id, thread_name=thread_name,
                             truncated=truncated, link=link, context_attributes=context_attributes)


@dataclass
class Resource:
    """One profiled process (resource attributes use OTel semantic conventions)."""

    attributes: Dict[str, Any]
    samples: List[Sample] = field(default_factory=list)  # CPU samples
    off_cpu_samples: List[Sample] = field(default_factory=list)  # values in nanoseconds
    # The process name (/proc/PID/comm) used by the folded/pprof outputs. Not exported as an
    # OTLP resource attribute (OTel has no semantic convention for it).
    comm: str = ''

    @property
    def pid(self) -> int:
        return int(self.attributes.get('process.pid', 0))


@dataclass
class Profile:
    """One export interval of the whole host."""

    time_unix_nano: int
    duration_nano: int
    period_nano: int  # 1e9 / samples_per_second
    resources: List[Resource] = field(default_factory=list)
    sample_type: ValueType = CPU_SAMPLES
    period_type: ValueType = CPU_PERIOD

    @property
    def total_samples(self) -> int:
        return sum(s.value for r in self.resources for s in r.samples)

    @property
    def has_off_cpu(self) -> bool:
        return any(r.off_cpu_samples for r in self.resources)
