#!/usr/bin/env bash
# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
#
# Set everything up (scripts/setup.sh, idempotent) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$REPO/scripts/setup.sh"
cd "$REPO"
exec "$REPO/.venv/bin/python" -m pytest -q tests "$@"
