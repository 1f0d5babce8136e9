# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Instance converters: the user's ``conf.yaml`` instance -> the normalised instance.

Two pure functions, as in Datadog's Go host profiler (``converter_with_agent.go`` /
``converter_without_agent.go`` and the bundled ``dd:`` provider), translated from the
collector's component graph to this check's instance shape::

    receiver:   {samples_per_second, include_env_vars, ..., symbol_uploader: {...}}
    processors: {attributes, infraattributes, k8sattributes, resourcedetection}
    exporters:  {otlp_http: [...], debug: {...}, file: {...}}

Rules common to both modes (each rule is restated as a comment above its code):

* R1 user-set leaves are never overwritten (``_set_default`` only writes absent keys);
* R2 missing required leaves are added with every parent (``_ensure_map``);
* R3 incompatible user values produce a warning and are kept; what the converter adds where
  the user gave no value is a note (logged at INFO), never a warning;
* R4 numeric ``api_key``/``app_key``/``dd-api-key`` become strings. ``${env:X}``
  references are strings already and are left alone: the loader expands them *after*
  conversion, so an expanded value is never re-typed;
* R5 errors raise ``ConverterError(message, key_path)`` with the Go host profiler's messages.

Nothing here does I/O except reading ``os.environ`` to classify an endpoint written as
``${env:X}`` (``runtime.datadog_endpoints``; the value itself is not expanded in the output).
"""
from __future__ import annotations

import copy
import json
import re
from typing import Any, Callable, Dict, List, Optional, Tuple

from datadog_checks.base import ConfigurationError

from ..__about__ import NAME_BUNDLED, NAME_STANDALONE
from ..runtime.datadog_endpoints import (  # noqa: F401 - part of this module's interface
    ddprofiling_is_agentless,
    extract_site_from_url,
    is_datadog_endpoint,
)

AgentConfig = Callable[[str], Any]
Warnings = List[str]

ORIGIN_BUNDLED = NAME_BUNDLED
ORIGIN_STANDALONE = NAME_STANDALONE
HEADER_API_KEY = 'dd-api-key'
HEADER_ORIGIN = 'dd-evp-origin'
HEADER_ORIGIN_VERSION = 'dd-evp-origin-version'
HEADER_METRIC_CONFIG = 'dd-otel-metric-config'
METRIC_CONFIG_VALUE = '{"resource_attributes_as_tags": true}'
DEFAULT_SITE = 'datadoghq.com'
DEFAULT_CARDINALITY = 'orchestrator'
CARDINALITIES = ('low', 'orchestrator', 'high')
ATTRIBUTE_ACTIONS = ('insert', 'update', 'upsert', 'delete', 'hash', 'extract', 'convert')
RESOURCE_DETECTION_KEYS = ('host.arch', 'host.name', 'os.type')

MSG_NO_ENDPOINTS = (
    "no valid endpoints configured: ensure the Agent configuration has 'api_key' "
    "and either 'apm_config.profiling_dd_url' or 'site'"
)
MSG_NO_EXPORTER = 'no otlp_http exporter configured in profiles pipeline'
MSG_HOST_ARCH = (
    'host.arch is required but is disabled by user configuration; preserving user value. '
    'Profiles for compiled languages will be missing symbols.'
)



class ConverterError(ConfigurationError):
    """A configuration the converter cannot normalise. ``key_path`` names the offending key."""

    def __init__(self, message: str, key_path: str = '') -> None:
        self.message = message
        self.key_path = key_path
        super().__init__('{} (at {})'.format(message, key_path) if key_path else message)


def default_origin_version() -> str:
    try:
        from datadog_checks.host_profiler.__about__ import __version__

        return str(__version__)
    except Exception:  # the package metadata is written by another part of the tree
        return '0.0.0'


# ---------------------------------------------------------------------------------------
# Small helpers on nested dicts: paths are lists of keys, and the key path string used
# in messages joins them with '.' (list items as [i]).


def _path_str(parts) -> str:
    out = ''
    for p in parts:
        if isinstance(p, int):
            out += '[{}]'.format(p)
        else:
            out += ('.' if out else '') + str(p)
    return out


def _ensure_map(parent: Dict[str, Any], key: str, path: List[Any]) -> Dict[str, Any]:
    """Return ``parent[key]`` as a mapping, creating it (R2). A non-mapping is an error."""
    value = parent.get(key)
    if value is None:
        value = {}
        parent[key] = value
    if not isinstance(value, dict):
        raise ConverterError('must be a mapping, got {}'.format(type(value).__name__), _path_str(path + [key]))
    return value


def _set_default(parent: Dict[str, Any], key: str, value: Any) -> Tuple[Any, bool]:
    """R1: write ``value`` only when the user did not set ``key``; return (effective value, added)."""
    if key in parent and parent[key] is not None:
        return parent[key], False
    parent[key] = value
    return value, True


def _stringify_key(parent: Dict[str, Any], key: str) -> bool:
    """R4: numeric API keys become strings. Returns whether a usable (non-empty) string is present.

    Values written as ``${env:X}`` are strings and stay untouched (expanded later by the loader).
    """
    value = parent.get(key)
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        parent[key] = str(value)
    elif isinstance(value, float):
        parent[key] = str(int(value)) if value.is_integer() else repr(value)
    value = parent.get(key)
    return isinstance(value, str) and value.strip() != ''


def _exporter_name(exporter: Dict[str, Any], index: int) -> str:
    name = exporter.get('name')
    return name if isinstance(name, str) and name else 'otlp_http[{}]'.format(index)


def _exporter_list(instance: Dict[str, Any]) -> List[Dict[str, Any]]:
    exporters = instance.get('exporters')
    if exporters is None:
        return []
    if not isinstance(exporters, dict):
        raise ConverterError('must be a mapping', 'exporters')
    otlp = exporters.get('otlp_http')
    if otlp is None:
        return []
    if isinstance(otlp, dict):  # a single exporter written as a mapping: normalise to a list
        otlp = [otlp]
        exporters['otlp_http'] = otlp
    if not isinstance(otlp, list):
        raise ConverterError('must be a list of exporters', 'exporters.otlp_http')
    for i, exporter in enumerate(otlp):
        if not isinstance(exporter, dict):
            raise ConverterError('must be a mapping', 'exporters.otlp_http[{}]'.format(i))
    return otlp


def _has_any_exporter(instance: Dict[str, Any]) -> bool:
    from ..exporters.registry import is_configured

    return is_configured(instance.get('exporters'))


# ---------------------------------------------------------------------------------------
# Rules shared by both modes.


def _check_common(instance: Dict[str, Any], warnings: Warnings) -> None:
    # YAML 1.1 reads an unquoted `perf_map: off` as false (and `on` as true)
    jvm = (instance.get('receiver') or {}).get('jvm') if isinstance(instance.get('receiver'), dict) else None
    if isinstance(jvm, dict) and isinstance(jvm.get('perf_map'), bool):
        jvm['perf_map'] = 'auto' if jvm['perf_map'] else 'off'

    processors = instance.get('processors')
    if processors is None:
        return
    if not isinstance(processors, dict):
        raise ConverterError('must be a mapping', 'processors')

    # The attributes processor's actions are checked here so that a typo is a start-up
    # error naming the key path, not a silent no-op at every export.
    attributes = processors.get('attributes')
    if attributes is not None:
        if not isinstance(attributes, dict):
            raise ConverterError('must be a mapping', 'processors.attributes')
        actions = attributes.get('actions', [])
        if not isinstance(actions, list):
            raise ConverterError('must be a list', 'processors.attributes.actions')
        for i, action in enumerate(actions):
            path = 'processors.attributes.actions[{}]'.format(i)
            if not isinstance(action, dict):
                raise ConverterError('must be a mapping', path)
            kind = action.get('action')
            if kind not in ATTRIBUTE_ACTIONS:
                raise ConverterError(
                    'unsupported action {!r}, expected one of {}'.format(kind, ', '.join(ATTRIBUTE_ACTIONS)),
                    path + '.action',
                )
            if not action.get('key') and not (kind in ('delete', 'hash') and action.get('pattern')):
                raise ConverterError('missing key', path + '.key')
            if kind in ('insert', 'update', 'upsert'):
                if ('value' in action) == ('from_attribute' in action):
                    raise ConverterError('exactly one of value or from_attribute must be set', path)
            if kind == 'extract' and not action.get('pattern'):
                raise ConverterError('extract requires a pattern with named groups', path + '.pattern')
            if action.get('pattern'):
                try:
                    compiled = re.compile(action['pattern'])
                except re.error as e:
                    raise ConverterError('invalid pattern: {}'.format(e), path + '.pattern')
                if kind == 'extract' and not compiled.groupindex:
                    raise ConverterError('extract requires a pattern with named groups', path + '.pattern')
            if kind == 'convert' and action.get('converted_type') not in ('int', 'double', 'string'):
                raise ConverterError('converted_type must be int, double or string', path + '.converted_type')

    infra = processors.get('infraattributes')
    if isinstance(infra, dict) and 'cardinality' in infra:
        card = infra['cardinality']
        # The Go host profiler writes the cardinality as the tagger's integer; accept both spellings.
        if isinstance(card, int) and not isinstance(card, bool) and 0 <= card <= 2:
            infra['cardinality'] = CARDINALITIES[card]
        elif str(card).lower() not in CARDINALITIES:
            raise ConverterError(
                'cardinality must be one of low, orchestrator, high', 'processors.infraattributes.cardinality'
            )
        else:
            infra['cardinality'] = str(card).lower()

    k8s = processors.get('k8sattributes')
    if isinstance(k8s, dict) and k8s.get('auth') not in (None, 'none', 'serviceaccount'):
        raise ConverterError('auth must be none or serviceaccount', 'processors.k8sattributes.auth')


def _stringify_symbol_endpoints(endpoints: List[Any]) -> None:
    # R4: numeric api_key/app_key in symbol endpoints become strings.
    for ep in endpoints:
        if isinstance(ep, dict):
            _stringify_key(ep, 'api_key')
            if 'app_key' in ep:
                _stringify_key(ep, 'app_key')


def _check_datadog_exporter(
    exporter: Dict[str, Any], index: int, origin: str, origin_version: str, agent_mode: bool
) -> None:
    """Defaults and checks of one ``otlp_http`` exporter whose endpoint is a Datadog intake."""
    name = _exporter_name(exporter, index)
    path = 'exporters.otlp_http[{}]'.format(index)
    # Default compression zstd, as the Go host profiler sets on every Datadog exporter (R1: a user's
    # compression is kept).
    _set_default(exporter, 'compression', 'zstd')
    headers = exporter.get('headers')
    if headers is None:
        if agent_mode:
            # Agent mode (older with-agent converter): an exporter without a headers map is an error.
            raise ConverterError('exporter {} is not configured'.format(name), path + '.headers')
        # Standalone: the headers map is created (R2), then dd-api-key is required below.
        headers = {}
        exporter['headers'] = headers
    if not isinstance(headers, dict):
        raise ConverterError('must be a mapping', path + '.headers')
    # A Datadog intake needs the API key: never guessed, the Go host profiler's message (R5); numeric
    # keys become strings (R4).
    if not _stringify_key(headers, HEADER_API_KEY):
        raise ConverterError(
            '{} exporter missing required dd-api-key header'.format(name), path + '.headers.' + HEADER_API_KEY
        )
    # Required origin headers are added when absent (R1/R2).
    _set_default(headers, HEADER_ORIGIN, origin)
    _set_default(headers, HEADER_ORIGIN_VERSION, origin_version)
    _set_default(headers, HEADER_METRIC_CONFIG, METRIC_CONFIG_VALUE)


def _check_exporters(instance: Dict[str, Any], origin: str, origin_version: str, agent_mode: bool) -> None:
    for i, exporter in enumerate(_exporter_list(instance)):
        endpoint = exporter.get('endpoint')
        if not isinstance(endpoint, str) or not endpoint.strip():
            raise ConverterError('{} exporter missing required endpoint'.format(_exporter_name(exporter, i)),
                                 'exporters.otlp_http[{}].endpoint'.format(i))
        # Only Datadog intakes need dd-api-key and the origin headers; an exporter to a plain
        # OTLP endpoint (a local collector) is left as the user wrote it. The Go host profiler applies
        # this to every otlp_http exporter because it has no other kind; we do send elsewhere.
        if is_datadog_endpoint(endpoint):
            _check_datadog_exporter(exporter, i, origin, origin_version, agent_mode)
        elif isinstance(exporter.get('headers'), dict) and HEADER_API_KEY in exporter['headers']:
            _stringify_key(exporter['headers'], HEADER_API_KEY)


# ---------------------------------------------------------------------------------------
# Self-profiling (``ddprofiling``): the Go host profiler's ddprofiling extension, as an instance
# section. Only a section the user wrote is touched, so instances without it are unchanged.

DEFAULT_TRACE_RECEIVER_PORT = 8126
MSG_DDPROFILING_NO_ENDPOINT = (
    'ddprofiling is enabled but has no endpoint: set ddprofiling.endpoint to a trace agent '
    '(http://host:8126) or an agentless intake (https://intake.profile.<site>)'
)


def _ddprofiling_section(conf: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The user's ``ddprofiling`` mapping when it is enabled (None otherwise); checks its types."""
    if conf.get('ddprofiling') is None:
        return None
    section = _ensure_map(conf, 'ddprofiling', [])
    enabled = section.get('enabled', False)
    if not isinstance(enabled, bool):
        raise ConverterError('must be true or false', 'ddprofiling.enabled')
    endpoint = section.get('endpoint')
    if endpoint is not None and not isinstance(endpoint, str):
        raise ConverterError('must be a string', 'ddprofiling.endpoint')
    if 'api_key' in section:
        _stringify_key(section, 'api_key')  # R4
    return section if enabled else None


