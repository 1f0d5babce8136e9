# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Host resource attributes (``host.arch``, ``os.type``, ``host.name``) and the profiler's own
metadata (``profiler_name``, ``profiler_version``), as the Go host profiler's ``resourcedetection``
(system detector) and ``resource/dd-profiler-internal-metadata`` processors do."""
from __future__ import annotations

import platform
from typing import Any, Callable, Dict, Optional

from ..profile.model import Profile

# platform.machine() -> OTel semantic-convention host.arch values.
_ARCH = {
    'x86_64': 'amd64',
    'amd64': 'amd64',
    'aarch64': 'arm64',
    'arm64': 'arm64',
    'armv7l': 'arm32',
    'armv6l': 'arm32',
    'arm': 'arm32',
    'i386': 'x86',
    'i686': 'x86',
    'x86': 'x86',
    'ppc64le': 'ppc64',
    'ppc64': 'ppc64',
    'ppc': 'ppc32',
    's390x': 's390x',
    'ia64': 'ia64',
}


def host_arch(machine: Optional[str] = None) -> str:
    machine = (machine or platform.machine()).lower()
    return _ARCH.get(machine, machine)


def _truthy(config: Dict[str, Any], key: str, default: bool = True) -> bool:
    value = config.get(key, default)
    return default if value is None else bool(value)


class ResourceDetectionProcessor:
    """Adds host attributes to every resource, never overwriting what is already there.

    ``config`` is ``processors.resourcedetection`` (flat keys ``host.arch``, ``host.name``,
    ``os.type``, each default true). ``host.name`` also sets ``datadog.host.name`` (what the
    original's standalone ``ddhostname`` processor adds) when absent.
    """

    name = 'resourcedetection'

    def __init__(self, config: Optional[Dict[str, Any]] = None, *, hostname: Optional[Callable[[], str]] = None,
                 machine: Optional[str] = None, system: Optional[str] = None) -> None:
        config = config or {}
        attrs: Dict[str, str] = {}
        if _truthy(config, 'host.arch'):
            attrs['host.arch'] = host_arch(machine)
        if _truthy(config, 'os.type'):
            attrs['os.type'] = (system or platform.system()).lower()
        if _truthy(config, 'host.name'):
            if hostname is None:
                from ..runtime.hostname import HostnameProvider

                hostname = HostnameProvider()
            name = hostname()
            if name:
                attrs['host.name'] = name
                attrs['datadog.host.name'] = name
        self._attrs = attrs

    @property
    def attributes(self) -> Dict[str, str]:
        return dict(self._attrs)

    def process(self, profile: Profile) -> Profile:
        items = tuple(self._attrs.items())
        for resource in profile.resources:
            attributes = resource.attributes
            for key, value in items:
                if key not in attributes:
                    attributes[key] = value
        return profile


class ProfilerMetadataProcessor:
    """Upserts ``profiler_name`` and ``profiler_version`` on every resource (the Go host profiler's
    reserved ``resource/dd-profiler-internal-metadata`` processor). It runs last, after the
    user's actions, so that the backend can always tell what produced a profile."""

    name = 'profiler_metadata'

    def __init__(self, profiler_name: str, profiler_version: str) -> None:
        self._items = (('profiler_name', profiler_name), ('profiler_version', profiler_version))

    def process(self, profile: Profile) -> Profile:
        for resource in profile.resources:
            resource.attributes.update(self._items)
        return profile
