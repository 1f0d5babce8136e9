# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The host name of the profiles: the Agent's inside the Agent, the OS's (by the Agent's rules) outside.

Outside the Agent, ``datadog_checks.base`` answers with its stubs, whose ``get_hostname()`` is
the placeholder ``stubbed.hostname``: every standalone host would look like one host in the
backend. ``resolve_hostname`` follows the Agent's own order (``pkg/util/hostname``) with the
providers that make sense without an Agent:

1. the configured name: ``DD_HOSTNAME`` (the Agent's ``hostname`` option), else the instance's
   ``hostname``; skipped (with a warning) when not a valid host name;
2. the file named by ``DD_HOSTNAME_FILE`` (the Agent's ``hostname_file``), its content trimmed;
3. (Fargate, GCE, Azure and container providers: they query cloud metadata services or the
   container runtime; not used outside the Agent);
4. the OS FQDN (what ``hostname -f`` prints) when ``DD_HOSTNAME_FQDN`` is true (``hostname_fqdn``);
5. the OS host name.

Steps 4 and 5 apply only when the OS host name is usable: this process is in the host's UTS
namespace (inode 0xEFFFFFFE), or ``DD_HOSTNAME_TRUST_UTS_NAMESPACE`` is true. Otherwise the OS
name is a container's, and no host name is set (a warning says how to set one), as the Agent
refuses it too. A name is valid as the Agent validates it: not empty, not a localhost name,
at most 255 characters, RFC 1123.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import socket
from typing import Any, Callable, FrozenSet, Mapping, Optional, Tuple

HOST_UTS_NAMESPACE_INODE = 0xEFFFFFFE  # the kernel's initial UTS namespace (PROC_UTS_INIT_INO)
_LOCALHOST = frozenset({'localhost', 'localhost.localdomain', 'localhost6.localdomain6', 'ip6-localhost'})
_RFC1123 = re.compile(r'^(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])\.)*'
                      r'([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])$')
_TRUE = ('1', 'true', 'yes', 'on')
LOG = logging.getLogger(__name__)


def invalid_reason(name: Any) -> str:
    """'' when ``name`` is a valid host name by the Agent's rules, else why not."""
    if not isinstance(name, str) or not name:
        return 'it is empty'
    if name.lower() in _LOCALHOST:
        return '{} is a local host name'.format(name)
    if len(name) > 255:
        return 'it is longer than 255 characters'
    if not _RFC1123.match(name):
        return '{} is not RFC 1123 compliant'.format(name)
    return ''


@functools.lru_cache(maxsize=1)
def stub_placeholders() -> FrozenSet[str]:
    """The values the Agent stubs answer outside the Agent (their host name and version), read
    from a fresh stub so that a new placeholder is known without editing this list."""
    try:
        from datadog_checks.base.stubs.datadog_agent import DatadogAgentStub
    except Exception:  # pragma: no cover - the stubs come with datadog_checks.base
        return frozenset({'stubbed.hostname'})
    stub = DatadogAgentStub()
    return frozenset(str(v) for v in (stub.get_hostname(), stub.get_version()) if v)


def os_hostname_usable(proc: str = '/proc') -> bool:
    """False only when this process is certainly in a non-host UTS namespace (a container's)."""
    try:
        return os.stat(os.path.join(proc, 'self', 'ns', 'uts')).st_ino == HOST_UTS_NAMESPACE_INODE
    except OSError:
        return True  # in doubt, as the Agent


def system_fqdn(name: str) -> str:
    """What ``hostname -f`` prints: the canonical name of the host name (getaddrinfo)."""
    for family, _, _, canonname, _ in socket.getaddrinfo(name, None, 0, socket.SOCK_DGRAM, 0, socket.AI_CANONNAME):
        if canonname:
            return canonname
    return name


def resolve_hostname(configured: Optional[str] = None, environ: Optional[Mapping[str, str]] = None,
                     *, proc: str = '/proc', gethostname: Callable[[], str] = socket.gethostname,
                     fqdn: Callable[[str], str] = system_fqdn, log: Any = None) -> Tuple[str, str]:
    """(host name, provider) by the rules above; ('', '') when none is usable."""
    env = os.environ if environ is None else environ
    log = log or LOG
    for provider, name in (('DD_HOSTNAME', env.get('DD_HOSTNAME')), ('hostname', configured)):
        if name:
            reason = invalid_reason(name.strip())
            if not reason:
                return name.strip(), provider
            log.warning('host name from %s ignored: %s', provider, reason)
    path = env.get('DD_HOSTNAME_FILE')
    if path:
        try:
            with open(path, 'r', encoding='utf-8', errors='replace') as f:
                name = f.read(4096).strip()
        except OSError as e:
            log.warning('host name from DD_HOSTNAME_FILE ignored: cannot read %s: %s', path, e.strerror or e)
        else:
            reason = invalid_reason(name)
            if not reason:
                return name, 'DD_HOSTNAME_FILE'
            log.warning('host name from DD_HOSTNAME_FILE (%s) ignored: %s', path, reason)
    trusted = str(env.get('DD_HOSTNAME_TRUST_UTS_NAMESPACE', '')).lower() in _TRUE
    if not (trusted or os_hostname_usable(proc)):
        log.warning('no host name: this process is not in the host UTS namespace, so the OS host name is a '
                    "container's; set DD_HOSTNAME (or the instance's hostname option) to the host's name")
        return '', ''
    name = gethostname()
    if str(env.get('DD_HOSTNAME_FQDN', '')).lower() in _TRUE:
        try:
            return fqdn(name), 'fqdn'
        except OSError as e:
            log.warning('hostname_fqdn: cannot resolve the FQDN of %s (%s); using the OS host name', name, e)
    return name, 'os'


class HostnameProvider:
    """A callable giving the profiles' host name.

    Inside the Agent it is the Agent's host name (asked at every call: the Agent caches it). Outside,
    a name set on the stubs by a test (a fake Agent) is used as the Agent's, and the stubs'
    placeholder never is: the OS name is resolved instead, once."""

    def __init__(self, configured: Optional[str] = None, log: Any = None) -> None:
        self._configured = configured
        self._log = log
        self._resolved: Optional[str] = None

    def __call__(self) -> str:
        from datadog_checks.base.agent import AGENT_RUNNING, datadog_agent

        try:
            agent = str(datadog_agent.get_hostname() or '')
        except Exception:
            agent = ''
        if AGENT_RUNNING or (agent and agent not in stub_placeholders()):
            return agent
        if self._resolved is None:
            self._resolved = resolve_hostname(self._configured, log=self._log)[0]
        return self._resolved
