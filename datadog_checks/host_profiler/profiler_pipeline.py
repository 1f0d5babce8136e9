# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""One profiling pipeline: receiver → profile → processors → exporters (+ symbol uploader).

The check and the standalone command both drive this class; it owns every component and
knows nothing of the Agent. ``run_once()`` is what one check run does.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from .__about__ import __version__
from .config.loader import section_dict
from .config_models import InstanceConfig
from .profile.builder import build_profile
from .profile.model import Profile
from .runtime.telemetry import Telemetry
from .host.budget import memory_cache

LOG = logging.getLogger(__name__)

HttpFactory = Callable[[dict], Any]


@dataclass
class RunResult:
    profile: Optional[Profile]
    sampling: bool
    sampler_error: str = ''
    exporter_statuses: List[Tuple[str, str, str]] = field(default_factory=list)  # (name, level, message)


def check_interpreters(config: InstanceConfig) -> None:
    """Raise ``OptionError`` for a ``receiver.interpreters`` name that is not a supported runtime
    (``runtimes.RUNTIMES``), naming the valid ones. Here, not in ``config``: the registry is a
    layer above it."""
    from .config.validation import OptionError
    from .runtimes import RUNTIMES

    for i, name in enumerate(config.receiver.interpreters):
        if name not in RUNTIMES:
            raise OptionError('unknown runtime {!r}: valid values are {} (an empty list switches them all off)'.format(
                name, ', '.join(sorted(RUNTIMES))), ['receiver', 'interpreters', i])


def _any_of(patterns: Tuple[str, ...]) -> Optional[str]:
    """One regex matching any of the patterns (None: no pattern, no filter)."""
    return '|'.join('(?:{})'.format(p) for p in patterns) if patterns else None


# receiver: options of spec.yaml -> (ReceiverConfig field, conversion), where the names or the
# shapes differ. Every other receiver option is a ReceiverConfig field of the same name, or is
# listed in RECEIVER_READ_ELSEWHERE (tests/config/test_spec.py checks that each option is one of
# the three, so a new option cannot be silently dropped).
def _env_vars(extra: Any) -> Tuple[str, ...]:
    """The unified service tagging variables, always read, then the user's."""
    from .profile.builder import SERVICE_ENV_VARS

    return tuple(dict.fromkeys(SERVICE_ENV_VARS + tuple(extra or ())))


RECEIVER_RENAMED: Dict[str, Tuple[str, Callable[[Any], Any]]] = {
    'include_env_vars': ('include_env_vars', _env_vars),
    'max_stack_keys': ('counts_map_size', int),
    'comm_patterns': ('comm_include', _any_of),
    'exclude_comm_patterns': ('comm_exclude', _any_of),
    'symbolizer': ('symbolizer', section_dict),  # the CFI tables take their share of memory_budget_mb
}
# receiver options read by other components of the pipeline, not by the receiver itself
RECEIVER_READ_ELSEWHERE = (
    'symbol_uploader',  # the symbol uploader (ProfilerPipeline._build_uploader)
    'jvm',  # runtimes.jit.JitRuntimes
)


def receiver_config(config: InstanceConfig, interval_s: float):
    """The receiver's settings from the typed ``receiver:`` section (every option mapped; see
    ``RECEIVER_RENAMED`` and ``RECEIVER_READ_ELSEWHERE``)."""
    import dataclasses

    from .receiver.receiver import ReceiverConfig

    check_interpreters(config)
    fields = {f.name for f in dataclasses.fields(ReceiverConfig)}
    values: Dict[str, Any] = {}
    section = config.receiver
    for name in type(section).model_fields:
        if name in RECEIVER_READ_ELSEWHERE:
            continue
        target, convert = RECEIVER_RENAMED.get(name, (name, section_dict))
        if target not in fields:
            raise AssertionError('receiver option {} reaches no ReceiverConfig field: map it in RECEIVER_RENAMED or '
                                 'list it in RECEIVER_READ_ELSEWHERE'.format(name))
        value = convert(getattr(section, name))
        if value is not None:
            values[target] = value
    values['lock_path'] = config.lock_file
    values['check_interval'] = interval_s
    return ReceiverConfig(**values)


