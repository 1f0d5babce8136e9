# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The Agent check: a thin adapter between ``ProfilerPipeline`` and the Agent.

The first run starts the sampler thread (inside the pipeline's receiver); every run drains,
builds, processes and exports one profile, then submits the profiler's own telemetry,
service checks, inventory metadata and the flare diagnostics file.
"""
from __future__ import annotations

import platform
import time
from typing import Any, Dict, List, Optional

from datadog_checks.base import AgentCheck
from datadog_checks.base.agent import datadog_agent

from .__about__ import __version__
from .config.loader import section_dict
from .config_models import ConfigMixin
from .profiler_pipeline import ProfilerPipeline, RunResult
from .runtime.malloc_trim import release_freed_memory
from .runtime.telemetry import COUNT, Metric, Telemetry

SERVICE_CHECK_SAMPLE = 'can_sample'
SERVICE_CHECK_EXPORT = 'can_export'
_LEVELS = {'ok': AgentCheck.OK, 'warning': AgentCheck.WARNING, 'critical': AgentCheck.CRITICAL}


class HostProfilerCheck(ConfigMixin, AgentCheck):
    __NAMESPACE__ = 'host_profiler'

    def __init__(self, name: str, init_config: Dict[str, Any], instances: List[Dict[str, Any]]) -> None:
        super().__init__(name, init_config, instances)
        self.telemetry = Telemetry()
        self.mode = ''
        self.pipeline: Optional[ProfilerPipeline] = None
        self.last_result: Optional[RunResult] = None
        self.process_metrics: Any = None
        self.bpf_stats: Any = None
        self.diagnostics: Any = None
        self.health_metrics: Any = None
        self.hostname: Any = None
        self._metadata_sent = False
        # The converter must run before the config models validate the instance.
        self.check_initializations.appendleft(self._normalize_instance)
        self.check_initializations.append(self._build)

    # -- initialisation ---------------------------------------------------------------------
    def _normalize_instance(self) -> None:
        from .config.loader import load_instance, resolve_mode
        from .runtime.scrub import secrets_in

        self.mode = resolve_mode('auto', self.instance)  # the instance's own mode:, else where it runs
        notes: List[str] = []
        instance, warnings = load_instance(dict(self.instance), self.mode, notes=notes)
        for secret in secrets_in(instance):
            self.register_secret(secret)
        # what the converter added where the user gave no value is INFO; a user's value that
        # conflicts stays a warning (shown on the Agent's status page too)
        for message in notes:
            self.log.info(message)
        for message in warnings:
            self.warning(message)
        self.instance = instance
        self.instances = [instance]

    def _build(self) -> None:
        from .runtime.bpf_stats import BpfStats
        from .runtime.diagnostics import Diagnostics
        from .runtime.hostname import HostnameProvider
        from .runtime.process_metrics import ProcessMetrics
        from .runtime.scrub import secrets_in

        config = self.config  # the typed InstanceConfig, validated once from the converted instance
        # never the stubs' placeholder outside the Agent (runtime/hostname.py)
        self.hostname = HostnameProvider(config.hostname, log=self.log)
        self.pipeline = ProfilerPipeline(
            config,
            telemetry=self.telemetry,
            http_factory=self._http_client,
            log=self.log,
            hostname=self.hostname,
            interval_s=config.min_collection_interval,
            agent_config=datadog_agent.get_config if self.mode == 'agent' else None,
        )
        self.process_metrics = ProcessMetrics(self.telemetry)
        self.bpf_stats = BpfStats(self.telemetry, self._bpf_program_ids, enable_bpf_stats=config.enable_bpf_stats,
                                  log=self.log)
        self.diagnostics = Diagnostics(config.diagnostics_dir or None, self.telemetry,
                                       secrets=secrets_in(self.instance))
        # the flare shows the configuration as converted (scrubbed), not every default
        self.diagnostics.set_config(self.instance)
        self.health_metrics = self._build_health_metrics()

    def _build_health_metrics(self) -> Any:
        """Standalone only: the same telemetry as OTLP metrics (as the Go host profiler's health metrics).
        The endpoint defaults to the first otlp_http exporter's, with its headers."""
        health = self.config.health_metrics
        if self.mode != 'standalone' or not health.enabled:
            return None
        endpoint, headers = health.endpoint, {}
        if not endpoint:
            exporters = self.config.exporters.otlp_http
            if not exporters:
                return None
            endpoint, headers = exporters[0].endpoint, dict(exporters[0].headers)
        from .runtime.otlp_metrics import OtlpMetricsExporter

        return OtlpMetricsExporter(endpoint, headers=headers, session=self._http_client(section_dict(health)),
                                   telemetry=self.telemetry, host_name=self.hostname(), timeout=5.0, log=self.log)

    def _http_client(self, _component_config: Dict[str, Any]) -> Any:
        """An HTTP client configured exactly as ``self.http`` (Agent proxy, TLS, timeouts).

        Each sender thread (one per endpoint, the uploader's workers) gets its own, because a
        requests session is not guaranteed to be thread-safe."""
        from datadog_checks.base.utils.http import RequestsWrapper

        return RequestsWrapper(self.instance or {}, self.init_config, self.HTTP_CONFIG_REMAPPER, self.log)

    def _bpf_program_ids(self):
        receiver = self.pipeline.receiver if self.pipeline else None
        return receiver.program_ids() if receiver is not None else {}

    # -- the run ----------------------------------------------------------------------------
    def check(self, _: Any) -> None:
        started = time.monotonic()
        result = self.pipeline.run_once()
        self.last_result = result
        self._service_checks(result)
        self._send_metadata()
        self.process_metrics.collect()
        self.bpf_stats.collect()
        release_freed_memory()
        self.telemetry.gauge('check.duration', time.monotonic() - started)
        self._submit_telemetry()
        self._update_diagnostics(result)

    def _service_checks(self, result: RunResult) -> None:
        tags = list(self.config.tags or ())
        if result.sampling:
            self.service_check(SERVICE_CHECK_SAMPLE, self.OK, tags=tags)
        else:
            self.service_check(SERVICE_CHECK_SAMPLE, self.CRITICAL, tags=tags,
                               message=result.sampler_error or 'the sampler is not running')
        if not result.exporter_statuses:
            return
        worst = max(result.exporter_statuses, key=lambda s: _LEVELS.get(s[1], self.UNKNOWN))
        status = _LEVELS.get(worst[1], self.UNKNOWN)
        message = '; '.join('{}: {}'.format(name, msg) for name, level, msg in result.exporter_statuses
                            if level != 'ok' and msg)
        self.service_check(SERVICE_CHECK_EXPORT, status, tags=tags,
                           message=None if status == self.OK else (message or None))

    def _submit_telemetry(self) -> None:
        tags = list(self.config.tags or ())
        metrics: List[Metric] = self.telemetry.snapshot()
        for metric in metrics:
            submit = self.count if metric.type == COUNT else self.gauge
            submit(metric.name, metric.value, tags=tags + list(metric.tags))
        if self.health_metrics is not None:
            self.health_metrics.export(metrics)

    def _send_metadata(self) -> None:
        if self._metadata_sent:
            return
        from .host.kernel import bcc_version

        receiver = self.config.receiver
        features = ['cpu']
        if receiver.off_cpu_threshold > 0:
            features.append('off_cpu')
        if receiver.symbol_uploader.enabled:
            features.append('symbol_upload')
        features.append('unwinding:' + receiver.unwinding)
        if self.pipeline is not None and self.pipeline.self_profiling.enabled:
            features.append('self_profiling')
        self.set_metadata('version', __version__)
        self.set_metadata('bcc_version', bcc_version() or 'unknown')
        self.set_metadata('kernel_release', platform.release())
        self.set_metadata('mode', self.mode)
        self.set_metadata('samples_per_second', str(receiver.samples_per_second))
        self.set_metadata('features', ','.join(features))
        self._metadata_sent = True

    def _update_diagnostics(self, result: RunResult) -> None:
        from .profile.folded import folded_counts

        if result.sampler_error:
            self.diagnostics.record_error(result.sampler_error)
        for name, level, message in result.exporter_statuses:
            if level != 'ok':
                self.diagnostics.record_error('{}: {}'.format(name, message))
        receiver = self.pipeline.receiver
        self.diagnostics.set_sampler_state({
            'running': bool(receiver is not None and receiver.running),
            'mode': self.mode,
            'error': result.sampler_error,
        })
        self.diagnostics.set_extra('runtimes', self.pipeline.runtimes.diagnostics())
        self.diagnostics.set_extra('self_profiling', self.pipeline.self_profiling.status())
        if not self.diagnostics.due():  # written at most once a minute: fold stacks only then
            return
        if result.profile is not None and result.profile.resources:
            self.diagnostics.set_top_stacks(folded_counts([result.profile]))
        self.diagnostics.maybe_write()

    def cancel(self) -> None:
        """Thread-safe and non-blocking: the threads detach BPF programs and exit on their own."""
        if self.pipeline is not None:
            self.pipeline.close()
        if self.process_metrics is not None:
            self.process_metrics.close()
        if self.bpf_stats is not None:
            self.bpf_stats.close()
