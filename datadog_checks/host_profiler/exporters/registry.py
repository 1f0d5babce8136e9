# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The one list of exporters: their keys under ``exporters:``, and how each is built.

Served to ``build_exporters`` (the factory), to ``cli.py`` (is any exporter configured?) and to
``config/converters.py`` (the same question, before the converter requires one). spec.yaml stays
the schema of each exporter's options; ``tests/exporters/test_registry.py`` checks that the two
name the same exporters. Adding an exporter: a module with an ``Exporter`` subclass, one
``ExporterKind`` here, its options in spec.yaml (then ``scripts/generate_config.py``).

This module imports nothing of the package at import time (``config`` reads it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple


@dataclass(frozen=True)
class BuildContext:
    """What every exporter may need besides its own section."""

    telemetry: Any
    encoder: Any
    http_factory: Callable[[dict], Any]
    mode: str
    version: str
    log: Any


@dataclass(frozen=True)
class ExporterKind:
    key: str  # the key under ``exporters:`` (spec.yaml)
    many: bool  # a list of exporters (a single mapping is accepted too), or one mapping
    build: Callable[[dict, str, BuildContext], Any]  # (its section, its key path, context) -> Exporter
    aliases: Tuple[str, ...] = ()  # other spellings accepted by build_exporters (the collector's)
    # one mapping, but a list of them is accepted too (and an empty key builds none)
    list_too: bool = False
    hint: str = ''  # appended to "must be a mapping"


def _otlp_http(entry: dict, path: str, ctx: BuildContext) -> Any:
    from .otlp_http import OtlpHttpExporter

    return OtlpHttpExporter(entry, session=ctx.http_factory(entry), telemetry=ctx.telemetry, encoder=ctx.encoder,
                            mode=ctx.mode, version=ctx.version, log=ctx.log, path=path)


def _debug(entry: dict, _path: str, ctx: BuildContext) -> Any:
    from .debug import DebugExporter

    return DebugExporter(entry, telemetry=ctx.telemetry, encoder=ctx.encoder, log=ctx.log)


def _file(entry: dict, path: str, ctx: BuildContext) -> Any:
    from .file import FileExporter

    return FileExporter(entry, telemetry=ctx.telemetry, encoder=ctx.encoder, log=ctx.log, path=path)


# In build order (the order in which each profile reaches them).
EXPORTERS: Tuple[ExporterKind, ...] = (
    ExporterKind('otlp_http', many=True, build=_otlp_http, aliases=('otlphttp',)),
    ExporterKind('debug', many=False, build=_debug, hint=' (verbosity: basic|normal|detailed)'),
    ExporterKind('file', many=False, build=_file, list_too=True),
)
BY_KEY: Dict[str, ExporterKind] = {k: kind for kind in EXPORTERS for k in (kind.key,) + kind.aliases}


def exporter_keys() -> Tuple[str, ...]:
    """The spec's exporter keys, in build order."""
    return tuple(kind.key for kind in EXPORTERS)


def all_keys() -> Tuple[str, ...]:
    """Every key ``build_exporters`` accepts: the spec's and their aliases."""
    return tuple(BY_KEY)


def section_of(exporters: Mapping[str, Any], kind: ExporterKind) -> Tuple[Optional[str], Any]:
    """(the key it is written under, its value) of one exporter kind; (None, None) when absent."""
    for key in (kind.key,) + kind.aliases:
        if key in exporters:
            return key, exporters[key]
    return None, None


def is_configured(exporters: Any) -> bool:
    """True when the ``exporters:`` section configures at least one exporter: a non-empty list
    for a list kind, a value other than unset (None) or ``false`` for the others."""
    if not isinstance(exporters, Mapping):
        return False
    for kind in EXPORTERS:
        _, value = section_of(exporters, kind)
        if (bool(value) if kind.many else value is not None and value is not False):
            return True
    return False
