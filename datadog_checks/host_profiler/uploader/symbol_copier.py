# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Produce the debug-only ELF that is uploaded (the Go host profiler's ``symbolcopier``).

``objcopy --only-keep-debug --remove-section=.gdb_index`` into a temporary file, with a timeout
(10 s), ``oom_score_adj`` 1000 for the child, and:

- Go (``upload_go_pcln_tab`` and a valid pclntab): ``--only-keep-debug`` turns ``.gopclntab`` into
  NOBITS, so its bytes are dumped to a temp file first, ``.gopclntab``/``.data.rel.ro.gopclntab``
  are removed and the bytes added back as ``.gopclntab`` (readonly flags, original address).
  ``runtime.text`` is added as a symbol when ``.symtab`` lacks it (a stripped binary), taken from
  the pclntab header (Go >= 1.18) or ``.text``; ``go:func.*``/``go.func.*`` stay when ``.symtab``
  has them.
- dynsym (``upload_dynamic_symbols``): ``--set-section-flags`` keeps the hash/rel/dynsym/dynamic/
  version sections and ``.dynstr`` as contents.
- ``--compress-debug-sections=zstd`` when objcopy supports it (probed on first use); otherwise
  the uploader zstd-compresses the whole request body (``Content-Encoding: zstd``).

objcopy reads the file this process opened through ``host.files.FileOpener`` (``/dev/fd/N``,
passed to the child): a path would be resolved again by objcopy, outside the process's root.

Every temporary file is removed on success, error and timeout alike (the caller owns the result
through ``CopyResult.close()``).
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from typing import BinaryIO, List, Optional, Tuple

from ..host.files import FileOpener, opener_for
from ..runtime.oom import spawn_expendable
from .elfsource import LocalSymbols

log = logging.getLogger(__name__)

DYNAMIC_SECTIONS = ('.hash', '.gnu.hash', '.dynsym', '.dynstr', '.dynamic', '.gnu.version',
                    '.gnu.version_d', '.gnu.version_r', '.rela.dyn', '.rela.plt', '.rel.dyn', '.rel.plt')


class SymbolCopyError(Exception):
    pass


@dataclass
class CopyResult:
    path: str
    size: int
    debug_compressed: bool  # objcopy compressed the debug sections itself

    def close(self) -> None:
        _unlink(self.path)


def _unlink(path: Optional[str]) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