def _agent_trace_receiver(agent_config: AgentConfig) -> str:
    """The Agent's trace receiver: its unix socket when configured, else localhost:receiver_port."""
    socket_path = _agent_get(agent_config, 'apm_config.receiver_socket')
    if isinstance(socket_path, str) and socket_path.strip():
        return 'unix://' + socket_path.strip()
    port = _agent_get(agent_config, 'apm_config.receiver_port')
    try:
        port = int(port) if port is not None else DEFAULT_TRACE_RECEIVER_PORT
    except (TypeError, ValueError):
        port = DEFAULT_TRACE_RECEIVER_PORT
    if port <= 0:  # receiver_port 0 turns the TCP receiver off: nothing listens
        port = DEFAULT_TRACE_RECEIVER_PORT
    return 'http://localhost:{}'.format(port)


def _convert_ddprofiling(conf: Dict[str, Any], agent_config: Optional[AgentConfig], warnings: Warnings) -> None:
    """Agent mode (``agent_config`` given): the endpoint defaults to the Agent's trace receiver and an
    agentless intake's API key to the Agent's ``api_key``. Standalone: nothing is inferred; an enabled
    section without endpoint, or with an agentless intake but no API key, is an error (R5)."""
    section = _ddprofiling_section(conf)
    if section is None:
        return
    endpoint = section.get('endpoint')
    if not (isinstance(endpoint, str) and endpoint.strip()):
        if agent_config is None:
            raise ConverterError(MSG_DDPROFILING_NO_ENDPOINT, 'ddprofiling.endpoint')
        endpoint = section['endpoint'] = _agent_trace_receiver(agent_config)
    if ddprofiling_is_agentless(endpoint) and not _stringify_key(section, 'api_key'):
        api_key = _agent_get(agent_config, 'api_key') if agent_config is not None else None
        if api_key in (None, ''):
            raise ConverterError(
                'ddprofiling.endpoint {} is an agentless intake: it needs ddprofiling.api_key'.format(endpoint),
                'ddprofiling.api_key',
            )
        section['api_key'] = str(api_key)


