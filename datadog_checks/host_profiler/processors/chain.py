# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Builds the processor chain of one instance (already normalised by the converters).

Order (the Go host profiler's pipelines: ``profiling -> resourcedetection | infraattributes -> user
processors -> resource/dd-profiler-internal-metadata -> otlp_http``):

1. ``resourcedetection`` -- host.arch / os.type / host.name. Standalone: as configured. Agent
   mode: host.arch and os.type only (the converter removed the user's section; the Agent
   hostname comes from infraattributes).
2. enrichment -- ``infraattributes`` (agent mode, the Agent tagger) or ``k8sattributes``
   (standalone, the kubelet), when configured.
3. ``attributes`` -- the user's actions, after enrichment so that they can rename, hash or
   delete enriched attributes too (e.g. hash ``k8s.pod.name``).
4. profiler metadata -- ``profiler_name`` / ``profiler_version`` upserted last, so a user action
   cannot remove them.

No processor overwrites an attribute the receiver set (``process.*``, ``container.id``,
``k8s.pod.uid`` and the service tags read from the process environment), except the user's
own actions and ``host.name`` under ``allow_hostname_override``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from ..__about__ import NAME_BUNDLED, NAME_STANDALONE
from ..profile.model import Profile
from .attributes import AttributesProcessor
from .infra_attributes import InfraAttributesProcessor
from .k8s_attributes import K8sAttributesProcessor
from .resource_detection import ProfilerMetadataProcessor, ResourceDetectionProcessor

PROFILER_NAMES = {'agent': NAME_BUNDLED, 'standalone': NAME_STANDALONE}


def build_processors(
    instance: Dict[str, Any],
    mode: str,
    *,
    http: Any = None,
    http_factory: Optional[Callable[[], Any]] = None,
    log: Any = None,
    telemetry: Any = None,
    version: str = '',
    tagger: Any = None,
    hostname: Optional[Callable[[], str]] = None,
    clock: Optional[Callable[[], float]] = None,
    background: bool = True,
) -> List[Any]:
    """The processors of a normalised instance, in order. Each has ``process(profile) -> profile``;
    some have ``start()`` / ``close()`` (see ``start_processors`` / ``close_processors``).
    ``http_factory`` makes the HTTP client of a processor that needs one (``http`` when given), only
    then: building one imports the Agent's HTTP stack, about 0.2 s of CPU at start-up."""
    processors_conf = instance.get('processors') or {}
    extra: Dict[str, Any] = {} if clock is None else {'clock': clock}
    chain: List[Any] = []
    if mode == 'agent':
        chain.append(ResourceDetectionProcessor({'host.arch': True, 'os.type': True, 'host.name': False}))
        infra_conf = processors_conf.get('infraattributes')
        if infra_conf is not None:
            chain.append(InfraAttributesProcessor(infra_conf, tagger=tagger, hostname=hostname,
                                                  telemetry=telemetry, log=log, **extra))
    else:
        rd_conf = processors_conf.get('resourcedetection')
        if rd_conf is not None:
            chain.append(ResourceDetectionProcessor(rd_conf, hostname=hostname))
        k8s_conf = processors_conf.get('k8sattributes')
        if k8s_conf is not None and k8s_conf.get('enabled', False):
            if http is None and http_factory is not None:
                http = http_factory()
            chain.append(K8sAttributesProcessor(k8s_conf, http=http, telemetry=telemetry, log=log,
                                                background=background, **extra))
    attributes = AttributesProcessor(processors_conf.get('attributes'))
    if attributes:
        chain.append(attributes)
    chain.append(ProfilerMetadataProcessor(PROFILER_NAMES.get(mode, PROFILER_NAMES['standalone']), version))
    return chain


def run_processors(processors: List[Any], profile: Profile) -> Profile:
    for processor in processors:
        profile = processor.process(profile)
    return profile


def start_processors(processors: List[Any]) -> None:
    for processor in processors:
        start = getattr(processor, 'start', None)
        if start is not None:
            start()


def close_processors(processors: List[Any]) -> None:
    """Non-blocking; safe from ``cancel()``."""
    for processor in processors:
        close = getattr(processor, 'close', None)
        if close is not None:
            close()
