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
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import yaml

from .converters import ConverterError, convert_with_agent, convert_without_agent
from .validation import check_endpoints, check_known_options

if TYPE_CHECKING:  # pragma: no cover
    from ..config_models.instance import InstanceConfig

MODES = ('auto', 'agent', 'standalone')
AGENT_LOCK_PATH = '/opt/datadog-agent/run/host_profiler.lock'
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


class FileError(ConverterError):
    """A configuration file that cannot be read or parsed; the message names the file (and the
    line and column of a YAML error)."""

    def __init__(self, message: str, source: str) -> None:
        super().__init__(message, source)
        self.args = (message,)


def _yaml_message(source: str, error: Exception) -> str:
    """``FILE, line L, column C: invalid YAML: PROBLEM (CONTEXT)``: lines and columns from 1."""
    mark = getattr(error, 'problem_mark', None) or getattr(error, 'context_mark', None)
    where = ', line {}, column {}'.format(mark.line + 1, mark.column + 1) if mark is not None else ''
    problem = getattr(error, 'problem', None) or str(error)
    context = getattr(error, 'context', None)
    text = ' '.join('{}{}'.format(problem, ' ({})'.format(context) if context else '').split())
    return '{}{}: invalid YAML: {}'.format(source, where, text)


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
            raise FileError('{}: cannot read the configuration file: {}'.format(source, e.strerror or e), source)
        except UnicodeDecodeError as e:
            raise FileError('{}: cannot read the configuration file: not UTF-8 text (byte {} at offset {})'.format(
                source, hex(e.object[e.start]), e.start), source)
        except yaml.YAMLError as e:
            raise FileError(_yaml_message(source, e), source)
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
    notes: Optional[List[str]] = None,
) -> Tuple[Dict[str, Any], List[str]]:
    """Read, check, convert (by mode) and expand an instance. Returns (instance, warnings).

    Warnings are about values the user wrote (kept, but in conflict with what the profiler
    needs); ``notes``, when a list is given, receives what the converter added where the user
    gave no value (logged at INFO). Every key must be an option of the spec, and every endpoint
    an http(s) URL with a host (``config.validation``).

    ``agent_config`` defaults to ``datadog_agent.get_config`` and ``origin_version`` (agent
    mode) to ``datadog_agent.get_version()``, the Agent version the Go host profiler sends.
    The resolved mode is written back as ``instance['mode']``, and in agent mode an unset
    ``lock_file`` becomes ``AGENT_LOCK_PATH``.
    Raises ``ConverterError`` (a ``ConfigurationError``) naming the key path.
    """
    instance = read_instance(path_or_dict)
    check_known_options(instance)
    # the user's endpoints first (their own messages beat a converter's about the same exporter),
    # then every endpoint of the result, the inferred ones included
    check_endpoints(expand_env(instance, environ))
    resolved = resolve_mode(mode, instance)
    if resolved == 'agent':
        from datadog_checks.base.agent import datadog_agent

        if agent_config is None:
            agent_config = datadog_agent.get_config
        if origin_version is None:
            origin_version = agent_version()
        converted, warnings = convert_with_agent(instance, agent_config, origin_version=origin_version, notes=notes)
    else:
        converted, warnings = convert_without_agent(
            instance, require_exporter=require_exporter, origin_version=origin_version, notes=notes
        )
    converted = expand_env(converted, environ, warnings=warnings)
    check_endpoints(converted)
    converted['mode'] = resolved
    if resolved == 'agent' and not converted.get('lock_file'):
        # the Agent's user cannot write to /run (spec.yaml's lock_file describes both)
        converted['lock_file'] = AGENT_LOCK_PATH
    return converted, warnings


def agent_version() -> Optional[str]:
    """The Agent's version, or None outside the Agent: the stubs' placeholder version is not the
    version of anything, and must not reach the ``dd-evp-origin-version`` header."""
    from ..runtime.hostname import stub_placeholders

    try:
        from datadog_checks.base.agent import datadog_agent

        version = str(datadog_agent.get_version() or '')
    except Exception:
        return None
    return version if version and version not in stub_placeholders() else None


def build_config(
    path_or_dict: Union[str, os.PathLike, Mapping[str, Any], None],
    mode: Optional[str] = 'auto',
    *,
    warnings: Optional[List[str]] = None,
    **load_options: Any,
) -> 'InstanceConfig':
    """The validated, typed ``InstanceConfig`` of an instance: read, checked, converted and expanded
    by ``load_instance`` (its keyword options), then validated by the models generated from
    spec.yaml, which hold every default. Built once, by whoever starts the profiler (the check's
    ``self.config`` is the same model, validated by the Agent's base class from the converted
    instance); the components receive their typed sections.

    ``warnings``, when a list is given, receives the converter's warnings. Raises
    ``ConfigurationError`` naming the key path: an unknown key, a wrong type, a bad endpoint.
    """
    instance, found = load_instance(path_or_dict, mode, **load_options)
    if warnings is not None:
        warnings.extend(found)
    return validate_instance(instance)


def validate_instance(instance: Mapping[str, Any]) -> 'InstanceConfig':
    """An already converted instance as ``InstanceConfig``, validated as the Agent's base class does."""
    import logging

    from datadog_checks.base import AgentCheck

    context = {
        'logger': logging.getLogger('datadog_checks.host_profiler'),
        'warning': logging.getLogger('datadog_checks.host_profiler').warning,
        'configured_fields': frozenset(instance),
        'security_config': None,
    }
    return AgentCheck.load_configuration_model(
        'datadog_checks.host_profiler.config_models', 'InstanceConfig', dict(instance), context
    )


def section_dict(section: Any) -> Any:
    """A typed section (or value) as plain data, for the components that take a mapping: models
    become dicts keyed by the spec's names, tuples lists, frozen mappings dicts; a ``None`` field
    (an optional option left unset) is left out, as an option the user did not write."""
    from pydantic import BaseModel

    if isinstance(section, BaseModel):
        out = {}
        for name, field in type(section).model_fields.items():
            value = getattr(section, name)
            if value is not None:
                out[field.alias or name] = section_dict(value)
        return out
    if isinstance(section, Mapping):
        return {k: section_dict(v) for k, v in section.items()}
    if isinstance(section, (list, tuple)):
        return [section_dict(v) for v in section]
    return section
