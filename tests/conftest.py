# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Shared fixtures only. The `aggregator`, `datadog_agent` and `dd_run_check` fixtures come from
datadog_checks_dev's pytest plugin."""

import os

import pytest

from tests import REPO_ROOT


def _root_unavailable_reason():
    if os.geteuid() != 0:
        return 'needs root (BPF programs, perf events, other processes\' memory, chroot)'
    return None


def _bpf_unavailable_reason():
    if _root_unavailable_reason():
        return _root_unavailable_reason()
    try:
        import bcc  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the machine
        return 'cannot import bcc ({}); run scripts/setup.sh'.format(e)
    return None


@pytest.fixture(scope='session')
def repo_root():
    return REPO_ROOT


@pytest.fixture
def instance():
    """The smallest valid instance: every option at its default."""
    return {}


@pytest.fixture
def load_instance_config():
    """Validate an instance dict the way the Agent does; raises ConfigurationError naming the key path."""
    from datadog_checks.base import AgentCheck

    def load(instance):
        context = {
            'logger': None,
            'warning': lambda *args, **kwargs: None,
            'configured_fields': frozenset(instance),
            'security_config': None,
        }
        return AgentCheck.load_configuration_model(
            'datadog_checks.host_profiler.config_models', 'InstanceConfig', instance, context
        )

    return load


@pytest.fixture(scope='session')
def requires_root():
    """Skip the test when this process is not root (CI runs as root, so it never skips there)."""
    reason = _root_unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope='session')
def requires_bpf():
    """Skip the test when this process cannot load BPF programs (CI runs as root, so it never skips there)."""
    reason = _bpf_unavailable_reason()
    if reason:
        pytest.skip(reason)
