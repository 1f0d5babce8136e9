# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Symbol uploader: each new executable's symbols reach the backend once, within a memory budget."""
from .config import SymbolEndpoint, UploaderConfig, parse_config
from .reporter import ExecutableReporter
from .uploader import ORIGIN_AGENT, ORIGIN_STANDALONE, SymbolUploader, SymbolUploaderError

__all__ = [
    'ExecutableReporter',
    'ORIGIN_AGENT',
    'ORIGIN_STANDALONE',
    'SymbolEndpoint',
    'SymbolUploader',
    'SymbolUploaderError',
    'UploaderConfig',
    'parse_config',
]
