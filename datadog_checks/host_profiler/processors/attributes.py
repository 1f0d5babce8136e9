# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The user's attribute actions (``processors.attributes.actions``), with the semantics of the
OpenTelemetry collector-contrib ``attributesprocessor``:

* ``insert``  sets ``key`` only when it is absent; ``update`` only when present; ``upsert`` both.
  The value is ``value`` or the value of ``from_attribute`` (nothing happens when that one is absent).
* ``delete``  removes ``key`` and every key matching ``pattern``.
* ``hash``    replaces the value of ``key`` (and keys matching ``pattern``) by the hex SHA-256 of
  the value. The contrib processor used SHA-1 until 2023 and has hashed with SHA-256 since
  (open-telemetry/opentelemetry-collector-contrib#19779, default since #22831); we do the same.
  Bytes hashed: UTF-8 for strings, 0x01/0x00 for booleans, 8 bytes little-endian for ints and
  IEEE-754 doubles, as the contrib hasher encodes them.
* ``extract`` matches ``pattern`` (named groups) against the string value of ``key`` and upserts
  one attribute per group; no match, no change.
* ``convert`` converts the value of ``key`` to ``converted_type`` (int, double, string); a value
  that does not convert is left as is.

Actions apply to resource attributes. The sample keys ``thread.id`` and ``thread.name`` apply to
each sample instead (``Sample`` is frozen: rebuilt with ``dataclasses.replace``); there, only
insert/update/upsert (with ``value``), delete and hash (``thread.name`` only) make sense.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
import struct
from typing import Any, Dict, List, Optional

from ..profile.model import Profile, Sample

SAMPLE_KEYS = {'thread.id': 'thread_id', 'thread.name': 'thread_name'}
_MISSING = object()


def hash_value(value: Any) -> str:
    if isinstance(value, bool):
        data = b'\x01' if value else b'\x00'
    elif isinstance(value, int):
        data = struct.pack('<q', value) if -(2**63) <= value < 2**63 else str(value).encode()
    elif isinstance(value, float):
        data = struct.pack('<d', value)
    elif isinstance(value, bytes):
        data = value
    else:
        data = str(value).encode('utf-8')
    return hashlib.sha256(data).hexdigest()


def _convert(value: Any, kind: str) -> Any:
    try:
        if kind == 'string':
            if isinstance(value, bool):
                return 'true' if value else 'false'
            return str(value)
        if kind == 'int':
            if isinstance(value, bool):
                return int(value)
            if isinstance(value, float):
                return int(value)
            return int(str(value).strip())
        if kind == 'double':
            return float(value)
    except (TypeError, ValueError):
        pass
    return value


class _Action:
    __slots__ = ('key', 'action', 'value', 'from_attribute', 'pattern', 'converted_type', 'sample_field')

    def __init__(self, spec: Dict[str, Any]) -> None:
        self.key = spec.get('key') or ''
        self.action = spec['action']
        self.value = spec.get('value', _MISSING)
        self.from_attribute = spec.get('from_attribute')
        self.pattern = re.compile(spec['pattern']) if spec.get('pattern') else None
        self.converted_type = spec.get('converted_type')
        self.sample_field = SAMPLE_KEYS.get(self.key)
        if self.sample_field:
            if self.action in ('extract', 'convert') or self.from_attribute:
                raise ValueError('{} supports only insert/update/upsert with value, delete and hash'.format(self.key))
            if self.action == 'hash' and self.key == 'thread.id':
                raise ValueError('thread.id is an integer and cannot be hashed')

    # -- resource attributes -------------------------------------------------------------
    def apply(self, attrs: Dict[str, Any]) -> None:
        action = self.action
        key = self.key
        if action in ('insert', 'update', 'upsert'):
            if self.from_attribute is not None:
                value = attrs.get(self.from_attribute, _MISSING)
                if value is _MISSING:
                    return
            else:
                value = self.value
            present = key in attrs
            if (action == 'insert' and present) or (action == 'update' and not present):
                return
            attrs[key] = value
        elif action == 'delete':
            if key:
                attrs.pop(key, None)
            if self.pattern is not None:
                for k in [k for k in attrs if self.pattern.match(k)]:
                    del attrs[k]
        elif action == 'hash':
            if key and key in attrs:
                attrs[key] = hash_value(attrs[key])
            if self.pattern is not None:
                for k in [k for k in attrs if self.pattern.match(k)]:
                    if k != key:
                        attrs[k] = hash_value(attrs[k])
        elif action == 'extract':
            value = attrs.get(key)
            if isinstance(value, str):
                m = self.pattern.search(value)
                if m:
                    for name, group in m.groupdict().items():
                        if group is not None:
                            attrs[name] = group
        elif action == 'convert':
            if key in attrs:
                attrs[key] = _convert(attrs[key], self.converted_type)

    # -- sample fields (thread.id / thread.name) ------------------------------------------
    def apply_sample(self, sample: Sample) -> Sample:
        field = self.sample_field
        current = getattr(sample, field)
        present = bool(current)  # 0 / '' mean "not set" on a Sample
        action = self.action
        if action in ('insert', 'update', 'upsert'):
            if (action == 'insert' and present) or (action == 'update' and not present):
                return sample
            value = _convert(self.value, 'int' if field == 'thread_id' else 'string')
            return dataclasses.replace(sample, **{field: value})
        if action == 'delete':
            return dataclasses.replace(sample, **{field: 0 if field == 'thread_id' else ''}) if present else sample
        if action == 'hash' and present:
            return dataclasses.replace(sample, **{field: hash_value(current)})
        return sample


class AttributesProcessor:
    """``processors.attributes`` (``{actions: [...]}``), actions applied in order."""

    name = 'attributes'

    def __init__(self, config: Optional[Dict[str, Any]] = None) -> None:
        specs = (config or {}).get('actions') or []
        actions = [_Action(spec) for spec in specs]
        self._resource_actions: List[_Action] = [a for a in actions if not a.sample_field]
        self._sample_actions: List[_Action] = [a for a in actions if a.sample_field]

    def __bool__(self) -> bool:
        return bool(self._resource_actions or self._sample_actions)

    def process(self, profile: Profile) -> Profile:
        resource_actions = self._resource_actions
        sample_actions = self._sample_actions
        for resource in profile.resources:
            attrs = resource.attributes
            for action in resource_actions:
                action.apply(attrs)
            if sample_actions:
                resource.samples = [self._apply_sample(s, sample_actions) for s in resource.samples]
                resource.off_cpu_samples = [self._apply_sample(s, sample_actions) for s in resource.off_cpu_samples]
        return profile

    @staticmethod
    def _apply_sample(sample: Sample, actions: List[_Action]) -> Sample:
        for action in actions:
            sample = action.apply_sample(sample)
        return sample
