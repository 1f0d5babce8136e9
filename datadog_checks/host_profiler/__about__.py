# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
__version__ = '0.1.0'

# What this profiler calls itself: the dd-evp-origin of its uploads, the profiler_name of its profiles.
NAME_BUNDLED = 'host-profiler-bundled'  # run by the Agent (the check)
NAME_STANDALONE = 'host-profiler-standalone'  # the host-profiler command
