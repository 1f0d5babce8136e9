# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The host layer, the bottom of the package: what the profiler reads from the host and from
the processes it profiles. It imports nothing else of the package.

``files``: the one opener for every file read on behalf of a profiled process.
``proc``: the boot id, the CPU lists, a mapping's device, the vDSO image, special mapping names.
``kernel``: read-only probes of the kernel and privileges (``probe()`` for diagnostics and flare).
"""