# ---------------------------------------------------------------------------------------
# Agent mode.


def _agent_get(agent_config: AgentConfig, key: str) -> Any:
    try:
        value = agent_config(key)
    except Exception:
        return None
    return None if value == '' else value


def _as_bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ('1', 'true', 'yes', 'on')
    return bool(value)


def agent_endpoints(agent_config: AgentConfig, warnings: Warnings) -> List[Tuple[str, List[str]]]:
    """The (site, [api keys]) list the Agent would ship profiles to (bundled provider rules)."""
    endpoints: List[Tuple[str, List[str]]] = []
    # Additional endpoints first: URL -> keys, the site taken from the URL. An endpoint without
    # a site or without keys is skipped with a warning.
    additional = _agent_mapping(agent_config, 'apm_config.profiling_additional_endpoints', warnings)
    if additional:
        for url in sorted(additional):
            keys = additional[url]
            if isinstance(keys, (str, int)):
                keys = [keys]
            keys = [str(k) for k in (keys or []) if k not in (None, '')]
            site = extract_site_from_url(url)
            if not site or not keys:
                warnings.append(
                    'skipping apm_config.profiling_additional_endpoints entry {}: {}'.format(
                        url, 'no Datadog site in URL' if not site else 'no API key'
                    )
                )
                continue
            endpoints.append((site, keys))
    # The main endpoint is added when api_key is set and profiling_send_to_main_endpoint is not
    # false (the Agent's default is true). Its site: profiling_dd_url, then site, then datadoghq.com.
    api_key = _agent_get(agent_config, 'api_key')
    send_main = _as_bool(_agent_get(agent_config, 'apm_config.profiling_send_to_main_endpoint'), True)
    if api_key not in (None, '') and send_main:
        site = extract_site_from_url(_agent_get(agent_config, 'apm_config.profiling_dd_url'))
        site = site or str(_agent_get(agent_config, 'site') or '') or DEFAULT_SITE
        endpoints.append((site, [str(api_key)]))
    return endpoints


