# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""A local fake of the Datadog symbol intake, on 127.0.0.1.

- ``POST /api/v2/profiles/symbols/query``: JSON:API ``symbols-query-request{buildIds, arch}``;
  answers ``symbols-query-response{buildId, symbolSource, buildIdType}`` for the build ids it
  knows (``levels``), absent = unknown.
- ``POST /api/v2/srcmap``: multipart/form-data (RFC 7578), parsed with the stdlib ``email``
  parser; parts ``event`` (JSON) and ``elf_symbol_file``; ``Content-Encoding: zstd`` is undone.
  A successful upload raises the build id's level to the uploaded ``symbol_source``.

Everything is recorded (headers, event, file bytes or their path). ``fail_uploads`` /
``fail_queries`` hold HTTP statuses to answer next (one per request).

Run alone (for benchmarks, so that its memory is not the measured process's):
``python tests/fakes/symbol_intake.py [--port N] [--store DIR]`` prints the port and serves.
"""
from __future__ import annotations

import argparse
import email.parser
import email.policy
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional

QUERY_PATH = '/api/v2/profiles/symbols/query'
UPLOAD_PATH = '/api/v2/srcmap'


class Upload:
    def __init__(self, headers: Dict[str, str], event: Dict[str, Any], elf: Optional[bytes], elf_path: str,
                 elf_size: int, elf_sha256: str, parts: List[Dict[str, str]], body_size: int) -> None:
        self.headers = headers
        self.event = event
        self.elf = elf  # None when stored to disk only
        self.elf_path = elf_path
        self.elf_size = elf_size
        self.elf_sha256 = elf_sha256
        self.parts = parts  # [{name, filename, content_type}]
        self.body_size = body_size

    def __repr__(self) -> str:
        return 'Upload({}, {})'.format(self.event.get('filename'), self.event.get('symbol_source'))


class FakeSymbolIntake:
    def __init__(self, store_dir: Optional[str] = None, keep_bytes: bool = True) -> None:
        self.levels: Dict[str, str] = {}
        self.queries: List[Dict[str, Any]] = []
        self.uploads: List[Upload] = []
        self.fail_uploads: List[int] = []
        self.fail_queries: List[int] = []
        self.delay_s = 0.0
        self.keep_bytes = keep_bytes
        self._own_dir = store_dir is None
        self.store_dir = store_dir or tempfile.mkdtemp(prefix='fake-intake-')
        self.lock = threading.Lock()
        intake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                try:
                    intake._handle(self)
                except Exception as e:  # report the fake's own bugs as 500s with a reason
                    self._reply(500, {'errors': [repr(e)]})

            def _reply(self, status: int, doc: Any) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = 'http://127.0.0.1:{}'.format(self.port)
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> 'FakeSymbolIntake':
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name='fake-intake', daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._own_dir:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    def __enter__(self) -> 'FakeSymbolIntake':
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def endpoint(self, api_key: str = 'test-api-key', site: str = 'datadoghq.test') -> Dict[str, str]:
        return {'site': site, 'api_key': api_key, 'url': self.url, 'query_url': self.url}

    # -- handling ----------------------------------------------------------------------------
    def _read_body_to(self, req: BaseHTTPRequestHandler, dst) -> int:
        total = 0
        if req.headers.get('Transfer-Encoding', '').lower() == 'chunked':
            while True:
                size = int(req.rfile.readline().split(b';')[0].strip() or b'0', 16)
                if size == 0:
                    req.rfile.readline()
                    break
                left = size
                while left:
                    chunk = req.rfile.read(min(left, 1 << 20))
                    dst.write(chunk)
                    left -= len(chunk)
                total += size
                req.rfile.readline()
        else:
            left = int(req.headers.get('Content-Length') or 0)
            while left:
                chunk = req.rfile.read(min(left, 1 << 20))
                if not chunk:
                    break
                dst.write(chunk)
                left -= len(chunk)
                total += len(chunk)
        return total

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        path = req.path.split('?', 1)[0]
        headers = {k: v for k, v in req.headers.items()}
        fd, body_path = tempfile.mkstemp(dir=self.store_dir, prefix='body-')
        try:
            with os.fdopen(fd, 'wb') as f:
                body_size = self._read_body_to(req, f)
            if req.headers.get('Content-Encoding', '').lower() == 'zstd':
                import zstandard

                plain = body_path + '.plain'
                with open(body_path, 'rb') as src, open(plain, 'wb') as dst:
                    zstandard.ZstdDecompressor().copy_stream(src, dst)
                os.replace(plain, body_path)
            if self.delay_s:
                threading.Event().wait(self.delay_s)
            if path == QUERY_PATH:
                self._query(req, headers, body_path)
            elif path == UPLOAD_PATH:
                self._upload(req, headers, body_path, body_size)
            else:
                req._reply(404, {'errors': ['not found']})
        finally:
            try:
                os.unlink(body_path)
            except OSError:
                pass

    def _query(self, req, headers: Dict[str, str], body_path: str) -> None:
        with open(body_path, 'rb') as f:
            doc = json.loads(f.read())
        with self.lock:
            self.queries.append({'headers': headers, 'body': doc})
            status = self.fail_queries.pop(0) if self.fail_queries else 200
        if status != 200:
            req._reply(status, {'errors': ['forced {}'.format(status)]})
            return
        attrs = doc['data']['attributes']
        data = []
        for bid in attrs['buildIds']:
            level = self.levels.get(bid)
            if level:
                data.append({'type': 'symbols-query-response', 'id': bid,
                             'attributes': {'buildId': bid, 'symbolSource': level, 'buildIdType': 'gnu_build_id'}})
        req._reply(200, {'data': data})

    def _upload(self, req, headers: Dict[str, str], body_path: str, body_size: int) -> None:
        with self.lock:
            status = self.fail_uploads.pop(0) if self.fail_uploads else 202
        if status >= 300:
            req._reply(status, {'errors': ['forced {}'.format(status)]})
            return
        ctype = req.headers.get('Content-Type', '')
        with open(body_path, 'rb') as f:
            raw = b'Content-Type: ' + ctype.encode() + b'\r\nMIME-Version: 1.0\r\n\r\n' + f.read()
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
        del raw
        if not msg.is_multipart():
            req._reply(400, {'errors': ['not multipart']})
            return
        event: Dict[str, Any] = {}
        elf = None
        parts = []
        for part in msg.iter_parts():
            name = part.get_param('name', header='content-disposition')
            parts.append({'name': name, 'filename': part.get_filename(), 'content_type': part.get_content_type()})
            payload = part.get_payload(decode=True)
            if name == 'event':
                event = json.loads(payload)
            elif name == 'elf_symbol_file':
                elf = payload
        if elf is None or not event:
            req._reply(400, {'errors': ['missing part']})
            return
        digest = hashlib.sha256(elf).hexdigest()
        elf_path = os.path.join(self.store_dir, 'elf-{}'.format(digest[:16]))
        with open(elf_path, 'wb') as f:
            f.write(elf)
        up = Upload(headers, event, elf if self.keep_bytes else None, elf_path, len(elf), digest, parts, body_size)
        with self.lock:
            self.uploads.append(up)
            for key in ('gnu_build_id', 'go_build_id', 'file_hash'):
                if event.get(key):
                    self.levels[event[key]] = event.get('symbol_source', 'none')
        req._reply(202, {})


# -- test binaries -------------------------------------------------------------------------------
C_SOURCE = r"""
#include <stdio.h>
struct point { int x; long y; };
__attribute__((noinline)) int add_point(struct point *p) { return p->x + (int)p->y; }
int main(int argc, char **argv) { struct point p = {argc, 2}; printf("%d\n", add_point(&p)); return 0; }
"""
GO_SOURCE = """package main

import "fmt"

func main() { fmt.Println("hello from go") }
"""


def _run(cmd: List[str], **kw: Any) -> None:
    import subprocess

    subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def build_binaries(d: str, go: bool = True) -> Dict[str, str]:
    """Real test binaries: C with DWARF, symtab only, dynsym only, no build id, stripped with a
    separate debug file (debuglink); Go stripped and Go with a broken pclntab."""
    def cc(name: str, variant: int, *flags: str) -> str:
        """A C program whose build id is its own (``variant`` changes the code)."""
        src = os.path.join(d, name + '.c')
        with open(src, 'w') as f:
            f.write(C_SOURCE + 'int variant_marker = {};\n'.format(variant))
        path = os.path.join(d, name)
        _run(['gcc', '-g', '-O1'] + list(flags) + ['-o', path, src])
        return path

    out = {}
    out['c_dwarf'] = cc('c_dwarf', 1, '-Wl,--build-id=sha1')
    out['c_symtab'] = cc('c_symtab', 2, '-Wl,--build-id=sha1')
    _run(['strip', '-g', out['c_symtab']])
    out['c_dynsym'] = cc('c_dynsym', 3, '-Wl,--build-id=sha1')
    _run(['strip', out['c_dynsym']])
    out['c_nobuildid'] = cc('c_nobuildid', 4, '-Wl,--build-id=none')
    # stripped binary + separate debug file found through .gnu_debuglink (in <dir>/.debug)
    sep_dir = os.path.join(d, 'sep')
    os.makedirs(os.path.join(sep_dir, '.debug'))
    sep = cc('sep/c_sep', 5, '-Wl,--build-id=sha1')
    dbg = os.path.join(sep_dir, '.debug', 'c_sep.debug')
    _run(['objcopy', '--only-keep-debug', sep, dbg])
    _run(['strip', '-g', '-s', sep])
    _run(['objcopy', '--add-gnu-debuglink=' + dbg, sep])
    out['c_sep'] = sep
    out['c_sep_debug'] = dbg
    if go:
        gdir = os.path.join(d, 'gosrc')
        os.makedirs(gdir)
        with open(os.path.join(gdir, 'main.go'), 'w') as f:
            f.write(GO_SOURCE)
        env = dict(os.environ, GO111MODULE='off', CGO_ENABLED='0',
                   GOCACHE=os.environ.get('GOCACHE') or os.path.join(tempfile.gettempdir(), 'hp-test-gocache'),
                   HOME=os.environ.get('HOME') or d)
        out['go_stripped'] = os.path.join(d, 'go_stripped')
        _run(['go', 'build', '-ldflags=-s -w', '-o', out['go_stripped'], 'main.go'], cwd=gdir, env=env)
        out['go_broken'] = os.path.join(d, 'go_broken')
        shutil.copyfile(out['go_stripped'], out['go_broken'])
        from elftools.elf.elffile import ELFFile

        with open(out['go_broken'], 'r+b') as f:
            off = ELFFile(f).get_section_by_name('.gopclntab')['sh_offset']
            f.seek(off)
            f.write(b'\x00\x00\x00\x00')  # overwrite the pclntab magic
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--store', default=None)
    args = ap.parse_args(argv)
    intake = FakeSymbolIntake(store_dir=args.store, keep_bytes=False)
    print(intake.port, flush=True)
    try:
        intake.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        for up in intake.uploads:
            print(json.dumps({'event': up.event, 'elf_size': up.elf_size, 'body_size': up.body_size}),
                  file=sys.stderr, flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
