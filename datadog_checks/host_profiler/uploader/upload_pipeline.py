# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The upload pipeline (the Go host profiler's ``pipeline``/``symbol_uploader``):

    submit() ─▶ bounded queue (drops + counts when full)
             ─▶ retrieval workers (open the ELF, find a separate debug file, local symbol source)
             ─▶ batcher (every ``symbol_query_interval``, ≤ 100 items; interval 0: no batching)
             ─▶ query worker(s) (which build ids each backend has, at which level)
             ─▶ upload workers (objcopy + multipart POST to the endpoints that need it,
                gated by the byte semaphore)

Every item ends in ``on_done(item, ok)``: ``ok=False`` (failure, no symbols, failed query)
makes the reporter forget it so that it is retried the next time it is seen. Threads are
daemons; ``close()`` returns within its bound and kills a running objcopy.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional

from . import elfsource, upload as http_upload
from .config import MAX_BATCH, QUERY_WORKERS_UNBATCHED, SymbolEndpoint, UploaderConfig
from .elfsource import LocalSymbols
from .byte_budget import ByteSemaphore
from .symbol_copier import SymbolCopier

_STOP = object()


class Item:
    """One executable or library on its way through the pipeline."""

    __slots__ = ('key', 'path', 'root', 'local', 'targets', 'failed', 'content_key')

    def __init__(self, key: Any, path: str, root: str) -> None:
        self.key = key
        self.path = path  # as the process sees it
        self.root = root  # '/proc/PID/root'
        self.local: Optional[LocalSymbols] = None
        self.targets: List[SymbolEndpoint] = []
        self.failed = False
        self.content_key: Optional[str] = None

    def __repr__(self) -> str:
        return 'Item({})'.format(self.path)