def _agent_mapping(agent_config: AgentConfig, key: str, warnings: Warnings) -> Dict[Any, Any]:
    """An Agent setting that is a mapping, or a JSON object in a string (as environment variables
    give it); {} otherwise, with a warning when the string is not JSON."""
    value = _agent_get(agent_config, key)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            warnings.append('{} is not a mapping; ignored'.format(key))
            return {}
    return value if isinstance(value, dict) else {}


def _additional_headers(agent_config: AgentConfig, warnings: Warnings) -> Dict[str, str]:
    headers = _agent_mapping(agent_config, 'hostprofiler.additional_http_headers', warnings)
    return {str(k): str(v) for k, v in headers.items()}


def _note(notes: Optional[Warnings], message: str) -> None:
    """R3: a default added where the user gave no value is worth an INFO line, not a warning."""
    if notes is not None:
        notes.append(message)


def _start(instance: Any, origin_version: Optional[str]) -> Tuple[Dict[str, Any], Warnings, str]:
    """What both converters do first: a private copy, the origin version, the common checks."""
    if instance is None:
        instance = {}
    if not isinstance(instance, dict):
        raise ConverterError('the instance must be a mapping', 'instances[0]')
    conf = copy.deepcopy(instance)
    warnings: Warnings = []
    version = origin_version if origin_version is not None else default_origin_version()
    _check_common(conf, warnings)
    return conf, warnings, version


