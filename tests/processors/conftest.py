# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
import pytest

from datadog_checks.base.stubs import datadog_agent
from datadog_checks.base.stubs.tagging import tagger


@pytest.fixture
def agent_stubs():
    """The Agent's tagger and datadog_agent stubs, empty before and after the test."""
    tagger.reset()
    datadog_agent.reset()
    yield
    tagger.reset()
    datadog_agent.reset()
    datadog_agent.reset_hostname()
