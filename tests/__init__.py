# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The tests mirror the package: tests/<package>/test_<module>.py. Every folder is a package, so modules
are imported by their full name (tests.fakes.otlp, tests.workloads) from the repository root."""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
