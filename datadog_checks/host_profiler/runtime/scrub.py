# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Keeping secrets out of logs, diagnostics files, flares and debug output.

Two layers:

1. Known secret *values*: ``secrets_in(instance)`` lists every API/app key and every
   header value of the ``otlp_http`` exporters. The check passes them to
   ``AgentCheck.register_secret`` (so ``self.sanitize`` and the check logger scrub them)
   and to ``register_secret`` here (a process-wide ``SecretsSanitizer`` from
   ``datadog_checks.base.utils.secrets`` used by ``scrub_text``), so any later text that
   contains them - an error message, a repr of a request - is scrubbed too.
2. Patterns, for secrets we were never told about: ``key: value`` / ``key=value`` /
   ``"key": "value"`` for sensitive key names, ``Authorization: Bearer ...``,
   credentials in URLs, and bare 32/40-hex Datadog API/app keys (the last 5 characters are
   kept, as the Agent's scrubber does).

``scrub_config(instance)`` returns a deep copy with sensitive keys and exporter headers
replaced by ``********``, and every remaining string passed through ``scrub_text``.
"""
from __future__ import annotations

import copy
import logging
import re
import threading
from typing import Any, Dict, Iterable, List, Optional

try:
    from datadog_checks.base.utils.secrets import SecretsSanitizer
except ImportError:  # pragma: no cover - datadog_checks.base is a dependency

    class SecretsSanitizer:  # type: ignore[no-redef]
        REDACTED = '********'

        def __init__(self):
            self.patterns = set()

        def register(self, secret):
            self.patterns.add(secret)

        def sanitize(self, text):
            for pattern in self.patterns:
                text = text.replace(pattern, self.REDACTED)
            return text


REDACTED = SecretsSanitizer.REDACTED  # '********', the Agent's marker
MIN_SECRET_LENGTH = 4  # shorter values would redact ordinary words everywhere

# Key names whose values are secrets (compared after lower-casing and '-' -> '_').
SENSITIVE_KEYS = frozenset(
    {
        'dd_api_key',
        'api_key',
        'apikey',
        'app_key',
        'appkey',
        'application_key',
        'dd_app_key',
        'dd_application_key',
        'authorization',
        'proxy_authorization',
        'x_api_key',
        'password',
        'passwd',
        'pass',
        'secret',
        'token',
        'access_token',
        'bearer_token',
        'auth_token',
        'client_secret',
        'cookie',
        'set_cookie',
        'private_key',
        'tls_key',
    }
)

_KEY_ALTERNATION = (
    r'dd[-_]?api[-_]?key|api[-_]?key|app[-_]?key|application[-_]?key|dd[-_]?app(?:lication)?[-_]?key|'
    r'x[-_]api[-_]key|proxy[-_]authorization|authorization|password|passwd|client[-_]secret|'
    r'access[-_]token|auth[-_]token|bearer[-_]token|token|secret|cookie'
)

_KEY_ALTERNATION_NO_AUTH = _KEY_ALTERNATION.replace('proxy[-_]authorization|authorization|', '')

# Header names whose values are not secrets: they are still redacted by scrub_config (every
# header value is), but not registered as secrets, so 'host-profiler' is not erased everywhere.
BENIGN_HEADERS = frozenset(
    {
        'dd_evp_origin',
        'dd_evp_origin_version',
        'dd_otel_metric_config',
        'content_type',
        'content_encoding',
        'accept',
        'user_agent',
    }
)

_RULES = [
    # "key": "value"  /  'key': 'value'  (JSON, Python reprs)
    (
        re.compile(r'''(?i)(["']?(?:''' + _KEY_ALTERNATION + r''')["']?\s*[:=]\s*)(["'])(?:(?!\2).)+\2'''),
        lambda m: m.group(1) + m.group(2) + REDACTED + m.group(2),
    ),
    # Authorization: Bearer xxx / Basic xxx (header dumps)
    (
        re.compile(r'(?i)(\b(?:proxy-)?authorization\s*[:=]\s*)(?:(bearer|basic|token|dsn)\s+)?[^\s,;"\'}\]]+'),
        lambda m: m.group(1) + ((m.group(2) + ' ') if m.group(2) else '') + REDACTED,
    ),
    # key: value / key=value (YAML, query strings, headers), unquoted
    (
        re.compile(r'(?i)(\b(?<!-)(?:' + _KEY_ALTERNATION_NO_AUTH + r')\s*[:=]\s*)(?!\*{8})([^\s,;&"\'}\]]+)'),
        lambda m: m.group(1) + REDACTED,
    ),
    # scheme://user:password@host
    (re.compile(r'(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+@'), lambda m: m.group(1) + REDACTED + '@'),
    # bare Datadog API (32 hex) and application (40 hex) keys: keep the last 5 characters
    (re.compile(r'\b[a-fA-F0-9]{35}([a-fA-F0-9]{5})\b'), lambda m: '*' * 35 + m.group(1)),
    (re.compile(r'\b[a-fA-F0-9]{27}([a-fA-F0-9]{5})\b'), lambda m: '*' * 27 + m.group(1)),
]

_lock = threading.Lock()
_sanitizer = SecretsSanitizer()
_registered = 0  # secrets registered so far: what LineScrubber remembered is stale after a new one


def register_secret(secret: Any) -> None:
    """Adds a value to the process-wide list that ``scrub_text`` always removes."""
    if secret is None:
        return
    secret = str(secret)
    if len(secret) < MIN_SECRET_LENGTH or secret == REDACTED:
        return
    global _registered
    with _lock:
        _sanitizer.register(secret)
        _registered += 1


def _normalise_key(key: Any) -> str:
    return str(key).strip().lower().replace('-', '_')


def is_sensitive_key(key: Any) -> bool:
    k = _normalise_key(key)
    return k in SENSITIVE_KEYS or k.endswith('_api_key') or k.endswith('_app_key') or k.endswith('_password')


def scrub_text(text: Any, secrets: Iterable[Any] = ()) -> str:
    """Removes registered secrets, ``secrets`` and anything matching the patterns."""
    if text is None:
        return ''
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    text = str(text)
    extra = {str(s) for s in secrets if s is not None and len(str(s)) >= MIN_SECRET_LENGTH}
    extra = sorted(extra, key=len, reverse=True)
    for s in extra:
        text = text.replace(s, REDACTED)
    with _lock:
        text = _sanitizer.sanitize(text)
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    return text


class LineScrubber:
    """``scrub_text`` line by line, remembering the lines already scrubbed: the diagnostics file
    is rewritten every minute with mostly the same lines, and the key-name patterns cost about
    1 µs per character (20-25 ms each for 24 KB, most of the file's write).

    The same result as ``scrub_text`` only for text in which no pattern's match spans a line
    break: ``json.dumps(..., indent=N)`` output is such text (a string value holds no raw line
    break, and no line ends with a key name followed by ``:``/``=`` on the next). Secrets with a
    line break in them fall back to ``scrub_text`` on the whole text."""

    def __init__(self, max_lines: int = 8192) -> None:
        self.max_lines = max_lines
        self._memo: Dict[str, str] = {}
        self._state: Any = None
        self._memo_lock = threading.Lock()

    def scrub(self, text: str, secrets: Iterable[Any] = ()) -> str:
        extra = tuple(sorted({str(s) for s in secrets if s is not None and len(str(s)) >= MIN_SECRET_LENGTH}))
        if any('\n' in s or '\r' in s for s in extra):
            return scrub_text(text, extra)
        with _lock:
            state = (extra, _registered)
            if any('\n' in s or '\r' in s for s in _sanitizer.patterns):
                state = None
        if state is None:
            return scrub_text(text, extra)
        with self._memo_lock:
            memo = self._memo
            if state != self._state or len(memo) > self.max_lines:
                memo.clear()
                self._state = state
            out = []
            for line in text.split('\n'):
                done = memo.get(line)
                if done is None:
                    done = memo[line] = scrub_text(line, extra)
                out.append(done)
            return '\n'.join(out)


def _collect(value: Any, out: List[str], sensitive: bool = False, in_headers: bool = False) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            key_sensitive = is_sensitive_key(k)
            if in_headers and _normalise_key(k) not in BENIGN_HEADERS:
                key_sensitive = True
            headers_here = _normalise_key(k) in ('headers', 'additional_http_headers')
            _collect(v, out, sensitive or key_sensitive, in_headers=headers_here)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _collect(v, out, sensitive)
    elif sensitive and value is not None and not isinstance(value, bool):
        s = str(value)
        if len(s) >= MIN_SECRET_LENGTH and s != REDACTED:
            out.append(s)


def secrets_in(instance: Any) -> List[str]:
    """Every secret value in an instance config: sensitive keys at any depth, and every
    header value (exporters' ``headers``, ``additional_http_headers``). Feed to
    ``register_secret`` / ``AgentCheck.register_secret``."""
    out: List[str] = []
    _collect(instance, out)
    return sorted(set(out), key=lambda s: (-len(s), s))


def _scrub(value: Any, secrets: List[str], sensitive: bool = False, in_headers: bool = False) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            key_sensitive = sensitive or in_headers or is_sensitive_key(k)
            headers_here = _normalise_key(k) in ('headers', 'additional_http_headers')
            out[k] = _scrub(v, secrets, key_sensitive, in_headers=headers_here)
        return out
    if isinstance(value, (list, tuple)):
        return [_scrub(v, secrets, sensitive) for v in value]
    if sensitive and value is not None and value != '' and not isinstance(value, bool):
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value, secrets)
    return value


def scrub_config(instance: Optional[dict], extra_secrets: Iterable[Any] = ()) -> dict:
    """A deep copy of ``instance`` that is safe to log, write to a flare, or print."""
    if not instance:
        return {}
    instance = copy.deepcopy(instance)
    secrets = secrets_in(instance) + [str(s) for s in extra_secrets if s is not None]
    return _scrub(instance, secrets)


class ScrubbingFilter(logging.Filter):
    """A ``logging.Filter`` that scrubs each record's final message (and exception text).

    ``AgentCheck.register_secret`` only wraps the Agent's own log handler; standalone logs
    (stderr, files of ``host-profiler run``) get this filter through ``install_log_scrubbing``.
    """

    def __init__(self, secrets: Iterable[Any] = ()) -> None:
        super().__init__()
        self.secrets = [str(s) for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg = scrub_text(message, self.secrets)
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub_text(record.exc_text, self.secrets)
        return True


def install_log_scrubbing(logger: Optional[logging.Logger] = None, secrets: Iterable[Any] = ()) -> ScrubbingFilter:
    """Adds a ``ScrubbingFilter`` to ``logger`` (default: root) and to each of its handlers."""
    logger = logger or logging.getLogger()
    f = ScrubbingFilter(secrets)
    logger.addFilter(f)
    for handler in logger.handlers:
        handler.addFilter(f)
    return f
