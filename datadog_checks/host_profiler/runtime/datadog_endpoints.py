# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Which URLs are Datadog intakes, and their sites: used by the configuration converters (the
exporters' defaults) and by self-profiling (agentless or through a trace agent).

Here, in ``runtime``, so that ``config`` imports ``runtime`` and never the other way round.
"""
from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlparse

_ENV_REF = re.compile(r'\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}')
_DD_HOST = re.compile(r'(^|\.)(datadoghq\.[a-z]+|ddog-gov\.com|datad0g\.com)$')
_SITE_REGION = re.compile(r'^(us|eu|ap)\d+$')


def _expand_for_classification(value: str) -> str:
    return _ENV_REF.sub(lambda m: os.environ.get(m.group(1), ''), value)


def is_datadog_endpoint(endpoint: Any) -> bool:
    """True for a Datadog intake (``*.datadoghq.*``, ``*.ddog-gov.com``, staging ``datad0g.com``)."""
    if not isinstance(endpoint, str) or not endpoint:
        return False
    url = _expand_for_classification(endpoint)
    if '://' not in url:
        url = 'https://' + url
    try:
        host = (urlparse(url).hostname or '').lower()
    except ValueError:
        return False
    return bool(_DD_HOST.search(host))


def extract_site_from_url(url: Any) -> str:
    """The Datadog site of an intake URL: ``https://intake.profile.us3.datadoghq.com/...`` ->
    ``us3.datadoghq.com``. '' when the URL is not a Datadog one (the caller skips it)."""
    if not isinstance(url, str) or not url:
        return ''
    if '://' not in url:
        url = 'https://' + url
    try:
        host = (urlparse(url).hostname or '').lower()
    except ValueError:
        return ''
    labels = host.split('.')
    for i, label in enumerate(labels):
        if label in ('datadoghq', 'ddog-gov', 'datad0g') and i + 1 < len(labels):
            start = i - 1 if i > 0 and _SITE_REGION.match(labels[i - 1]) else i
            return '.'.join(labels[start:])
    return ''


def ddprofiling_is_agentless(endpoint: Any) -> bool:
    """An endpoint on a Datadog site is the agentless profile intake, which needs an API key."""
    return is_datadog_endpoint(endpoint)
