# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The ``file`` exporter: every export written under a directory, rotated by count.

``directory/profiles/<timestamp>-<seq>.otlp.pb`` (binary ``ProfilesData``),
``.pb.gz`` (pprof, gzip) and ``.folded`` (folded stacks). ``<timestamp>`` is the profile's
start time, UTC, ``YYYYmmddTHHMMSSZ``; ``<seq>`` a 6-digit counter that keeps names unique
and ordered. With ``max_files`` > 0 only the newest ``max_files`` files of each format
are kept (the oldest are removed after each write). Files are written to a temporary
name, then renamed, so a reader never sees a partial file.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, List, Optional

from .base import LocalExporter, config_error
from ..profile import folded, pprof

FORMATS = {'otlp': '.otlp.pb', 'pprof': '.pb.gz', 'folded': '.folded'}
DEFAULT_MAX_FILES = 100


class FileExporter(LocalExporter):
    kind = 'file'

    def __init__(
        self,
        config: dict,
        *,
        telemetry: Any,
        encoder: Any,
        log: Optional[logging.Logger] = None,
        path: str = 'exporters.file',
    ) -> None:
        cfg = dict(config or {})
        directory = cfg.get('directory')
        if not directory or not isinstance(directory, str):
            raise config_error('{}.directory is required'.format(path))
        formats = cfg.get('formats', ['otlp'])
        if isinstance(formats, str):
            formats = [f.strip() for f in formats.split(',') if f.strip()]
        if not isinstance(formats, (list, tuple)) or not formats:
            raise config_error('{}.formats must be a list of {}'.format(path, ', '.join(FORMATS)))
        bad = [f for f in formats if f not in FORMATS]
        if bad:
            raise config_error('{}.formats: unknown format(s) {} (known: {})'.format(path, bad, ', '.join(FORMATS)))
        try:
            max_files = int(cfg.get('max_files', DEFAULT_MAX_FILES))
        except (TypeError, ValueError):
            raise config_error('{}.max_files must be an integer'.format(path))
        if max_files < 0:
            raise config_error('{}.max_files must be >= 0 (0 keeps every file)'.format(path))
        self.directory = os.path.abspath(os.path.expanduser(directory))
        self.out_dir = os.path.join(self.directory, 'profiles')
        self.formats: List[str] = list(dict.fromkeys(formats))
        self.max_files = max_files
        super().__init__(telemetry, encoder, log)
        self.written: List[str] = []  # paths written by the last export
        self._error = ''  # the last write error, '' when the last export was written

    def _name(self, profile: Any, fmt: str) -> str:
        ts = profile.time_unix_nano / 1e9 if profile.time_unix_nano else time.time()
        stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(ts))
        return os.path.join(self.out_dir, '{}-{:06d}{}'.format(stamp, self._seq, FORMATS[fmt]))

    def _body(self, profile: Any, fmt: str) -> bytes:
        if fmt == 'otlp':
            return self._encoder.raw(profile)
        if fmt == 'pprof':
            return pprof.encode(profile)
        return folded.to_folded(profile).encode('utf-8')

    def export(self, profile: Any) -> None:
        self._seq += 1
        self.written = []
        try:
            os.makedirs(self.out_dir, exist_ok=True)
        except OSError as e:
            self._telemetry.count('export.errors', 1, ('exporter:file', 'reason:io'))
            self.log.error('file exporter: cannot create %s: %s', self.out_dir, e)
            self._error = 'cannot create {}: {}'.format(self.out_dir, e.strerror or e)
            return
        ok = True
        for fmt in self.formats:
            target = self._name(profile, fmt)
            try:
                data = self._body(profile, fmt)
            except Exception as e:
                ok = False
                self._telemetry.count('export.errors', 1, ('exporter:file', 'reason:encode'))
                self.log.error('file exporter: cannot encode %s: %s: %s', fmt, type(e).__name__, e)
                continue
            tmp = target + '.tmp'
            try:
                with open(tmp, 'wb') as f:
                    f.write(data)
                os.replace(tmp, target)
            except OSError as e:
                ok = False
                self._telemetry.count('export.errors', 1, ('exporter:file', 'reason:io'))
                self.log.error('file exporter: cannot write %s: %s', target, e)
                self._error = 'cannot write {}: {}'.format(target, e.strerror or e)
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                continue
            self.written.append(target)
            self._telemetry.count('export.bytes', len(data), ('exporter:file', 'format:' + fmt, 'encoding:raw'))
            self._rotate(fmt)
        if ok:
            self._error = ''
            self._telemetry.count('export.count', 1, ('exporter:file',))

    def status(self):
        if self._error:
            return ('warning', 'file exporter: ' + self._error)
        return ('ok', 'file exporter: writing to {}'.format(self.out_dir))

    def _rotate(self, fmt: str) -> None:
        if self.max_files <= 0:
            return
        suffix = FORMATS[fmt]
        try:
            names = sorted(n for n in os.listdir(self.out_dir) if n.endswith(suffix))
        except OSError:
            return
        # '.pb.gz' never ends with '.otlp.pb' and vice versa; names sort by time then sequence
        for n in names[: max(0, len(names) - self.max_files)]:
            try:
                os.unlink(os.path.join(self.out_dir, n))
            except OSError as e:
                self.log.debug('file exporter: cannot remove %s: %s', n, e)

    def describe(self) -> Dict[str, Any]:
        return {'name': self.name, 'directory': self.directory, 'formats': self.formats, 'max_files': self.max_files}