class SymbolCopier:
    def __init__(self, objcopy: str = 'objcopy', timeout: float = 10.0, temp_dir: Optional[str] = None,
                 upload_dynamic_symbols: bool = False, upload_go_pcln_tab: bool = True,
                 compress: bool = True, opener: Optional[FileOpener] = None) -> None:
        self.opener = opener or opener_for(None)
        self.objcopy, self.timeout, self.temp_dir = objcopy, timeout, temp_dir  # the objcopy run
        # what goes up besides .symtab (the uploader's configuration)
        self.upload_dynamic_symbols, self.upload_go_pcln_tab = upload_dynamic_symbols, upload_go_pcln_tab
        self._compress = compress
        self._zstd: Optional[bool] = None if compress else False  # None: not probed yet
        self._probe_lock = threading.Lock()
        self.largest_elf = 0  # for the OOM hint
        self._procs = set()
        self._procs_lock = threading.Lock()
        self._aborted = False

    def check_available(self) -> str:
        """``objcopy --version`` first line; raises SymbolCopyError when objcopy cannot run."""
        try:
            out = subprocess.run([self.objcopy, '--version'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 timeout=self.timeout, check=True)
        except (OSError, subprocess.SubprocessError) as e:
            raise SymbolCopyError('objcopy is required to upload symbols ({}): install binutils'.format(e))
        return out.stdout.decode('utf-8', 'replace').splitlines()[0] if out.stdout else ''

    def abort(self) -> None:
        """Kill every running objcopy (shutdown); later copies fail at once."""
        self._aborted = True
        with self._procs_lock:
            procs = list(self._procs)
        for p in procs:
            try:
                p.kill()
            except OSError:
                pass

    @property
    def zstd_supported(self) -> Optional[bool]:
        return self._zstd

    def copy(self, item: LocalSymbols) -> CopyResult:
        """Write the debug-only ELF of ``item`` into a temp file and return it."""
        self.largest_elf = max(self.largest_elf, item.symbol_file_size)
        fd, out = tempfile.mkstemp(prefix='hp-symbols-', suffix='.debug', dir=self.temp_dir)
        os.close(fd)
        extra: List[str] = []
        pcln_tmp = None
        try:
            args = ['--only-keep-debug', '--remove-section=.gdb_index']
            if self.upload_dynamic_symbols:
                for sec in DYNAMIC_SECTIONS:
                    args.append('--set-section-flags={}=alloc,load,readonly,contents'.format(sec))
            facts = item.facts
            pcln = facts.pclntab if (facts is not None and self.upload_go_pcln_tab and facts.is_go) else None
            if pcln is not None:
                pcln_tmp = self._dump(item.path, pcln.offset, pcln.size, item.location)
                args += ['--remove-section=.gopclntab', '--remove-section=.data.rel.ro.gopclntab',
                         '--add-section', '.gopclntab=' + pcln_tmp,
                         '--set-section-flags', '.gopclntab=alloc,load,readonly,data',
                         '--change-section-address', '.gopclntab={:#x}'.format(pcln.address)]
                if not facts.has_symtab and pcln.text_start:  # a Go .symtab always has it
                    args += ['--add-symbol', 'runtime.text={:#x},global'.format(pcln.text_start)]
            extra = args
            zstd = self._zstd
            if zstd is None:
                with self._probe_lock:
                    zstd = self._zstd
                    if zstd is None:
                        ok = self._run(extra + ['--compress-debug-sections=zstd'], item, out, probing=True)
                        self._zstd = ok
                        if ok:
                            return CopyResult(out, os.path.getsize(out), True)
                        log.info('objcopy lacks --compress-debug-sections=zstd: request bodies are zstd-compressed')
                        zstd = False
            if zstd:
                extra = extra + ['--compress-debug-sections=zstd']
            self._run(extra, item, out)
            return CopyResult(out, os.path.getsize(out), bool(zstd))
        except BaseException:
            _unlink(out)
            raise
        finally:
            _unlink(pcln_tmp)

    def _open(self, path: str, location: Tuple[str, str]) -> BinaryIO:
        """The file at ``location`` (root, path inside it) through the opener; ``path`` (a host
        path) when the location is unknown."""
        if location and location[1]:
            return self.opener.open_in_root(location[0], location[1], kind='upload')[0]
        return open(path, 'rb')

    def _dump(self, path: str, offset: int, size: int, location: Tuple[str, str] = ('', '')) -> str:
        """Copy ``size`` bytes at ``offset`` of ``path`` to a temp file (streamed, 1 MiB chunks)."""
        fd, tmp = tempfile.mkstemp(prefix='hp-pclntab-', dir=self.temp_dir)
        try:
            with os.fdopen(fd, 'wb') as dst, self._open(path, location) as src:
                src.seek(offset)
                left = size
                while left > 0:
                    chunk = src.read(min(left, 1 << 20))
                    if not chunk:
                        raise SymbolCopyError('short read of the pclntab of {}'.format(path))
                    dst.write(chunk)
                    left -= len(chunk)
        except BaseException:
            _unlink(tmp)
            raise
        return tmp

    def _run(self, args: List[str], item: LocalSymbols, out: str, probing: bool = False) -> bool:
        if self._aborted:
            raise SymbolCopyError('symbol uploader is closing')
        try:
            src = self._open(item.symbol_file, item.symbol_file_location)
        except OSError as e:
            raise SymbolCopyError('cannot open {}: {}'.format(item.symbol_file, e))
        with src:
            cmd = [self.objcopy] + args + ['/dev/fd/{}'.format(src.fileno()), out]
            try:
                # oom_score_adj 1000: the OOM killer takes objcopy before the profiler or the Agent
                proc = spawn_expendable(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, close_fds=True,
                                        pass_fds=(src.fileno(),))
            except OSError as e:
                raise SymbolCopyError('cannot run objcopy: {}'.format(e))
            return self._wait(proc, item, probing)

    def _wait(self, proc: subprocess.Popen, item: LocalSymbols, probing: bool) -> bool:
        with self._procs_lock:
            self._procs.add(proc)
        try:
            _, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise SymbolCopyError('objcopy timed out after {:g}s on {} ({} bytes)'.format(
                self.timeout, item.filename, item.symbol_file_size))
        finally:
            with self._procs_lock:
                self._procs.discard(proc)
        if self._aborted:
            raise SymbolCopyError('symbol uploader is closing')
        msg = err.decode('utf-8', 'replace').strip()
        if proc.returncode == 0:
            if msg and 'not in segment' not in msg:
                log.debug('objcopy on %s: %s', item.filename, msg)
            return True
        if probing and 'zstd' in msg:
            return False
        if proc.returncode < 0 and -proc.returncode == signal.SIGKILL:
            raise SymbolCopyError(
                'objcopy was killed (likely out of memory) on {}: the largest ELF handled is {} bytes, '
                'raise the memory limit or disable the symbol uploader'.format(item.filename, self.largest_elf))
        raise SymbolCopyError('objcopy failed ({}) on {}: {}'.format(proc.returncode, item.filename, msg[-500:]))
