# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Read an instance (conf.yaml or a dict), pick the converter by mode, expand ``${env:X}``.

Order: convert first, expand after. The converters therefore see ``${env:X}`` as plain
strings: they never re-type an expanded value (a numeric-looking API key read from the
environment stays a string) and never write a secret from the environment into warnings.
"""
from __future__ import annotations

import os
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import yaml

from .converters import ConverterError, convert_with_agent, convert_without_agent

MODES = ('auto', 'agent', 'standalone')
_ENV_REF = re.compile(r'\$(\$?)\{env:([A-Za-z_][A-Za-z0-9_]*)\}')


def resolve_mode(mode: Optional[str], instance: Optional[Mapping[str, Any]] = None) -> str:
    """``auto`` (or nothing) -> ``agent`` when running inside the Agent, else ``standalone``.
    The instance's own ``mode:`` wins over ``auto``."""
    if mode in (None, '', 'auto') and isinstance(instance, Mapping):
        mode = instance.get('mode') or 'auto'
    if mode in (None, '', 'auto'):
        from datadog_checks.base.agent import AGENT_RUNNING

        return 'agent' if AGENT_RUNNING else 'standalone'
    if mode not in MODES:
        raise ConverterError('mode must be one of auto, agent, standalone', 'mode')
    return mode


def expand_env(value: Any, environ: Optional[Mapping[str, str]] = None, *, _path: str = '',
               warnings: Optional[List[str]] = None) -> Any:
    """Expand ``${env:NAME}`` in every string of a nested structure; ``$${env:NAME}`` is a literal.

    An unset variable expands to '' with a warning naming the key path (as the collector does).
    """
    env = os.environ if environ is None else environ
    if isinstance(value, dict):
        return {
            k: expand_env(v, env, _path='{}.{}'.format(_path, k) if _path else str(k), warnings=warnings)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [expand_env(v, env, _path='{}[{}]'.format(_path, i), warnings=warnings) for i, v in enumerate(value)]
    if isinstance(value, str) and '{env:' in value:

        def repl(m):
            if m.group(1):  # $${env:X}: escaped, keep ${env:X}
                return '${env:' + m.group(2) + '}'
            if m.group(2) not in env and warnings is not None:
                warnings.append('environment variable {} is not set (at {})'.format(m.group(2), _path))
            return env.get(m.group(2), '')

        return _ENV_REF.sub(repl, value)
    return value


def read_instance(path_or_dict: Union[str, os.PathLike, Mapping[str, Any], None]) -> Dict[str, Any]:
    """``instances[0]`` of a conf.yaml (or of a dict shaped like one), or a bare instance mapping."""
    if path_or_dict is None:
        return {}
    if isinstance(path_or_dict, Mapping):
        data: Any = dict(path_or_dict)
        source = 'instance'
    else:
        source = os.fspath(path_or_dict)
        try:
            with open(source, 'r', encoding='utf-8') as f:
                data = yaml.safe_load(f)
        except OSError as e:
            raise ConverterError('cannot read configuration file: {}'.format(e.strerror or e), source)
        except yaml.YAMLError as e:
            raise ConverterError('invalid YAML: {}'.format(str(e).replace('\n', ' ')), source)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConverterError('the configuration must be a mapping', source)
    if 'instances' in data:
        instances = data['instances']
        if not isinstance(instances, list) or not instances:
            raise ConverterError('instances must be a non-empty list', 'instances')
        first = instances[0] or {}
        if not isinstance(first, dict):
            raise ConverterError('the instance must be a mapping', 'instances[0]')
        return dict(first)
    data.pop('init_config', None)
    return data


def load_instance(
    path_or_dict: Union[str, os.PathLike, Mapping[str, Any], None],
    mode: Optional[str] = 'auto',
    *,
    agent_config: Optional[Callable[[str], Any]] = None,
    require_exporter: bool = False,
    origin_version: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> Tuple[Dict[str, Any], List[str]]:
    """Read, convert (by mode) and expand an instance. Returns (instance, warnings).

    ``agent_config`` defaults to ``datadog_agent.get_config`` and ``origin_version`` (agent
    mode) to ``datadog_agent.get_version()``, the Agent version the original sends.
    The resolved mode is written back as ``instance['mode']``.
    Raises ``ConverterError`` (a ``ConfigurationError``) naming the key path.
    """
    instance = read_instance(path_or_dict)
    resolved = resolve_mode(mode, instance)
    if resolved == 'agent':
        from datadog_checks.base.agent import datadog_agent

        if agent_config is None:
            agent_config = datadog_agent.get_config
        if origin_version is None:
            try:
                origin_version = str(datadog_agent.get_version() or '') or None
            except Exception:
                origin_version = None
        converted, warnings = convert_with_agent(instance, agent_config, origin_version=origin_version)
    else:
        converted, warnings = convert_without_agent(
            instance, require_exporter=require_exporter, origin_version=origin_version
        )
    converted = expand_env(converted, environ, warnings=warnings)
    converted['mode'] = resolved
    return converted, warnings
