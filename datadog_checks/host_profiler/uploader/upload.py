# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""HTTP side of the uploader: the symbols query and the streamed multipart upload.

Why the multipart framing is built here: ``requests``' ``files=`` (urllib3's
``encode_multipart_formdata``) assembles the whole body in memory, which for a 500 MB debug file
would cost 500 MB of RSS. ``MultipartFile`` is a read-only file-like object over
``preamble + <temp file> + epilogue`` with a known length, so requests sends it with a
``Content-Length`` in 8 KiB-ish reads (no chunked encoding, which some intakes refuse) and
can rewind it (``seek``/``tell``) when the HTTP layer retries or follows a redirect.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import uuid
from typing import Any, Dict, Iterable, List, Optional

from .config import SymbolEndpoint
from .elfsource import LocalSymbols

QUERY_PATH = '/api/v2/profiles/symbols/query'
UPLOAD_PATH = '/api/v2/srcmap'


class UploadError(Exception):
    def __init__(self, message: str, reason: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.reason = reason  # metric tag: http_4xx, http_5xx, timeout, connection, ...
        self.status = status


def _reason_for_status(status: int) -> str:
    return 'http_{}xx'.format(status // 100)


def _reason_for_exception(e: BaseException) -> str:
    name = type(e).__name__.lower()
    if 'timeout' in name:
        return 'timeout'
    if 'connection' in name:
        return 'connection'
    return 'request'


class MultipartFile(io.RawIOBase):
    """A seekable, read-only view of ``preamble + file[0:size] + epilogue``."""

    def __init__(self, preamble: bytes, path: str, epilogue: bytes) -> None:
        super().__init__()
        self._pre = preamble
        self._epi = epilogue
        self._f = open(path, 'rb')
        self._fsize = os.fstat(self._f.fileno()).st_size
        self._len = len(preamble) + self._fsize + len(epilogue)
        self._pos = 0

    def __len__(self) -> int:  # requests' super_len uses it for Content-Length
        return self._len

    @property
    def len(self) -> int:
        return self._len

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._len}[whence]
        self._pos = max(0, min(self._len, base + offset))
        return self._pos

    def readinto(self, buf) -> int:
        n = len(buf)
        if n == 0 or self._pos >= self._len:
            return 0
        pre, fsize = len(self._pre), self._fsize
        pos = self._pos
        if pos < pre:
            data = self._pre[pos:pos + n]
        elif pos < pre + fsize:
            self._f.seek(pos - pre)
            data = self._f.read(min(n, pre + fsize - pos))
            if not data:
                raise IOError('symbol file shrank while uploading')
        else:
            off = pos - pre - fsize
            data = self._epi[off:off + n]
        buf[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._len - self._pos
        size = min(size, 1 << 20)  # never hand out more than 1 MiB at once
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:  # fill across the preamble/file/epilogue boundaries like a plain file
            n = self.readinto(view[got:])
            if not n:
                break
            got += n
        return bytes(buf[:got])

    def close(self) -> None:
        try:
            self._f.close()
        finally:
            super().close()


def event_json(item: LocalSymbols, origin: str, origin_version: str) -> Dict[str, Any]:
    return {
        'arch': item.arch,
        'gnu_build_id': item.gnu_build_id,
        'go_build_id': item.go_build_id,
        'file_hash': item.file_hash,
        'type': 'elf_symbol_file',
        'symbol_source': item.source,
        'origin': origin,
        'origin_version': origin_version,
        'filename': item.filename,
    }


def multipart_framing(event: Dict[str, Any], boundary: str):
    """(preamble, epilogue) around the ELF bytes, RFC 7578."""
    b = boundary.encode('ascii')
    preamble = (
        b'--' + b + b'\r\n'
        b'Content-Disposition: form-data; name="event"; filename="event.json"\r\n'
        b'Content-Type: application/json\r\n\r\n'
        + json.dumps(event, separators=(',', ':')).encode('utf-8') + b'\r\n'
        b'--' + b + b'\r\n'
        b'Content-Disposition: form-data; name="elf_symbol_file"; filename="elf_symbol_file"\r\n'
        b'Content-Type: application/octet-stream\r\n\r\n'
    )
    epilogue = b'\r\n--' + b + b'--\r\n'
    return preamble, epilogue


def zstd_compress_stream(src, temp_dir: Optional[str] = None) -> str:
    """Compress a file-like body into a temp file (streamed); returns its path."""
    import zstandard  # optional dependency: only needed when objcopy lacks zstd

    fd, path = tempfile.mkstemp(prefix='hp-body-', suffix='.zst', dir=temp_dir)
    try:
        with os.fdopen(fd, 'wb') as dst:
            zstandard.ZstdCompressor(level=3).copy_stream(src, dst, read_size=1 << 20, write_size=1 << 20)
    except BaseException:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    return path


def build_body(item: LocalSymbols, symbol_path: str, origin: str, origin_version: str,
               compress_body: bool, temp_dir: Optional[str] = None):
    """(body, content_type, extra headers, cleanup paths). The body is a seekable file object."""
    boundary = uuid.uuid4().hex
    pre, epi = multipart_framing(event_json(item, origin, origin_version), boundary)
    headers = {}
    body = MultipartFile(pre, symbol_path, epi)
    cleanup: List[str] = []
    if compress_body:
        try:
            zpath = zstd_compress_stream(body, temp_dir)
        finally:
            body.close()
        cleanup.append(zpath)
        body = open(zpath, 'rb')
        headers['Content-Encoding'] = 'zstd'
    return body, 'multipart/form-data; boundary=' + boundary, headers, cleanup


def upload(http, endpoint: SymbolEndpoint, item: LocalSymbols, symbol_path: str, *, origin: str,
           origin_version: str, compress_body: bool, timeout: float, temp_dir: Optional[str] = None) -> int:
    """POST the multipart body to <url>/api/v2/srcmap; returns bytes sent; raises UploadError."""
    body, ctype, extra, cleanup = build_body(item, symbol_path, origin, origin_version, compress_body, temp_dir)
    try:
        size = len(body) if isinstance(body, MultipartFile) else os.fstat(body.fileno()).st_size
        headers = {
            'DD-API-KEY': endpoint.api_key,
            'DD-EVP-ORIGIN': origin,
            'DD-EVP-ORIGIN-VERSION': origin_version,
            'Content-Type': ctype,
            'Content-Length': str(size),
        }
        headers.update(extra)
        try:
            resp = http.post(endpoint.upload_endpoint, data=body, headers=headers, timeout=timeout)
        except Exception as e:
            raise UploadError('upload of {} to {} failed: {}'.format(item.filename, endpoint.name, _scrub(e, endpoint)),
                              _reason_for_exception(e))
        status = int(getattr(resp, 'status_code', 0))
        if not 200 <= status < 300:
            raise UploadError('upload of {} to {} answered HTTP {}'.format(item.filename, endpoint.name, status),
                              _reason_for_status(status), status)
        return size
    finally:
        body.close()
        for p in cleanup:
            try:
                os.unlink(p)
            except OSError:
                pass


def query(http, endpoint: SymbolEndpoint, build_ids: Iterable[str], arch: str, timeout: float) -> Dict[str, str]:
    """Ask which of ``build_ids`` the backend has: {build_id: symbol_source}; absent = unknown."""
    body = {'data': {'type': 'symbols-query-request',
                     'attributes': {'buildIds': list(build_ids), 'arch': arch}}}
    headers = {'Dd-Api-Key': endpoint.api_key, 'Content-Type': 'application/json'}
    try:
        resp = http.post(endpoint.query_endpoint, data=json.dumps(body), headers=headers, timeout=timeout)
    except Exception as e:
        raise UploadError('symbols query to {} failed: {}'.format(endpoint.name, _scrub(e, endpoint)),
                          'query_' + _reason_for_exception(e))
    status = int(getattr(resp, 'status_code', 0))
    if not 200 <= status < 300:
        raise UploadError('symbols query to {} answered HTTP {}'.format(endpoint.name, status),
                          'query_' + _reason_for_status(status), status)
    try:
        doc = resp.json()
        out: Dict[str, str] = {}
        for res in doc.get('data') or []:
            attrs = res.get('attributes') or {}
            bid = attrs.get('buildId')
            if bid:
                out[str(bid)] = str(attrs.get('symbolSource') or 'none')
        return out
    except Exception as e:
        raise UploadError('symbols query to {}: bad response ({})'.format(endpoint.name, e), 'query_decode')


def _scrub(e: BaseException, endpoint: SymbolEndpoint) -> str:
    text = str(e)
    if endpoint.api_key:
        text = text.replace(endpoint.api_key, '***')
    return text