class UploadPipeline:
    def __init__(
        self,
        config: UploaderConfig,
        telemetry,
        copier: SymbolCopier,
        http_factory: Callable[[], Any],
        on_done: Callable[[Item, bool], None],
        claim_content: Callable[[Item], bool],
        origin: str,
        origin_version: str,
        log: Optional[logging.Logger] = None,
        memory: Optional[ByteSemaphore] = None,
        clock: Callable[[], float] = time.monotonic,
        inspect: Callable[..., LocalSymbols] = elfsource.inspect,
    ) -> None:
        self.config = config
        self.telemetry = telemetry
        self.copier = copier
        self._http_factory = http_factory
        self._http_local = threading.local()
        self._on_done = on_done
        self._claim_content = claim_content
        self.origin = origin
        self.origin_version = origin_version
        self.log = log or logging.getLogger(__name__)
        self.memory = memory or ByteSemaphore(None)
        self._clock = clock
        self._inspect = inspect
        self._in: 'queue.Queue[Any]' = queue.Queue(maxsize=config.queue_size)
        self._retrieved: 'queue.Queue[Any]' = queue.Queue()
        self._batches: 'queue.Queue[Any]' = queue.Queue()
        self._uploads: 'queue.Queue[Any]' = queue.Queue()
        self._stop = threading.Event()
        self._flush_now = threading.Event()
        self._threads: List[threading.Thread] = []
        self._pending = 0
        self._idle = threading.Condition()
        self._pool: Optional[ThreadPoolExecutor] = None
        self.batched = config.symbol_query_interval > 0

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._threads:
            return
        if len(self.config.endpoints) > 1:
            self._pool = ThreadPoolExecutor(max_workers=self.config.upload_workers * len(self.config.endpoints),
                                            thread_name_prefix='hp-symbol-upload-ep')
        spawn = self._spawn
        for i in range(self.config.retrieval_workers):
            spawn(self._retrieval_loop, 'hp-symbol-retrieval-{}'.format(i))
        if self.batched:
            spawn(self._batch_loop, 'hp-symbol-batcher')
            spawn(self._query_loop, 'hp-symbol-query')
        else:
            for i in range(QUERY_WORKERS_UNBATCHED):
                spawn(self._query_loop, 'hp-symbol-query-{}'.format(i))
        for i in range(self.config.upload_workers):
            spawn(self._upload_loop, 'hp-symbol-upload-{}'.format(i))

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=self._guard, args=(target,), name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _guard(self, target: Callable[[], None]) -> None:
        try:
            target()
        except Exception:  # a bug must not kill the worker silently
            self.log.exception('symbol uploader worker crashed')

    def close(self, timeout: float = 2.0) -> None:
        """Stop every worker; returns within ``timeout`` (threads are daemons)."""
        self._stop.set()
        self.copier.abort()
        for q in (self._in, self._retrieved, self._batches, self._uploads):
            for _ in range(len(self._threads)):
                try:
                    q.put_nowait(_STOP)
                except queue.Full:
                    break
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        self._threads = []

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    # -- entry -----------------------------------------------------------------------------
    def submit(self, item: Item) -> bool:
        """Non-blocking enqueue; False (and ``symbol_upload.dropped{reason:queue_full}``) when full."""
        if self._stop.is_set():
            return False
        with self._idle:
            self._pending += 1
        try:
            self._in.put_nowait(item)
        except queue.Full:
            self._finish_count()
            self.telemetry.count('symbol_upload.dropped', 1, ('reason:queue_full',))
            return False
        self.telemetry.count('symbol_upload.queued', 1)
        return True

    def flush(self) -> None:
        """Make the batcher send what it holds now (tests, shutdown of one-shot runs)."""
        self._flush_now.set()

    def wait_idle(self, timeout: float) -> bool:
        """True once every submitted item has left the pipeline."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._flush_now.set()
                self._idle.wait(min(left, 0.05))
        return True

    def _finish_count(self) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def _done(self, item: Item, ok: bool) -> None:
        try:
            self._on_done(item, ok)
        finally:
            self._finish_count()

    def _get(self, q: 'queue.Queue[Any]', timeout: float = 0.5) -> Any:
        while not self._stop.is_set():
            try:
                got = q.get(timeout=timeout)
            except queue.Empty:
                continue
            if got is _STOP:
                return _STOP
            return got
        return _STOP

    # -- retrieval -------------------------------------------------------------------------
    def _retrieval_loop(self) -> None:
        while True:
            item = self._get(self._in)
            if item is _STOP:
                return
            self._retrieve(item)

    def _retrieve(self, item: Item) -> None:
        cfg = self.config
        try:
            item.local = self._inspect(item.path, item.root, cfg.upload_dynamic_symbols, cfg.upload_go_pcln_tab)
        except FileNotFoundError:
            self.telemetry.count('symbol_upload.errors', 1, ('reason:file_not_found',))
            self._done(item, False)
            return
        except Exception as e:
            self.log.debug('cannot read symbols of %s: %s', item.path, e)
            self.telemetry.count('symbol_upload.errors', 1, ('reason:retrieval',))
            self._done(item, False)
            return
        if item.local.source == elfsource.NONE:
            self.telemetry.count('symbol_upload.skipped', 1, ('reason:no_symbols',))
            self._done(item, False)
            return
        item.content_key = item.local.file_hash
        if not self._claim_content(item):
            # the same file under another path/inode is already handled: nothing more to do
            self._done(item, True)
            return
        if self.batched:
            self._retrieved.put(item)
        else:
            self._batches.put([item])

    # -- batching and query ----------------------------------------------------------------
    def _batch_loop(self) -> None:
        interval = self.config.symbol_query_interval
        pending: List[Item] = []
        next_flush = self._clock() + interval
        while not self._stop.is_set():
            timeout = min(0.05, max(0.0, next_flush - self._clock()))
            try:
                got = self._retrieved.get(timeout=timeout or 0.001)
            except queue.Empty:
                got = None
            if got is _STOP:
                return
            if got is not None:
                pending.append(got)
            if len(pending) >= MAX_BATCH:
                self._batches.put(pending[:MAX_BATCH])
                pending = pending[MAX_BATCH:]
            now = self._clock()
            if now >= next_flush or self._flush_now.is_set():
                if self._flush_now.is_set() and self._retrieved.qsize():
                    continue  # drain what is already there into this batch first
                self._flush_now.clear()
                while pending:
                    self._batches.put(pending[:MAX_BATCH])
                    pending = pending[MAX_BATCH:]
                next_flush = now + interval

    def _query_loop(self) -> None:
        while True:
            batch = self._get(self._batches)
            if batch is _STOP:
                return
            try:
                self._query(batch)
            except Exception:
                self.log.exception('symbols query failed')
                for item in batch:
                    self._done(item, False)

    def _http(self):
        session = getattr(self._http_local, 'session', None)
        if session is None:
            session = self._http_local.session = self._http_factory()
        return session

    def _query(self, batch: List[Item]) -> None:
        cfg = self.config
        if cfg.dry_run:  # nothing leaves the host: every endpoint is a target, the upload logs
            for item in batch:
                item.targets = list(cfg.endpoints)
                self._uploads.put(item)
            return
        by_arch: Dict[str, List[Item]] = {}
        for item in batch:
            by_arch.setdefault(item.local.arch, []).append(item)
        for arch, items in by_arch.items():
            ids = sorted({it.local.query_build_id for it in items})
            for ep in cfg.endpoints:
                try:
                    levels = http_upload.query(self._http(), ep, ids, arch, cfg.query_timeout)
                except http_upload.UploadError as e:
                    self.log.warning('%s', e)
                    self.telemetry.count('symbol_upload.errors', 1, ('reason:' + e.reason,))
                    for it in items:
                        it.failed = True
                    continue
                self.telemetry.count('symbol_upload.queried', len(ids))
                for it in items:
                    backend = levels.get(it.local.query_build_id, elfsource.NONE)
                    if elfsource.rank(backend) < elfsource.rank(it.local.source):
                        it.targets.append(ep)
        for item in batch:
            if item.targets:
                self._uploads.put(item)
            elif item.failed:
                self._done(item, False)
            else:
                self.telemetry.count('symbol_upload.skipped', 1, ('reason:backend_has_symbols',))
                self._done(item, True)

    # -- upload ----------------------------------------------------------------------------
    def _upload_loop(self) -> None:
        while True:
            item = self._get(self._uploads)
            if item is _STOP:
                return
            ok = False
            try:
                ok = self._upload(item)
            except Exception:
                self.log.exception('symbol upload of %s failed', item.path)
                self.telemetry.count('symbol_upload.errors', 1, ('reason:internal',))
            self._done(item, ok and not item.failed)

    def _upload(self, item: Item) -> bool:
        local = item.local
        taken = self.memory.acquire(local.symbol_file_size, self._stop)
        if taken is None:
            return False
        try:
            try:
                result = self.copier.copy(local)
            except Exception as e:
                self.log.warning('cannot extract symbols of %s: %s', local.filename, e)
                self.telemetry.count('symbol_upload.errors', 1, ('reason:objcopy',))
                return False
            try:
                if self.config.dry_run:
                    self.log.info('dry run: would upload %s (%s, %d bytes, build id %s) to %s', local.filename,
                                  local.source, result.size, local.query_build_id,
                                  ', '.join(ep.name for ep in item.targets))
                    self.telemetry.count('symbol_upload.skipped', 1, ('reason:dry_run',))
                    return True
                compress_body = not result.debug_compressed and not self.config.disable_debug_section_compression
                if self._pool is not None and len(item.targets) > 1:
                    futures = [self._pool.submit(self._send, ep, item, result.path, compress_body)
                               for ep in item.targets]
                    results = [f.result() for f in futures]
                else:
                    results = [self._send(ep, item, result.path, compress_body) for ep in item.targets]
                return all(results)
            finally:
                result.close()
        finally:
            self.memory.release(taken)

    def _send(self, ep: SymbolEndpoint, item: Item, path: str, compress_body: bool) -> bool:
        local = item.local
        try:
            sent = http_upload.upload(
                self._http(), ep, local, path, origin=self.origin, origin_version=self.origin_version,
                compress_body=compress_body, timeout=self.config.upload_timeout, temp_dir=self.config.temp_dir,
            )
        except http_upload.UploadError as e:
            self.log.warning('%s', e)
            self.telemetry.count('symbol_upload.errors', 1, ('reason:' + e.reason,))
            return False
        except Exception as e:
            self.log.warning('upload of %s to %s failed: %s', local.filename, ep.name, type(e).__name__)
            self.telemetry.count('symbol_upload.errors', 1, ('reason:request',))
            return False
        self.log.debug('uploaded symbols of %s (%s, %d bytes) to %s', local.filename, local.source, sent, ep.name)
        self.telemetry.count('symbol_upload.uploaded', 1, ('symbol_source:' + local.source,))
        self.telemetry.count('symbol_upload.bytes', sent)
        return True