def convert_with_agent(
    instance: Dict[str, Any], agent_config: AgentConfig, *, origin_version: Optional[str] = None,
    notes: Optional[Warnings] = None,
) -> Tuple[Dict[str, Any], Warnings]:
    """Normalise an instance for agent mode; ``agent_config`` is ``datadog_agent.get_config``.
    Returns (instance, warnings); ``notes`` (a list, optional) receives what was added (R3).

    The Agent's tagger is the enrichment (infraattributes); endpoints and keys come from the
    Agent's own configuration when the user did not write them.
    """
    conf, warnings, version = _start(instance, origin_version)

    endpoints_cache: List[Optional[List[Tuple[str, List[str]]]]] = [None]

    def endpoints() -> List[Tuple[str, List[str]]]:
        # Inferred lazily: a user who wrote every exporter and endpoint needs no Agent key.
        if endpoints_cache[0] is None:
            found = agent_endpoints(agent_config, warnings)
            if not found:
                raise ConverterError(MSG_NO_ENDPOINTS, 'exporters.otlp_http')
            endpoints_cache[0] = found
        return endpoints_cache[0]

    # Exporters: user otlp_http exporters to a Datadog intake must carry headers and dd-api-key
    # (the Go host profiler's messages); the bundled origin headers and zstd are added when absent.
    _check_exporters(conf, ORIGIN_BUNDLED, version, agent_mode=True)
    # No otlp_http exporter at all: infer one per (site, key) from the Agent configuration,
    # named otlp_http/<site>_<n>, endpoint https://otlp.<site>, zstd, headers = the Agent's
    # hostprofiler.additional_http_headers first, then the required Datadog headers.
    if not _exporter_list(conf):
        extra = _additional_headers(agent_config, warnings)
        inferred = []
        for site, keys in endpoints():
            for n, key in enumerate(keys):
                headers = dict(extra)
                headers[HEADER_API_KEY] = key
                headers[HEADER_ORIGIN] = ORIGIN_BUNDLED
                headers[HEADER_ORIGIN_VERSION] = version
                headers[HEADER_METRIC_CONFIG] = METRIC_CONFIG_VALUE
                inferred.append(
                    {
                        'name': 'otlp_http/{}_{}'.format(site, n),
                        'endpoint': 'https://otlp.{}'.format(site),
                        'compression': 'zstd',
                        'headers': headers,
                    }
                )
        exporters = _ensure_map(conf, 'exporters', [])
        exporters['otlp_http'] = inferred

    # A debug exporter is added when the Agent sets hostprofiler.debug.verbosity (R1: a user's
    # debug exporter wins).
    verbosity = _agent_get(agent_config, 'hostprofiler.debug.verbosity')
    if verbosity:
        exporters = _ensure_map(conf, 'exporters', [])
        debug = exporters.get('debug')
        if debug is None:
            exporters['debug'] = {'verbosity': str(verbosity)}

    # Receiver: when absent, it is added with the symbol uploader enabled and the inferred
    # endpoints. When the uploader is enabled (explicitly, or by its default) and its endpoints
    # are missing or empty, they are inferred (one {site, api_key} per key).
    receiver = _ensure_map(conf, 'receiver', [])
    uploader = _ensure_map(receiver, 'symbol_uploader', ['receiver'])
    enabled, _ = _set_default(uploader, 'enabled', True)
    if enabled:
        eps = uploader.get('symbol_endpoints')
        if eps is not None and not isinstance(eps, list):
            raise ConverterError('symbol_endpoints must be a list', 'receiver.symbol_uploader.symbol_endpoints')
        if not eps:
            uploader['symbol_endpoints'] = [{'site': site, 'api_key': key} for site, keys in endpoints() for key in keys]
        _stringify_symbol_endpoints(uploader['symbol_endpoints'])
    elif isinstance(uploader.get('symbol_endpoints'), list):
        _stringify_symbol_endpoints(uploader['symbol_endpoints'])

    processors = _ensure_map(conf, 'processors', [])
    # infraattributes is the enrichment in agent mode: added with defaults (and a warning) when
    # missing; allow_hostname_override defaults to true, and a user's false warns and is kept.
    infra = processors.get('infraattributes')
    if infra is None:
        processors['infraattributes'] = {'allow_hostname_override': True, 'cardinality': DEFAULT_CARDINALITY}
        _note(notes, 'Added infraattributes processor with default settings to user configuration')
    else:
        infra = _ensure_map(processors, 'infraattributes', ['processors'])
        override, _ = _set_default(infra, 'allow_hostname_override', True)
        if override is False:
            warnings.append(
                'infraattributes.allow_hostname_override is disabled by user configuration; preserving user value. '
                'Profiles will not carry the Agent hostname.'
            )
        _set_default(infra, 'cardinality', DEFAULT_CARDINALITY)
    # resourcedetection is deleted in agent mode (the Go host profiler removes every resourcedetection):
    # infraattributes sets host.arch and the Agent hostname.
    if 'resourcedetection' in processors:
        del processors['resourcedetection']
        warnings.append('Removed resourcedetection processor: in agent mode infraattributes sets host.arch and host.name')
    # k8sattributes is the standalone enrichment; in agent mode the tagger already carries the
    # Kubernetes tags, so it is removed (with a warning), as the bundled config has none.
    if 'k8sattributes' in processors:
        del processors['k8sattributes']
        warnings.append('Removed k8sattributes processor: in agent mode the Agent tagger provides Kubernetes tags')

    # ddprofiling: endpoint defaults to the Agent's trace receiver (socket, else localhost:port).
    _convert_ddprofiling(conf, agent_config, warnings)

    return conf, warnings


