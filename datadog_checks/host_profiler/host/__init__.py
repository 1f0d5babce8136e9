# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The host layer: how the profiler touches what other processes control (their files, for now).

``files``: the one opener for every file read on behalf of a profiled process.
"""
