# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Encode a profile once per export and share the bytes between exporters.

Several ``otlp_http`` endpoints (and the debug and file exporters) receive the same
``Profile`` object in the same check run: the OTLP encoding and each compression are
computed once, keyed by the identity of the last profile (a weak reference, so the cache
never keeps a profile alive).
"""

from __future__ import annotations

import gzip
import threading
import weakref
from typing import Any, Callable, Dict, Optional, Tuple

COMPRESSIONS = ('gzip', 'zstd', 'none')
SCOPE_NAME = 'host_profiler'
GZIP_LEVEL = 1  # best speed: 5x faster than 6 for ~4% more bytes on OTLP profiles
ZSTD_LEVEL = 3


def compress(data: bytes, compression: str) -> bytes:
    if compression == 'gzip':
        return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
    if compression == 'zstd':
        import zstandard

        return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
    if compression == 'none':
        return data
    raise ValueError('unknown compression {!r}'.format(compression))


def decompress(data: bytes, encoding: str) -> bytes:
    encoding = (encoding or '').strip().lower()
    if encoding in ('', 'identity', 'none'):
        return data
    if encoding == 'gzip':
        return gzip.decompress(data)
    if encoding == 'zstd':
        import zstandard

        # stream reader: works whether or not the frame records its content size
        with zstandard.ZstdDecompressor().stream_reader(data) as r:
            return r.read()
    raise ValueError('unknown content-encoding {!r}'.format(encoding))


def zstd_available() -> bool:
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True


def default_otlp_encoder(version: str) -> Callable[[Any], bytes]:
    def encode(profile: Any) -> bytes:
        from ..profile import otlp  # lazy: written beside this package

        return otlp.encode_bytes(profile, SCOPE_NAME, version)

    return encode


class SharedEncoder:
    """``raw(profile)`` -> OTLP bytes; ``get(profile, compression)`` -> (raw, compressed)."""

    def __init__(self, encode: Callable[[Any], bytes]) -> None:
        self._encode = encode
        self._lock = threading.Lock()
        self._ref: Optional[Callable[[], Any]] = None
        self._id = None
        self._raw: Optional[bytes] = None
        self._compressed: Dict[str, bytes] = {}

    def _current(self, profile: Any) -> bool:
        if self._ref is None:
            return False
        return self._ref() is profile

    def _remember(self, profile: Any, raw: bytes) -> None:
        try:
            self._ref = weakref.ref(profile)
        except TypeError:  # not weak-referenceable: do not cache
            self._ref = None
        self._raw = raw
        self._compressed = {}

    def raw(self, profile: Any) -> bytes:
        with self._lock:
            if not self._current(profile) or self._raw is None:
                self._remember(profile, self._encode(profile))
            return self._raw  # type: ignore[return-value]

    def get(self, profile: Any, compression: str) -> Tuple[bytes, bytes]:
        with self._lock:
            if not self._current(profile) or self._raw is None:
                self._remember(profile, self._encode(profile))
            raw = self._raw  # type: ignore[assignment]
            body = self._compressed.get(compression)
            if body is None:
                body = compress(raw, compression)
                if self._ref is not None:
                    self._compressed[compression] = body
            return raw, body  # type: ignore[return-value]
