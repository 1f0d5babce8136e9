# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Checks of an instance that the generated config models do not make, and one-line messages.

* ``check_known_options(instance)``: every key must be an option of the spec. pydantic ignores
  unknown keys, so a typo (``samples_per_secnd``) would silently fall back to the default. The
  known keys are read from the generated models (``config_models/``), so an option added to
  ``spec.yaml`` is known as soon as the models are regenerated. A field whose type is not a
  model (``headers``, ``tags``) stays open.
* ``check_endpoints(instance)``: every endpoint is an http(s) URL with a host, before anything
  starts (otherwise a typo is retried as a connection error until the flush timeout).
* ``one_line(error)``: a configuration error as one line, for ``host-profiler``'s stderr.

Errors are ``ConverterError`` (a ``ConfigurationError``) naming the key path with `` -> ``
between keys and list positions counted from 1, as the Agent's model errors do.
"""
from __future__ import annotations

import difflib
import functools
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from .converters import ConverterError

# Instance keys that the Agent reserves for every check (integration.CommonInstanceConfig) and
# that the spec does not repeat.
AGENT_INSTANCE_KEYS = frozenset({'name', 'namespace', 'no_index', 'loader'})
_SITE = re.compile(r'^(?=.{1,253}$)([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$', re.I)


def key_path(parts: Sequence[Any]) -> str:
    """``['exporters', 'otlp_http', 0, 'endpoint']`` -> ``exporters -> otlp_http -> 1 -> endpoint``."""
    return ' -> '.join(str(p + 1) if isinstance(p, int) else str(p) for p in parts)


class OptionError(ConverterError):
    """A configuration error whose message starts with its key path (one line)."""

    def __init__(self, message: str, parts: Sequence[Any]) -> None:
        super().__init__(message, key_path(parts))
        self.args = ('{}: {}'.format(self.key_path, message) if self.key_path else message,)


# -- known options -------------------------------------------------------------------------
Schema = Dict[str, Optional[Tuple[str, 'Schema']]]  # key -> None (open value) | (kind, sub-schema)


def _schema(model: Any) -> Schema:
    from ..config_models.validators import _model_of

    out: Schema = {}
    for name, field in model.model_fields.items():
        kind, sub = _model_of(field.annotation)
        out[field.alias or name] = (kind, _schema(sub)) if kind else None
    return out


@functools.lru_cache(maxsize=1)
def _model_schema() -> Schema:
    """The instance's options as the generated models declare them, plus the Agent's reserved keys."""
    from ..config_models.instance import InstanceConfig

    schema = _schema(InstanceConfig)
    for key in AGENT_INSTANCE_KEYS:
        schema.setdefault(key, None)
    return schema


@functools.lru_cache(maxsize=1)
def instance_schema() -> Schema:
    """The instance's options: the models' and the Agent's reserved keys (``_model_schema``), plus
    the HTTP client's (``self.http`` reads them from the instance)."""
    from datadog_checks.base.utils.http import STANDARD_FIELDS

    schema = dict(_model_schema())
    for key in STANDARD_FIELDS:
        schema.setdefault(key, None)
    return schema


def _unknown(key: Any, known: Schema, parts: List[Any]) -> OptionError:
    nearest = difflib.get_close_matches(str(key), [str(k) for k in known], n=1, cutoff=0.6)
    if nearest:
        hint = 'did you mean {}?'.format(nearest[0])
    else:
        hint = 'valid options here: {}'.format(', '.join(sorted(str(k) for k in known)))
    return OptionError('unknown option; ' + hint, parts + [key])


def _walk(values: Mapping[Any, Any], schema: Schema, parts: List[Any]) -> None:
    for key, value in values.items():
        if key not in schema:
            raise _unknown(key, schema, parts)
        entry = schema[key]
        if entry is None or value is None:
            continue
        kind, sub = entry
        if kind == 'one' and isinstance(value, Mapping):
            _walk(value, sub, parts + [key])
        elif kind == 'many':
            # a single item written as a mapping is accepted (the converter makes it a list)
            items = [value] if isinstance(value, Mapping) else value if isinstance(value, list) else []
            for i, item in enumerate(items):
                if isinstance(item, Mapping):
                    _walk(item, sub, parts + [key, i])
        # anything else is left to the models, which report a wrong type with its path


