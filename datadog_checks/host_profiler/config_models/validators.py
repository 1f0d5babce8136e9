# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Hooks of the generated config models (this file is not regenerated).

The generated models only apply defaults of top-level options (``defaults.py``); nested models carry their
defaults as plain field defaults, which pydantic does not validate (lists would stay lists, nested
``default: {}`` objects would stay dicts). ``initialize_instance`` therefore fills every missing nested leaf
with its default *before* validation, so that every section below is always a validated, frozen model:

    config.receiver.symbolizer.memory_budget_mb    config.exporters.otlp_http[0].retry.max_interval
    config.processors.resourcedetection.host_arch  config.health_metrics.enabled

Rules: a value the user set is never replaced; a section written as an empty key (``receiver:`` with every
child commented out, i.e. ``None``) counts as present with defaults; ``exporters.debug`` and
``exporters.file`` stay ``None`` unless configured (their presence enables them).
"""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Mapping

from pydantic import BaseModel

# Top-level sections that always exist after validation (they have no entry in defaults.py).
SECTIONS = ('receiver', 'processors', 'exporters', 'health_metrics')


def _model_of(annotation):
    """('one', Model) for Model/Optional[Model], ('many', Model) for tuple[Model, ...], else (None, None)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                found = _model_of(arg)
                if found[0]:
                    return found
        return None, None
    if origin is tuple:
        args = typing.get_args(annotation)
        if args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            return 'many', args[0]
        return None, None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return 'one', annotation
    return None, None


def fill_defaults(values, model):
    """A copy of ``values`` (a mapping validated later by ``model``) with every missing nested default added.

    Anything that is not a mapping is returned unchanged, so that pydantic reports it with its key path.
    """
    if not isinstance(values, Mapping):
        return values
    out = dict(values)
    for name, field in model.model_fields.items():
        key = field.alias or name
        kind, sub_model = _model_of(field.annotation)
        if out.get(key) is None:
            if key in out and kind == 'one':
                out[key] = {}
            elif field.is_required() or field.default is None:
                continue
            else:
                out[key] = copy.deepcopy(field.default)
        if kind == 'one':
            out[key] = fill_defaults(out[key], sub_model)
        elif kind == 'many' and isinstance(out[key], (list, tuple)):
            out[key] = [fill_defaults(item, sub_model) for item in out[key]]
    return out


def initialize_instance(values, **kwargs):
    from .instance import InstanceConfig

    if not isinstance(values, Mapping):
        return values
    values = dict(values)
    for section in SECTIONS:
        field = InstanceConfig.model_fields[section]
        _, sub_model = _model_of(field.annotation)
        section_values = values.get(section)
        values[section] = fill_defaults({} if section_values is None else section_values, sub_model)
    return values