class ProfilerPipeline:
    """Builds and drives every stage for one typed configuration (``config.loader.build_config``,
    or the check's ``self.config``). Every value comes from ``InstanceConfig``, whose defaults are
    spec.yaml's; each component receives its own section."""

    def __init__(
        self,
        config: InstanceConfig,
        *,
        telemetry: Optional[Telemetry] = None,
        http_factory: Optional[HttpFactory] = None,
        log: Optional[logging.Logger] = None,
        hostname: Optional[Callable[[], str]] = None,
        tagger: Any = None,
        interval_s: float = 15.0,
        agent_config: Optional[Callable[[str], Any]] = None,
    ) -> None:
        from .exporters import build_exporters
        from .processors.chain import build_processors
        from .runtime.self_profiling import SelfProfiling

        if not isinstance(config, InstanceConfig):
            raise TypeError('ProfilerPipeline takes the typed InstanceConfig (config.loader.build_config), not {}'
                            .format(type(config).__name__))
        check_interpreters(config)  # before anything starts (receiver_config checks it too)
        from .runtimes.jit import JitRuntimes, jit_frames_of
        from .symbols.symbolizer import Symbolizer

        self.config = config
        self.mode = mode = config.mode
        self.telemetry = telemetry or Telemetry()
        self.telemetry.declare('profile.empty_intervals')
        self.log = log or LOG
        self.interval_s = float(interval_s)
        receiver = config.receiver
        self.samples_per_second = receiver.samples_per_second
        symbolizer = receiver.symbolizer
        self.symbolizer = Symbolizer(
            self.telemetry,
            # one byte cache, shared with the receiver's CFI tables (dwarf/auto unwinding)
            cache=memory_cache(symbolizer.memory_budget_mb),
            debug_dirs=tuple(symbolizer.debug_dirs),
            perf_map=symbolizer.perf_map,
            demangle=symbolizer.demangle,
            lines=symbolizer.lines,
            # as many processes as the receiver tracks: a smaller LRU thrashes on busy hosts
            max_processes=receiver_config(config, self.interval_s).max_processes,
            jit_frames_of=jit_frames_of,
        )
        # JVMs asked to write their perf maps, node processes that write none
        self.runtimes = JitRuntimes(section_dict(receiver), self.telemetry, symbolizer=self.symbolizer, log=self.log)
        self.processors = build_processors(
            {'processors': section_dict(config.processors)}, mode,
            http_factory=(lambda: http_factory({})) if http_factory else None,
            log=self.log, telemetry=self.telemetry, version=__version__, tagger=tagger, hostname=hostname,
        )
        self.exporters = build_exporters(
            section_dict(config.exporters), http_factory=http_factory, telemetry=self.telemetry,
            mode=mode, version=__version__, log=self.log,
        )
        self.uploader = self._build_uploader(http_factory)
        self.self_profiling = SelfProfiling(
            section_dict(config.ddprofiling), mode=mode, tags=list(config.tags or ()), telemetry=self.telemetry,
            version=__version__, http_factory=http_factory, agent_config=agent_config, log=self.log,
        )
        self.receiver: Any = None
        self.sampler_error = ''
        self._lock = threading.Lock()
        self._started = False
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------
    def _build_uploader(self, http_factory: Optional[HttpFactory]) -> Any:
        section = self.config.receiver.symbol_uploader
        if not section.enabled:
            return None
        from .uploader import SymbolUploader

        conf = section_dict(section)
        return SymbolUploader(conf, telemetry=self.telemetry, mode=self.mode, version=__version__,
                              http_factory=(lambda: http_factory(conf)) if http_factory else None, log=self.log)

    def start_components(self) -> None:
        """Start the processors' and uploader's background work (idempotent)."""
        if self._started:
            return
        from .processors.chain import start_processors

        start_processors(self.processors)
        if self.uploader is not None:
            self.uploader.start()
        # Kernel symbols are part of start-up: loaded when the first kernel frame shows up
        # instead, they would cost about 0.1 s of CPU at a random moment of the steady state.
        self.symbolizer.load_kernel_symbols()
        self._started = True

    def ensure_sampler(self) -> bool:
        """Start the sampler thread if it is not running. Returns True when sampling.

        A start-up failure is kept as ``sampler_error`` (one line: cause and fix) and is
        retried on the next run, never raised: the check keeps reporting its own metrics.
        """
        from .receiver.kernel import SamplerError
        from .receiver.receiver import Receiver

        if self._closed:
            return False
        if self.receiver is not None and self.receiver.running:
            self.receiver.heartbeat()
            return True
        try:
            self.receiver = Receiver(receiver_config(self.config, self.interval_s), telemetry=self.telemetry,
                                     log=self.log, memory_cache=self.symbolizer.cache.lru)
            # self-profiling lives as long as the sampler thread, however that thread ends
            self.receiver.on_stopped = self.self_profiling.stop
            self.receiver.start()
        except SamplerError as e:
            self.receiver = None
            if str(e) != self.sampler_error:
                self.log.error('host_profiler cannot sample: %s', e)
            self.sampler_error = str(e)
            return False
        self.sampler_error = ''
        self.self_profiling.start()
        return True

    def close(self) -> None:
        """Thread-safe and non-blocking: signals every background thread to stop."""
        from .processors.chain import close_processors

        with self._lock:
            self._closed = True
            receiver, self.receiver = self.receiver, None
        if receiver is not None:
            receiver.stop(block=False)
        self.runtimes.close()
        self.self_profiling.stop()
        close_processors(self.processors)
        if self.uploader is not None:
            self.uploader.close()
        for exporter in self.exporters:
            exporter.close()

    def flush(self, timeout_s: float) -> bool:
        """Wait (bounded) until every exporter queue is delivered; used before exiting."""
        deadline = time.monotonic() + timeout_s
        ok = True
        for exporter in self.exporters:
            ok = exporter.flush(max(0.0, deadline - time.monotonic())) and ok
        return ok

    # -- one run ----------------------------------------------------------------------------
    def run_once(self) -> RunResult:
        sampling = self.ensure_sampler()
        self.start_components()
        profile = None
        if sampling:
            profile = self._collect_profile()
            self._export(profile)
        return RunResult(profile=profile, sampling=sampling, sampler_error=self.sampler_error,
                         exporter_statuses=self.exporter_statuses())

    def stop_and_collect(self, timeout_s: float = 10.0) -> Optional[Profile]:
        """The last run of a command about to exit: stop the sampler (its final drains read
        everything counted since the previous run), then build and export those samples, so a
        signal between two runs loses nothing. Returns the profile (None when nothing was left)."""
        receiver = self.receiver
        if receiver is None or self._closed:
            return None
        receiver.stop(block=True, timeout=timeout_s)
        profile = self._collect_profile()
        self._export(profile)
        return profile

    def _export(self, profile: Optional[Profile]) -> None:
        if profile is None:
            return
        if not any(r.samples or r.off_cpu_samples for r in profile.resources):
            # nothing was sampled: no empty file, no empty request (counted, and in summary.json)
            self.telemetry.count('profile.empty_intervals', 1)
            return
        for exporter in self.exporters:
            try:
                exporter.export(profile)
            except Exception as e:  # an exporter must never break the run
                self.telemetry.count('export.errors', 1, ['reason:internal', 'exporter:' + exporter.name])
                self.log.warning('exporter %s failed: %s', exporter.name, e)

    def _collect_profile(self) -> Optional[Profile]:
        from .processors.chain import run_processors

        receiver = self.receiver
        if receiver is None:
            return None
        collected = receiver.collect()
        processes = collected.processes
        profile = build_profile(
            collected.samples,
            processes.get,
            self.symbolizer.symbolize_user,
            self.symbolizer.symbolize_kernel,
            time_unix_nano=collected.start_ns,
            duration_nano=max(0, collected.end_ns - collected.start_ns),
            period_nano=int(1e9 // self.samples_per_second),
        )
        try:
            self.runtimes.observe(profile, processes)
        except Exception as e:  # noqa: BLE001 - runtime support must never break the run
            self.log.warning('runtime perf maps: %s', e)
        profile = run_processors(self.processors, profile)
        if self.uploader is not None:
            self._report_executables(profile, processes)
        self.telemetry.gauge('profile.resources', len(profile.resources))
        return profile

    def _report_executables(self, profile: Profile, processes: Any) -> None:
        """Hand every mapped file seen in a native frame to the symbol uploader (O(1) each)."""
        seen = set()
        for resource in profile.resources:
            process = processes.get(resource.pid)
            if process is None:
                continue
            for sample in resource.samples:
                for frame in sample.frames:
                    mapping = frame.mapping
                    if mapping is None or frame.kind not in ('native', 'go'):
                        continue
                    key = (resource.pid, mapping.filename)
                    if key in seen:
                        continue
                    seen.add(key)
                    proc_mapping = process.find_mapping(frame.address)
                    if proc_mapping is not None:
                        self.uploader.report(process, proc_mapping)

    def exporter_statuses(self) -> List[Tuple[str, str, str]]:
        out = []
        for exporter in self.exporters:
            status = exporter.status()
            if status is not None:
                level, message = status
                out.append((exporter.name, level, message))
        return out
