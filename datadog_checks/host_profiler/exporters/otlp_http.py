# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The ``otlp_http`` exporter: OTLP profiles over HTTP to one endpoint.

One instance per configured endpoint (``exporters: otlp_http: [...]``), each with its own
delivery queue and sender thread (see ``queue.py``), so a dead endpoint never delays
another, nor ``export()``, which only encodes (once, shared) and enqueues.

Headers: the user's headers first, then the reserved ones (``content-type``,
``content-encoding`` and, for Datadog, ``dd-evp-origin``, ``dd-evp-origin-version``,
``dd-otel-metric-config``), which a user header cannot override. ``dd-api-key`` comes
from the user's headers or ``api_key``; no header value is ever logged.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, Optional, Tuple
from urllib.parse import urlsplit

from ..__about__ import NAME_BUNDLED, NAME_STANDALONE
from ..runtime.telemetry import Telemetry
from .base import Exporter, config_error
from .encoding import COMPRESSIONS, SharedEncoder, zstd_available
from .queue import OK, REJECT, RETRY, DeliveryQueue, Item, RetryPolicy, SendResult, parse_retry_after

PROFILES_PATH = '/v1development/profiles'
CONTENT_TYPE = 'application/x-protobuf'
DD_METRIC_CONFIG = '{"resource_attributes_as_tags": true}'
ORIGIN_AGENT = NAME_BUNDLED
ORIGIN_STANDALONE = NAME_STANDALONE
RESERVED_HEADERS = (
    'dd-evp-origin',
    'dd-evp-origin-version',
    'dd-otel-metric-config',
    'content-type',
    'content-encoding',
)
API_KEY_HEADER = 'dd-api-key'
SECRET_HEADER_HINTS = ('key', 'token', 'auth', 'secret', 'password', 'cookie')

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_QUEUE_SIZE_MB = 64.0
DEFAULT_COMPRESSION = 'gzip'
DEFAULT_RETRY = {'initial_interval': 5.0, 'max_interval': 30.0, 'max_elapsed_time': 0.0}
BODY_EXCERPT = 200

STATUS_OK = 'ok'
STATUS_WARNING = 'warning'
STATUS_CRITICAL = 'critical'


def profiles_url(endpoint: str) -> str:
    """``<endpoint>/v1development/profiles``, without a double slash; an endpoint that
    already ends with the profiles path is used as is."""
    base = endpoint.strip().rstrip('/')
    if base.endswith(PROFILES_PATH):
        return base
    return base + PROFILES_PATH


def endpoint_host(endpoint: str) -> str:
    """The host (and non-default port) for tags and messages: no scheme, credentials or path."""
    parts = urlsplit(endpoint if '://' in endpoint else 'http://' + endpoint)
    host = parts.hostname or endpoint
    if parts.port and not (
        (parts.scheme == 'https' and parts.port == 443) or (parts.scheme == 'http' and parts.port == 80)
    ):
        host = '{}:{}'.format(host, parts.port)
    return host


def safe_endpoint(endpoint: str) -> str:
    """The endpoint as shown to users: scheme://host[:port]/path, never credentials or query."""
    parts = urlsplit(endpoint if '://' in endpoint else 'http://' + endpoint)
    netloc = parts.hostname or ''
    if parts.port:
        netloc += ':{}'.format(parts.port)
    return '{}://{}{}'.format(parts.scheme, netloc, parts.path)


def is_datadog_site(host: str) -> bool:
    host = host.split(':')[0].lower()
    return any(
        host == d or host.endswith('.' + d) for d in ('datadoghq.com', 'datadoghq.eu', 'ddog-gov.com', 'datad0g.com')
    )


def _is_requests_wrapper(session: Any) -> bool:
    try:
        from datadog_checks.base.utils.http import RequestsWrapper
    except Exception:  # pragma: no cover - base not installed
        return False
    return isinstance(session, RequestsWrapper)


def _excerpt(content: Any) -> str:
    if not content:
        return ''
    if isinstance(content, bytes):
        text = content[: BODY_EXCERPT * 2].decode('utf-8', errors='replace')
    else:
        text = str(content)[: BODY_EXCERPT * 2]
    text = ''.join(c if c.isprintable() else ' ' for c in text)
    text = ' '.join(text.split())
    return text[:BODY_EXCERPT]


