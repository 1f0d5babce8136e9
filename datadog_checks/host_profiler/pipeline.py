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
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from .__about__ import __version__
from .profile.builder import build_profile
from .profile.model import Profile
from .runtime.telemetry import Telemetry
from .host.budget import memory_cache

LOG = logging.getLogger(__name__)

HttpFactory = Callable[[dict], Any]
AGENT_LOCK_PATH = '/opt/datadog-agent/run/host_profiler.lock'


@dataclass
class RunResult:
    profile: Optional[Profile]
    sampling: bool
    sampler_error: str = ''
    exporter_statuses: List[Tuple[str, str, str]] = field(default_factory=list)  # (name, level, message)


def check_interpreters(instance: Mapping[str, Any]) -> None:
    """Raise ``OptionError`` for a ``receiver.interpreters`` name that is not a supported runtime
    (``runtimes.RUNTIMES``), naming the valid ones. Here, not in ``config``: the registry is a
    layer above it."""
    from .config.validation import OptionError
    from .runtimes import RUNTIMES

    names = (instance.get('receiver') or {}).get('interpreters')
    if names is None:
        return
    if not isinstance(names, (list, tuple)):
        raise OptionError('must be a list of runtime names ({}), got {!r}'.format(', '.join(sorted(RUNTIMES)), names),
                          ['receiver', 'interpreters'])
    for i, name in enumerate(names):
        if name not in RUNTIMES:
            raise OptionError('unknown runtime {!r}: valid values are {} (an empty list switches them all off)'.format(
                name, ', '.join(sorted(RUNTIMES))), ['receiver', 'interpreters', i])


def receiver_config(instance: Dict[str, Any], interval_s: float):
    """The receiver's settings from the instance's ``receiver:`` section (spec.yaml names)."""
    import dataclasses

    from .receiver.receiver import DEFAULT_LOCK_PATH, ReceiverConfig

    check_interpreters(instance)
    conf = dict(instance.get('receiver') or {})
    # Spec names that differ from the receiver's own.
    renamed = {'max_stack_keys': 'counts_map_size'}
    for spec_name, field_name in renamed.items():
        if spec_name in conf:
            conf[field_name] = conf.pop(spec_name)
    if conf.get('comm_patterns'):
        conf['comm_include'] = '|'.join('(?:{})'.format(p) for p in conf['comm_patterns'])
    if conf.get('exclude_comm_patterns'):
        conf['comm_exclude'] = '|'.join('(?:{})'.format(p) for p in conf['exclude_comm_patterns'])
    known = {f.name for f in dataclasses.fields(ReceiverConfig)}
    values = {k: v for k, v in conf.items() if k in known and v is not None}
    # Under the Agent (user dd-agent) /run is not writable: use the Agent's own run directory.
    default_lock = AGENT_LOCK_PATH if instance.get('mode') == 'agent' else DEFAULT_LOCK_PATH
    values['lock_path'] = instance.get('lock_file') or default_lock
    values['check_interval'] = interval_s
    return ReceiverConfig(**values)


class ProfilerPipeline:
    """Builds and drives every stage for one normalised instance (see ``config.loader``)."""

    def __init__(
        self,
        instance: Dict[str, Any],
        *,
        mode: str,
        telemetry: Optional[Telemetry] = None,
        http_factory: Optional[HttpFactory] = None,
        log: Optional[logging.Logger] = None,
        hostname: Optional[Callable[[], str]] = None,
        tagger: Any = None,
        interval_s: float = 15.0,
        agent_config: Optional[Callable[[str], Any]] = None,
    ) -> None:
        from .exporters import build_exporters
        from .processors.pipeline import build_processors
        from .runtime.self_profiling import SelfProfiling

        check_interpreters(instance)  # before anything starts (receiver_config checks it too)
        from .symbols.lines import LINES_DEFAULT
        from .runtimes.jit import JitRuntimes, jit_frames_of
        from .symbols.symbolizer import Symbolizer

        self.instance = instance
        self.mode = mode
        self.telemetry = telemetry or Telemetry()
        self.telemetry.declare('profile.empty_intervals')
        self.log = log or LOG
        self.interval_s = float(interval_s)
        receiver_conf = instance.get('receiver') or {}
        self.receiver_conf = receiver_conf
        self.samples_per_second = int(receiver_conf.get('samples_per_second') or 20)
        symbolizer_conf = receiver_conf.get('symbolizer') or {}
        self.symbolizer = Symbolizer(
            self.telemetry,
            # one byte cache, shared with the receiver's CFI tables (dwarf/auto unwinding)
            cache=memory_cache(symbolizer_conf.get('memory_budget_mb')),
            debug_dirs=tuple(symbolizer_conf.get('debug_dirs') or ('/usr/lib/debug',)),
            perf_map=bool(symbolizer_conf.get('perf_map', True)),
            demangle=symbolizer_conf.get('demangle') or 'simplified',
            lines=bool(symbolizer_conf.get('lines', LINES_DEFAULT)),
            # as many processes as the receiver tracks: a smaller LRU thrashes on busy hosts
            max_processes=int(receiver_conf.get('max_processes') or 16384),
            jit_frames_of=jit_frames_of,
        )
        # JVMs asked to write their perf maps, node processes that write none
        self.runtimes = JitRuntimes(receiver_conf, self.telemetry, symbolizer=self.symbolizer, log=self.log)
        self.processors = build_processors(
            instance, mode, http=http_factory({}) if http_factory else None, log=self.log,
            telemetry=self.telemetry, version=__version__, tagger=tagger, hostname=hostname,
        )
        self.exporters = build_exporters(
            instance.get('exporters') or {}, http_factory=http_factory, telemetry=self.telemetry,
            mode=mode, version=__version__, log=self.log,
        )
        self.uploader = self._build_uploader(http_factory)
        self.self_profiling = SelfProfiling(
            instance.get('ddprofiling'), mode=mode, tags=instance.get('tags'), telemetry=self.telemetry,
            version=__version__, http_factory=http_factory, agent_config=agent_config, log=self.log,
        )
        self.receiver: Any = None
        self.sampler_error = ''
        self._lock = threading.Lock()
        self._started = False
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------
    def _build_uploader(self, http_factory: Optional[HttpFactory]) -> Any:
        conf = self.receiver_conf.get('symbol_uploader') or {}
        if not conf.get('enabled'):
            return None
        from .uploader import SymbolUploader

        return SymbolUploader(conf, telemetry=self.telemetry, mode=self.mode, version=__version__,
                              http_factory=(lambda: http_factory(conf)) if http_factory else None, log=self.log)

    def start_components(self) -> None:
        """Start the processors' and uploader's background work (idempotent)."""
        if self._started:
            return
        from .processors.pipeline import start_processors

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
            self.receiver = Receiver(receiver_config(self.instance, self.interval_s), telemetry=self.telemetry,
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
        from .processors.pipeline import close_processors

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
        from .processors.pipeline import run_processors

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
