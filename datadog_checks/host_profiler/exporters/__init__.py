# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Exporters: otlp_http (with a delivery queue per endpoint), debug, file."""

from .base import Exporter, build_exporters

__all__ = ['Exporter', 'build_exporters']
