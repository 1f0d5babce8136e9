# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""``SymbolUploader``: what the check wires. Builds the reporter, copier and pipeline.

    up = SymbolUploader(config_dict, telemetry=t, mode='agent', version='7.60.0',
                        http_factory=lambda: self.http, log=self.log)
    up.start()                      # checks objcopy, keeps our oom_score_adj sane, starts threads
    up.report(process, mapping)     # O(1), never blocks; process.root, mapping.path/dev/inode
    up.close()                      # bounded
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Any, Callable, Dict, Mapping, Optional, Union

from ..__about__ import NAME_BUNDLED, NAME_STANDALONE
from ..host.files import FileOpener
from ..runtime.oom import keep_own_oom_score_sane
from . import elfsource
from .config import UploaderConfig, parse_config
from .byte_budget import ByteSemaphore, upload_budget_bytes
from .upload_pipeline import UploadPipeline
from .reporter import LRU_SIZE, ExecutableReporter
from .symbol_copier import SymbolCopier, SymbolCopyError

ORIGIN_AGENT = NAME_BUNDLED
ORIGIN_STANDALONE = NAME_STANDALONE

METRICS = (
    'symbol_upload.reported', 'symbol_upload.queued', 'symbol_upload.dropped', 'symbol_upload.queried',
    'symbol_upload.uploaded', 'symbol_upload.bytes', 'symbol_upload.errors', 'symbol_upload.skipped',
)


class SymbolUploaderError(Exception):
    """Start-up problem (objcopy missing); one line with cause and fix."""


def _default_http_factory():
    import requests

    return requests.Session()


class SymbolUploader:
    def __init__(
        self,
        config: Union[Mapping[str, Any], UploaderConfig, None],
        *,
        telemetry,
        mode: str = 'agent',
        version: str = '',
        http_factory: Optional[Callable[[], Any]] = None,
        log: Optional[logging.Logger] = None,
        clock: Callable[[], float] = time.monotonic,
        memory_budget: Union[int, None, str] = 'auto',
        lru_size: int = LRU_SIZE,
    ) -> None:
        self.config = config if isinstance(config, UploaderConfig) else parse_config(config)
        self.telemetry = telemetry
        self.log = log or logging.getLogger(__name__)
        self.origin = ORIGIN_AGENT if mode == 'agent' else ORIGIN_STANDALONE
        self.origin_version = version or ''
        budget = upload_budget_bytes() if memory_budget == 'auto' else memory_budget
        self.memory = ByteSemaphore(budget)
        cfg = self.config
        opener = FileOpener(telemetry)  # every file of a process: inside its root, regular, size-capped
        self.copier = SymbolCopier(
            objcopy=cfg.objcopy, timeout=cfg.objcopy_timeout, temp_dir=cfg.temp_dir,
            upload_dynamic_symbols=cfg.upload_dynamic_symbols, upload_go_pcln_tab=cfg.upload_go_pcln_tab,
            compress=not cfg.disable_debug_section_compression, opener=opener,
        )
        self.reporter = ExecutableReporter(self._submit, telemetry, lru_size)
        self.pipeline = UploadPipeline(
            cfg, telemetry, self.copier, http_factory or _default_http_factory, self.reporter.done,
            self.reporter.claim_content, self.origin, self.origin_version, log=self.log, memory=self.memory,
            clock=clock, inspect=functools.partial(elfsource.inspect, opener=opener),
        )
        self.objcopy_version = ''
        self._started = False

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    @property
    def running(self) -> bool:
        return self._started and not self.pipeline.closed

    def start(self) -> None:
        """Start the workers. Raises SymbolUploaderError when objcopy is missing."""
        if not self.config.enabled or self._started:
            return
        try:
            self.objcopy_version = self.copier.check_available()
        except SymbolCopyError as e:
            raise SymbolUploaderError(str(e))
        keep_own_oom_score_sane(log=self.log)
        for name in METRICS:
            if name not in ('symbol_upload.dropped', 'symbol_upload.errors', 'symbol_upload.skipped',
                            'symbol_upload.uploaded'):
                self.telemetry.declare(name)
        self.telemetry.declare('symbol_upload.dropped', ('reason:queue_full',))
        self.pipeline.start()
        self._started = True
        self.log.info('symbol uploader started (%d endpoint(s), %s, memory budget %s, objcopy zstd probed on first use)',
                      len(self.config.endpoints), 'dry run' if self.config.dry_run else 'live',
                      self.memory.capacity or 'unlimited')

    def _submit(self, item) -> bool:
        return self.pipeline.submit(item)

    def report(self, process: Any, mapping: Any) -> bool:
        """A native frame's mapping was seen in a sample. O(1), non-blocking."""
        if not self._started or self.pipeline.closed:
            return False
        path = getattr(mapping, 'path', '') or ''
        root = getattr(process, 'root', '') or ''
        if not root:
            pid = getattr(process, 'pid', None)
            root = '/proc/{}/root'.format(pid) if pid else '/'
        return self.reporter.report(path, root, mapping)

    def report_file(self, path: str, root: str = '/', mapping: Any = None) -> bool:
        """Report a file directly (tests, CLI)."""
        if not self._started or self.pipeline.closed:
            return False
        return self.reporter.report(path, root, mapping)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Flush the batcher and wait until everything reported so far is finished."""
        return self.pipeline.wait_idle(timeout)

    def close(self, timeout: float = 2.0) -> None:
        if self._started:
            self.pipeline.close(timeout)

    def diagnostics(self) -> Dict[str, Any]:
        """Scrubbed state for the flare (no API keys)."""
        return {
            'enabled': self.config.enabled,
            'dry_run': self.config.dry_run,
            'endpoints': [ep.name for ep in self.config.endpoints],
            'origin': self.origin,
            'objcopy': self.objcopy_version,
            'objcopy_zstd': self.copier.zstd_supported,
            'memory_budget_bytes': self.memory.capacity,
            'memory_peak_bytes': self.memory.peak,
            'files_known': len(self.reporter.files),
        }