# ---------------------------------------------------------------------------------------
# Standalone mode.


def convert_without_agent(
    instance: Dict[str, Any], *, require_exporter: bool = False, origin_version: Optional[str] = None,
    notes: Optional[Warnings] = None,
) -> Tuple[Dict[str, Any], Warnings]:
    """Normalise an instance for standalone mode: nothing secret is guessed.
    Returns (instance, warnings); ``notes`` (a list, optional) receives what was added (R3).

    ``require_exporter``: the caller has no local fallback (``host-profiler run`` writes files
    when nothing is configured, so it passes False; a standalone check with no output passes True).
    """
    conf, warnings, version = _start(instance, origin_version)

    # No exporter at all, while the caller needs one: URLs and API keys cannot be inferred
    # without the Agent, so the user is told (original message).
    if require_exporter and not _has_any_exporter(conf):
        raise ConverterError(MSG_NO_EXPORTER, 'exporters.otlp_http')
    # Every otlp_http exporter to a Datadog intake: compression zstd, headers created, dd-api-key
    # required (a string; numeric becomes string), then dd-evp-origin=host-profiler-standalone,
    # dd-evp-origin-version and dd-otel-metric-config added when absent.
    _check_exporters(conf, ORIGIN_STANDALONE, version, agent_mode=False)

    processors = conf.get('processors')
    if processors is None:
        processors = conf['processors'] = {}
    # resourcedetection: added with host.arch/host.name/os.type on when missing (note); on a
    # user's section each switch defaults to true, and host.arch turned off warns and is kept.
    rd = processors.get('resourcedetection')
    if rd is None:
        processors['resourcedetection'] = {k: True for k in RESOURCE_DETECTION_KEYS}
        _note(notes, 'Added minimal resourcedetection processor to user configuration')
    else:
        rd = _ensure_map(processors, 'resourcedetection', ['processors'])
        arch, _ = _set_default(rd, 'host.arch', True)
        if arch is False:
            warnings.append(MSG_HOST_ARCH)
        _set_default(rd, 'host.name', True)
        _set_default(rd, 'os.type', True)
    # infraattributes needs the Agent's tagger: removed in standalone mode (warning).
    if 'infraattributes' in processors:
        del processors['infraattributes']
        warnings.append('Removed infraattributes processor: it requires the Datadog Agent (standalone mode)')

    # Receiver: when no receiver section exists, a minimal one is added with the symbol
    # uploader disabled (endpoints and keys cannot be guessed), with a note.
    receiver = conf.get('receiver')
    if receiver is None:
        conf['receiver'] = {'symbol_uploader': {'enabled': False}}
        _note(notes, 'Added minimal receiver to user configuration: symbol_uploader disabled')
    else:
        receiver = _ensure_map(conf, 'receiver', [])
        uploader = receiver.get('symbol_uploader')
        path = 'receiver.symbol_uploader.symbol_endpoints'
        if uploader is None or (isinstance(uploader, dict) and 'enabled' not in uploader
                                and not uploader.get('symbol_endpoints')):
            # The uploader's own default is enabled, which would fail without endpoints; with
            # nothing to upload to, it is turned off explicitly (note) instead of failing later.
            uploader = _ensure_map(receiver, 'symbol_uploader', ['receiver'])
            uploader['enabled'] = False
            _note(notes, 'symbol_uploader disabled: no symbol_endpoints configured (standalone mode)')
        uploader = _ensure_map(receiver, 'symbol_uploader', ['receiver'])
        if uploader.get('enabled', True):
            # Enabled uploader: symbol_endpoints must be a non-empty list (original messages).
            eps = uploader.get('symbol_endpoints')
            if not isinstance(eps, list):
                raise ConverterError('symbol_endpoints must be a list', path)
            if not eps:
                raise ConverterError('symbol_endpoints cannot be empty when symbol_uploader is enabled', path)
            for i, ep in enumerate(eps):
                if not isinstance(ep, dict):
                    raise ConverterError('must be a mapping', '{}[{}]'.format(path, i))
                if not ep.get('site') and not ep.get('url'):
                    raise ConverterError('symbol endpoint needs a site', '{}[{}].site'.format(path, i))
                if not _stringify_key(ep, 'api_key'):
                    raise ConverterError('symbol endpoint needs an api_key', '{}[{}].api_key'.format(path, i))
            _stringify_symbol_endpoints(eps)
        elif isinstance(uploader.get('symbol_endpoints'), list):
            _stringify_symbol_endpoints(uploader['symbol_endpoints'])

    # ddprofiling: no default endpoint; an agentless intake needs ddprofiling.api_key.
    _convert_ddprofiling(conf, None, warnings)

    return conf, warnings