def _number(cfg: dict, key: str, path: str, default: float, minimum: float = 0.0) -> float:
    value = cfg.get(key)
    if value is None:
        return float(default)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise config_error('{}.{} must be a number, got {!r}'.format(path, key, value))
    if value < minimum:
        raise config_error('{}.{} must be >= {}, got {}'.format(path, key, minimum, value))
    return value


class OtlpHttpExporter(Exporter):
    kind = 'otlp_http'

    def __init__(
        self,
        config: dict,
        *,
        session: Any,
        telemetry: Telemetry,
        encoder: SharedEncoder,
        mode: str = 'standalone',
        version: str = '',
        log: Optional[logging.Logger] = None,
        path: str = 'exporters.otlp_http[0]',
        name: Optional[str] = None,
    ) -> None:
        self.log = log or logging.getLogger(__name__)
        self._telemetry = telemetry
        self._encoder = encoder
        self._session = session
        self._wrapper = _is_requests_wrapper(session)
        cfg = dict(config or {})
        self.path = path

        site = cfg.get('site')
        endpoint = cfg.get('endpoint')
        if not endpoint and site:
            endpoint = 'https://otlp.{}'.format(str(site).strip().strip('/'))
        if not endpoint or not isinstance(endpoint, str):
            raise config_error(
                '{}.endpoint is required (an OTLP HTTP endpoint, e.g. https://otlp.datadoghq.com)'.format(path)
            )
        self.endpoint = endpoint.strip()
        self.url = profiles_url(self.endpoint)
        self.host = endpoint_host(self.endpoint)
        self.display = safe_endpoint(self.url)
        self.name = name or 'otlp_http/{}'.format(self.host)
        self.tags = ('endpoint:' + self.host,)

        compression = cfg.get('compression', DEFAULT_COMPRESSION)
        compression = 'none' if compression in (None, '', False) else str(compression).lower()
        if compression not in COMPRESSIONS:
            raise config_error(
                '{}.compression must be one of {}, got {!r}'.format(path, ', '.join(COMPRESSIONS), compression)
            )
        if compression == 'zstd' and not zstd_available():
            raise config_error('{}.compression is zstd but the zstandard module is not installed'.format(path))
        self.compression = compression
        # timeout: per request. Unset, a RequestsWrapper keeps the Agent's own timeout
        # settings (instance/init_config `timeout`, default 10 s); a plain session gets 10 s.
        self._timeout_set = cfg.get('timeout') is not None
        self.timeout = _number(cfg, 'timeout', path, DEFAULT_TIMEOUT_S, 0.001)
        queue_mb = _number(cfg, 'queue_size_mb', path, DEFAULT_QUEUE_SIZE_MB, 0.0)
        retry_cfg = cfg.get('retry') or {}
        if not isinstance(retry_cfg, dict):
            raise config_error('{}.retry must be a mapping'.format(path))
        rpath = path + '.retry'
        self.retry = RetryPolicy(
            initial_interval=_number(retry_cfg, 'initial_interval', rpath, DEFAULT_RETRY['initial_interval'], 0.0),
            max_interval=_number(retry_cfg, 'max_interval', rpath, DEFAULT_RETRY['max_interval'], 0.0),
            max_elapsed_time=_number(retry_cfg, 'max_elapsed_time', rpath, DEFAULT_RETRY['max_elapsed_time'], 0.0),
        )
        self.headers = self._build_headers(cfg, mode, version)
        self._status: Tuple[str, str] = (STATUS_OK, '{}: no export yet'.format(self.display))
        self._status_lock = threading.Lock()
        self._failing = False

        telemetry.declare('export.queue.dropped', self.tags + ('reason:queue_full',))
        telemetry.declare('export.retries', self.tags)
        telemetry.declare('export.count', self.tags + ('exporter:otlp_http',))
        telemetry.gauge('export.queue.bytes', 0, self.tags)
        self._queue = DeliveryQueue(
            self.host,
            max_bytes=int(queue_mb * 1024 * 1024),
            send=self._send,
            retry=self.retry,
            on_drop=self._on_drop,
            on_result=self._on_result,
            on_size=lambda n: telemetry.gauge('export.queue.bytes', n, self.tags),
        )
        self._queue.start()

    # -- configuration ------------------------------------------------------------------
    def _build_headers(self, cfg: dict, mode: str, version: str) -> Dict[str, str]:
        user = cfg.get('headers') or {}
        if not isinstance(user, dict):
            raise config_error('{}.headers must be a mapping of header name to value'.format(self.path))
        headers: Dict[str, str] = {}
        for k, v in user.items():
            key = str(k).strip()
            if key.lower() in RESERVED_HEADERS:
                self.log.warning(
                    '%s.headers: the header %s is reserved and set by the exporter; the configured value is ignored',
                    self.path,
                    key,
                )
                continue
            # numeric API keys (YAML ints) become strings
            headers[key] = '' if v is None else str(v)
        api_key = cfg.get('api_key')
        if api_key not in (None, '') and not any(k.lower() == API_KEY_HEADER for k in headers):
            headers[API_KEY_HEADER] = str(api_key)
        datadog = bool(
            cfg.get('datadog', any(k.lower() == API_KEY_HEADER for k in headers) or is_datadog_site(self.host))
        )
        headers['Content-Type'] = CONTENT_TYPE
        if self.compression != 'none':
            headers['Content-Encoding'] = self.compression
        if datadog:
            headers['dd-evp-origin'] = ORIGIN_AGENT if mode == 'agent' else ORIGIN_STANDALONE
            headers['dd-evp-origin-version'] = str(version or '0.0.0')
            headers['dd-otel-metric-config'] = DD_METRIC_CONFIG
            if not any(k.lower() == API_KEY_HEADER for k in headers):
                self.log.warning('%s: no dd-api-key for the Datadog endpoint %s', self.path, self.display)
        self.datadog = datadog
        return headers

    def _scrub(self, text: str) -> str:
        """Hide any secret header value a server might echo back in an error body."""
        for k, v in self.headers.items():
            if v and len(v) >= 6 and any(h in k.lower() for h in SECRET_HEADER_HINTS) and v in text:
                text = text.replace(v, '***')
        return text

    def describe(self) -> Dict[str, Any]:
        """Scrubbed settings for diagnostics: header names only, never values."""
        return {
            'name': self.name,
            'url': self.display,
            'compression': self.compression,
            'timeout': self.timeout,
            'queue_size_bytes': self._queue.max_bytes,
            'retry': vars(self.retry).copy(),
            'header_names': sorted(self.headers),
            'datadog': self.datadog,
        }

    # -- Exporter ------------------------------------------------------------------------
    def export(self, profile: Any) -> None:
        try:
            raw, body = self._encoder.get(profile, self.compression)
        except Exception as e:
            self._telemetry.count('export.errors', 1, self.tags + ('reason:encode',))
            self.log.error('%s: cannot encode the profile: %s: %s', self.name, type(e).__name__, e)
            return
        self._queue.put(body, len(raw))

    def export_bytes(self, raw: bytes, body: bytes) -> bool:
        """Enqueue an already encoded and compressed body (tests, benchmarks)."""
        return self._queue.put(body, len(raw))

    def flush(self, timeout_s: float) -> bool:
        return self._queue.flush(timeout_s)

    def close(self, timeout_s: float = 2.0) -> None:
        self._queue.close(timeout_s)

    def status(self) -> Tuple[str, str]:
        with self._status_lock:
            return self._status

    @property
    def queued_bytes(self) -> int:
        return self._queue.queued_bytes

    @property
    def pending(self) -> int:
        return len(self._queue)

    # -- sending (sender thread) --------------------------------------------------------
    def _post(self, body: bytes) -> Any:
        kwargs: Dict[str, Any] = {'data': body}
        if self._timeout_set or not self._wrapper:
            kwargs['timeout'] = self.timeout
        if self._wrapper:
            # RequestsWrapper: extra_headers merge over the instance's default headers,
            # proxies/TLS come from the Agent configuration; keep the connection alive.
            kwargs['extra_headers'] = self.headers
            kwargs['persist'] = True
        else:
            kwargs['headers'] = self.headers
        return self._session.post(self.url, **kwargs)

    def _send(self, item: Item) -> SendResult:
        import requests

        t0 = time.monotonic()
        try:
            resp = self._post(item.body)
        except requests.exceptions.Timeout as e:
            return SendResult(RETRY, 'timeout', message='request timed out ({})'.format(type(e).__name__))
        except requests.exceptions.RequestException as e:
            return SendResult(RETRY, 'connection', message='connection error ({})'.format(type(e).__name__))
        except Exception as e:
            return SendResult(RETRY, 'connection', message='{}'.format(type(e).__name__))
        elapsed = time.monotonic() - t0
        status = int(getattr(resp, 'status_code', 0) or 0)
        content = getattr(resp, 'content', b'') or b''
        resp_headers = getattr(resp, 'headers', None) or {}
        if 200 <= status < 300:
            self._telemetry.gauge('export.latency', elapsed, self.tags)
            self._partial_success(content)
            return SendResult(OK, message='HTTP {}'.format(status))
        retry_after = parse_retry_after(resp_headers.get('Retry-After'))
        msg = 'HTTP {}'.format(status)
        excerpt = self._scrub(_excerpt(content))
        if excerpt:
            msg += ': ' + excerpt
        if status == 429:
            return SendResult(RETRY, 'http_429', retry_after, msg)
        if status >= 500:
            return SendResult(RETRY, 'http_5xx', retry_after, msg)
        if status == 408:
            return SendResult(RETRY, 'timeout', retry_after, msg)
        if status in (401, 403):
            return SendResult(REJECT, 'auth', None, msg)
        return SendResult(REJECT, 'http_4xx', None, msg)

    def _partial_success(self, content: bytes) -> None:
        if not content:
            return
        try:
            from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2

            resp = profiles_service_pb2.ExportProfilesServiceResponse()
            resp.ParseFromString(content)
        except Exception:
            return  # not a protobuf answer (some proxies answer text): nothing to honour
        if not resp.HasField('partial_success'):
            return
        ps = resp.partial_success
        if ps.rejected_profiles:
            self._telemetry.count('export.rejected_profiles', ps.rejected_profiles, self.tags)
            self.log.warning(
                '%s: the endpoint rejected %d profile(s): %s',
                self.display,
                ps.rejected_profiles,
                self._scrub(_excerpt(ps.error_message)) or '(no message)',
            )
        elif ps.error_message:
            self.log.warning(
                '%s: export accepted with a warning: %s', self.display, self._scrub(_excerpt(ps.error_message))
            )

    def _on_result(self, item: Item, result: SendResult, will_retry: bool) -> None:
        t = self._telemetry
        if result.kind == OK:
            t.count('export.count', 1, self.tags + ('exporter:otlp_http',))
            t.count('export.bytes', item.raw_size, self.tags + ('encoding:raw',))
            t.count('export.bytes', item.size, self.tags + ('encoding:compressed',))
            with self._status_lock:
                self._status = (STATUS_OK, '{}: exports delivered'.format(self.display))
            if self._failing:
                self._failing = False
                self.log.info('%s: delivering again (after %d attempt(s) for this export)', self.display, item.attempts)
            return
        t.count('export.errors', 1, self.tags + ('reason:' + result.reason,))
        if result.kind == REJECT:
            if result.reason == 'auth':
                status = (
                    STATUS_CRITICAL,
                    '{} refused the credentials ({}): check the API key (dd-api-key) for this endpoint'.format(
                        self.display, result.message.split(':')[0]
                    ),
                )
                self.log.error('%s refused the export: %s (not retried)', self.display, result.message)
            else:
                status = (STATUS_WARNING, '{} rejected an export: {}'.format(self.display, result.message))
                self.log.error('%s rejected an export: %s (not retried)', self.display, result.message)
            with self._status_lock:
                self._status = status
            return
        # retryable failure
        if will_retry:
            t.count('export.retries', 1, self.tags)
        queued = len(self._queue)
        msg = '{}: export failed ({}: {}), {} (attempt {}, {} export(s) waiting)'.format(
            self.display,
            result.reason,
            result.message,
            'retrying' if will_retry else 'giving up',
            item.attempts,
            queued,
        )
        with self._status_lock:
            if self._status[0] != STATUS_CRITICAL:
                self._status = (STATUS_WARNING, msg)
        if not self._failing:
            self._failing = True
            self.log.warning(msg)
        else:
            self.log.debug(msg)

    def _on_drop(self, item: Item, reason: str) -> None:
        self._telemetry.count('export.queue.dropped', 1, self.tags + ('reason:' + reason,))
        if reason == 'rejected':
            return  # already logged with the status and the body excerpt
        level = logging.DEBUG if reason == 'closed' else logging.WARNING
        self.log.log(
            level,
            '%s: dropped an export of %d bytes (%s) after %d attempt(s)',
            self.display,
            item.size,
            reason,
            item.attempts,
        )
        if reason in ('queue_full', 'too_large', 'max_elapsed_time'):
            with self._status_lock:
                if self._status[0] != STATUS_CRITICAL:
                    self._status = (
                        STATUS_WARNING,
                        '{}: dropping exports ({}); the endpoint is not keeping up'.format(self.display, reason),
                    )
