# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Executable reporter: each executable or library first seen in a sample is reported once.

An LRU of 16384 file ids remembers what was reported. The id is known without any I/O:
``(dev, inode)`` of the mapping (``(root, path)`` when the inode is unknown), so ``report`` is
O(1) and never blocks. An entry is forgotten when its upload fails, when it has no symbols or
when the query fails, so the file is retried the next time it is seen; there is no other retry.

A second key, the file's content id (its file hash), is claimed after retrieval so that
the same file seen under two inodes (containers, bind mounts) is not uploaded twice.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable, Optional

from ..host.proc import DELETED_SUFFIX
from .upload_pipeline import Item

LRU_SIZE = 16384
_SKIP_PREFIXES = ('[', '/memfd:', '/dev/', '/SYSV', 'anon_inode:', '//anon')


class LRU:
    def __init__(self, size: int = LRU_SIZE) -> None:
        self.size = size
        self._d: 'OrderedDict[Hashable, Any]' = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: Hashable, value: Any = True) -> bool:
        """True when ``key`` was new (and is now remembered); False when already there."""
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return False
            self._d[key] = value
            if len(self._d) > self.size:
                self._d.popitem(last=False)
            return True

    def remove(self, key: Hashable, value: Any = None) -> None:
        """Forget ``key`` (only if it still maps to ``value`` when one is given)."""
        with self._lock:
            if key in self._d and (value is None or self._d[key] is value):
                del self._d[key]

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._d

    def __len__(self) -> int:
        with self._lock:
            return len(self._d)


def reportable(path: str) -> bool:
    return bool(path) and path.startswith('/') and not path.startswith(_SKIP_PREFIXES) \
        and not path.endswith(DELETED_SUFFIX)


class ExecutableReporter:
    def __init__(self, submit: Callable[[Item], bool], telemetry, size: int = LRU_SIZE) -> None:
        self._submit = submit
        self.telemetry = telemetry
        self.files = LRU(size)  # file ids reported
        self.contents = LRU(size)  # content ids claimed (file hash)

    @staticmethod
    def file_id(file_path_in_root: str, process_root: str, mapping_info: Any) -> Hashable:
        dev = getattr(mapping_info, 'dev', 0) or 0
        inode = getattr(mapping_info, 'inode', 0) or 0
        if inode:
            return ('inode', dev, inode)
        return ('path', process_root or '/', file_path_in_root)

    def report(self, file_path_in_root: str, process_root: str, mapping_info: Any = None) -> bool:
        """Report a file seen in a sample; True when it was new and entered the pipeline."""
        if not reportable(file_path_in_root):
            return False
        key = self.file_id(file_path_in_root, process_root, mapping_info)
        if not self.files.add(key):
            return False
        self.telemetry.count('symbol_upload.reported', 1)
        item = Item(key, file_path_in_root, process_root or '/')
        if not self._submit(item):
            self.files.remove(key)  # dropped (queue full): retried the next time it is seen
            return False
        return True

    def claim_content(self, item: Item) -> bool:
        """False when another item with the same content id is already handled."""
        if not item.content_key:
            return True
        return self.contents.add(item.content_key, item)

    def done(self, item: Item, ok: bool) -> None:
        if ok:
            return
        self.files.remove(item.key)
        if item.content_key:
            self.contents.remove(item.content_key, item)

    def forget(self, key: Optional[Hashable]) -> None:
        if key is not None:
            self.files.remove(key)