def check_known_options(instance: Mapping[str, Any]) -> None:
    """Raise ``OptionError`` naming the first key that is not an option, and the nearest one."""
    if isinstance(instance, Mapping):
        # The HTTP client's keys are only looked up when an instance has a key the models do not
        # declare: importing them (datadog_checks.base.utils.http, requests) costs about 0.2 s of
        # CPU at start-up, and a usual instance has none of them.
        schema = _model_schema()
        if any(key not in schema for key in instance):
            schema = instance_schema()
        _walk(instance, schema, [])


# -- endpoints -----------------------------------------------------------------------------
def url_problem(value: Any) -> str:
    """'' when ``value`` is an http(s) URL with a host, else what is wrong with it."""
    if not isinstance(value, str) or not value.strip():
        return 'must be an http(s) URL, got {!r}'.format(value)
    text = value.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        return 'is not a valid URL ({}): {!r}'.format(e, text)
    if parts.scheme not in ('http', 'https') or any(c.isspace() for c in text):
        return 'must be an http(s) URL such as https://otlp.datadoghq.com, got {!r}'.format(text)
    if not parts.hostname:
        return 'must be an http(s) URL with a host, got {!r}'.format(text)
    return ''


def _endpoints(instance: Mapping[str, Any]) -> List[Tuple[List[Any], Any, str]]:
    """(key path, value, kind) of every URL and site of the instance: kind 'url' or 'site'."""
    found: List[Tuple[List[Any], Any, str]] = []

    def section(*keys: str) -> Any:
        node: Any = instance
        for k in keys:
            node = node.get(k) if isinstance(node, Mapping) else None
        return node

    otlp = section('exporters', 'otlp_http')
    for i, exporter in enumerate([otlp] if isinstance(otlp, Mapping) else otlp if isinstance(otlp, list) else []):
        if isinstance(exporter, Mapping) and 'endpoint' in exporter:
            found.append((['exporters', 'otlp_http', i, 'endpoint'], exporter['endpoint'], 'url'))
    health = section('health_metrics')
    if isinstance(health, Mapping) and health.get('endpoint') not in (None, ''):
        found.append((['health_metrics', 'endpoint'], health['endpoint'], 'url'))
    symbol_endpoints = section('receiver', 'symbol_uploader', 'symbol_endpoints')
    for i, ep in enumerate(symbol_endpoints if isinstance(symbol_endpoints, list) else []):
        if not isinstance(ep, Mapping):
            continue
        for key in ('url', 'query_url'):
            if ep.get(key) not in (None, ''):
                found.append((['receiver', 'symbol_uploader', 'symbol_endpoints', i, key], ep[key], 'url'))
        if ep.get('site') not in (None, ''):
            found.append((['receiver', 'symbol_uploader', 'symbol_endpoints', i, 'site'], ep['site'], 'site'))
    k8s = section('processors', 'k8sattributes')
    if isinstance(k8s, Mapping) and k8s.get('kubelet_url') not in (None, ''):
        found.append((['processors', 'k8sattributes', 'kubelet_url'], k8s['kubelet_url'], 'url'))
    return found


def check_endpoints(instance: Mapping[str, Any]) -> None:
    """Raise ``OptionError`` for the first endpoint that is not an http(s) URL with a host, or a
    Datadog site that is not a domain name. Run on the expanded instance (``${env:X}`` resolved)."""
    for parts, value, kind in _endpoints(instance):
        if kind == 'site':
            if not isinstance(value, str) or not _SITE.match(value.strip()):
                raise OptionError('must be a Datadog site such as datadoghq.com, got {!r}'.format(value), parts)
            continue
        problem = url_problem(value)
        if problem:
            raise OptionError(problem, parts)


# -- messages ------------------------------------------------------------------------------
def one_line(error: BaseException) -> str:
    """A configuration error as one line. The Agent's model errors (several lines: a header, then
    a key path and a message per error) become ``path: message; path: message``."""
    context = error.__context__
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover - pydantic comes with datadog_checks.base
        ValidationError = ()  # type: ignore[assignment]
    if isinstance(context, ValidationError):
        items = []
        for e in context.errors():
            loc = [p for p in e.get('loc', ()) if p != '__root__']
            items.append('{}: {}'.format(key_path(loc), e.get('msg', '')) if loc else str(e.get('msg', '')))
        if items:
            return '; '.join(items)
    return ' '.join(str(error).split())
