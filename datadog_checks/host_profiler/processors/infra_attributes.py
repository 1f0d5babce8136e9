# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Agent-mode enrichment from the Agent's tagger (the Go host profiler's ``infraattributes`` processor).

For every resource with ``container.id`` it asks ``tagger.tag('container_id://<id>', card)``
and writes the tags as resource attributes, through ``TAG_TO_ATTRIBUTE`` (unmapped tags keep
their tag name). It never overwrites an attribute already on the resource: the receiver's
``service.name`` / ``deployment.environment.name`` / ``service.version`` (read from the process
environment) and ``container.id`` win over the container's tags. With
``allow_hostname_override`` (default true) ``host.name`` and ``datadog.host.name`` are set to
the Agent hostname. ``host.arch`` is always set (as the Go host profiler does).

Tagger answers are cached per container for ``cache_ttl`` seconds (bounded LRU); the Agent's
tagger call is in-process and cheap, but 2,000 processes share a few dozen containers.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..profile.model import Profile
from .resource_detection import host_arch

# Datadog tag -> OTel resource attribute. Tags absent from this table are kept as-is.
TAG_TO_ATTRIBUTE = {
    'kube_cluster_name': 'k8s.cluster.name',
    'kube_namespace': 'k8s.namespace.name',
    'pod_name': 'k8s.pod.name',
    'kube_node': 'k8s.node.name',
    'kube_deployment': 'k8s.deployment.name',
    'kube_replica_set': 'k8s.replicaset.name',
    'kube_stateful_set': 'k8s.statefulset.name',
    'kube_daemon_set': 'k8s.daemonset.name',
    'kube_job': 'k8s.job.name',
    'kube_cronjob': 'k8s.cronjob.name',
    'kube_container_name': 'k8s.container.name',
    'container_name': 'container.name',
    'container_id': 'container.id',
    'image_name': 'container.image.name',
    'image_tag': 'container.image.tag',
    'image_id': 'container.image.id',
    'runtime': 'container.runtime',
    'task_arn': 'aws.ecs.task.arn',
    'ecs_cluster_name': 'aws.ecs.cluster.name',
    'task_family': 'aws.ecs.task.family',
    'task_version': 'aws.ecs.task.revision',
    # Unified service tagging: only when the resource has none (the process env wins).
    'service': 'service.name',
    'env': 'deployment.environment.name',
    'version': 'service.version',
}

CARDINALITY_NAMES = ('low', 'orchestrator', 'high')


def _cardinality(tagger: Any, name: Any) -> Any:
    if isinstance(name, int) and not isinstance(name, bool):
        name = CARDINALITY_NAMES[name] if 0 <= name <= 2 else 'orchestrator'
    name = str(name or 'orchestrator').lower()
    return {'low': tagger.LOW, 'orchestrator': tagger.ORCHESTRATOR, 'high': tagger.HIGH}.get(name, tagger.ORCHESTRATOR)


def tags_to_attributes(tags: List[str]) -> Tuple[Tuple[str, str], ...]:
    """``['kube_namespace:a', 'team:x']`` -> ``(('k8s.namespace.name', 'a'), ('team', 'x'))``.
    A repeated key keeps the last value, as the Go host profiler's ``PutStr`` does."""
    out: Dict[str, str] = {}
    for tag in tags:
        if not isinstance(tag, str):
            continue
        key, sep, value = tag.partition(':')
        if not sep or not key or value == '':
            continue
        out[TAG_TO_ATTRIBUTE.get(key, key)] = value
    return tuple(out.items())


class InfraAttributesProcessor:
    name = 'infraattributes'

    def __init__(
        self,
        config: Optional[Dict[str, Any]] = None,
        *,
        tagger: Any = None,
        hostname: Optional[Callable[[], str]] = None,
        telemetry: Any = None,
        log: Any = None,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10000,
    ) -> None:
        config = config or {}
        if tagger is None:
            from datadog_checks.base.utils.tagging import tagger as agent_tagger

            tagger = agent_tagger
        if hostname is None:
            from ..runtime.hostname import HostnameProvider

            hostname = HostnameProvider()  # the Agent's; never the stubs' placeholder
        self._tagger = tagger
        self._cardinality = _cardinality(tagger, config.get('cardinality', 'orchestrator'))
        override = config.get('allow_hostname_override', True)
        self._hostname_override = True if override is None else bool(override)
        self._hostname = hostname
        self._ttl = float(config.get('cache_ttl', 60) or 0)
        self._clock = clock
        self._max = max_entries
        self._cache: 'OrderedDict[str, Tuple[float, Tuple[Tuple[str, str], ...]]]' = OrderedDict()
        self._telemetry = telemetry
        self._log = log
        self._arch = host_arch()
        if telemetry is not None:
            for name in ('processors.tagger.cache.hits', 'processors.tagger.cache.misses', 'processors.tagger.errors'):
                telemetry.declare(name)

    def _container_attributes(self, container_id: str, now: float) -> Tuple[Tuple[str, str], ...]:
        entry = self._cache.get(container_id)
        if entry is not None and now - entry[0] < self._ttl:
            self._cache.move_to_end(container_id)
            self._hits += 1
            return entry[1]
        self._misses += 1
        try:
            tags = self._tagger.tag('container_id://' + container_id, self._cardinality) or []
        except Exception as e:  # the tagger never raises in practice; keep the export going if it does
            self._errors += 1
            if self._log is not None:
                self._log.debug('tagger lookup of container %s failed: %s', container_id, e)
            return entry[1] if entry is not None else ()
        attrs = tags_to_attributes(tags)
        self._cache[container_id] = (now, attrs)
        self._cache.move_to_end(container_id)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return attrs

    def process(self, profile: Profile) -> Profile:
        self._hits = self._misses = self._errors = 0
        now = self._clock()
        host = ''
        if self._hostname_override:
            try:
                host = self._hostname() or ''
            except Exception:
                host = ''
        arch = self._arch
        for resource in profile.resources:
            attributes = resource.attributes
            container_id = attributes.get('container.id')
            if container_id:
                for key, value in self._container_attributes(container_id, now):
                    if key not in attributes:
                        attributes[key] = value
            if 'host.arch' not in attributes:
                attributes['host.arch'] = arch
            if host:
                # allow_hostname_override: the Agent hostname is what the backend joins on.
                attributes['host.name'] = host
                attributes['datadog.host.name'] = host
        if self._telemetry is not None:
            self._telemetry.count('processors.tagger.cache.hits', self._hits)
            self._telemetry.count('processors.tagger.cache.misses', self._misses)
            if self._errors:
                self._telemetry.count('processors.tagger.errors', self._errors)
        return profile

    def close(self) -> None:
        self._cache.clear()
