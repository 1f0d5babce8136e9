# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""``oom_score_adj`` helpers.

Child tools we spawn (objcopy, debuginfod clients, ...) are expendable: they get
``oom_score_adj=1000`` so the OOM killer picks them before the profiler or the Agent.
The profiler itself should never volunteer to be killed: ``keep_own_oom_score_sane()``
resets our own score to 0 when something left it above 0, as the original component does.
"""
from __future__ import annotations

import os
from typing import Callable, Optional, Union

PROC_ROOT = '/proc'
OOM_SCORE_ADJ_MIN = -1000
OOM_SCORE_ADJ_MAX = 1000

Pid = Union[int, str]


def _path(pid: Pid, proc_root: str) -> str:
    return os.path.join(proc_root, str(pid), 'oom_score_adj')


def read_oom_score_adj(pid: Pid = 'self', proc_root: str = PROC_ROOT) -> Optional[int]:
    """The current ``oom_score_adj`` of ``pid``; None when the process or file is gone."""
    try:
        with open(_path(pid, proc_root)) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def set_oom_score_adj(value: int, pid: Pid = 'self', proc_root: str = PROC_ROOT) -> None:
    """Writes ``oom_score_adj`` (clamped to [-1000, 1000]). Raises OSError on failure.

    Lowering the score below its current value needs CAP_SYS_RESOURCE; raising never does.
    """
    value = max(OOM_SCORE_ADJ_MIN, min(OOM_SCORE_ADJ_MAX, int(value)))
    with open(_path(pid, proc_root), 'w') as f:
        f.write('{}\n'.format(value))


def oom_preexec(value: int = OOM_SCORE_ADJ_MAX) -> Callable[[], None]:
    """A ``subprocess`` ``preexec_fn`` that sets the child's own score (default 1000).

    Runs in the child between fork and exec: only a write to /proc/self, and it swallows
    errors so a missing /proc never prevents the tool from running.
    """

    def _preexec() -> None:
        try:
            with open('/proc/self/oom_score_adj', 'w') as f:
                f.write('{}\n'.format(value))
        except OSError:
            pass

    return _preexec


def preexec_child_oom_score() -> None:
    """``preexec_fn=preexec_child_oom_score``: the child is the OOM killer's first choice."""
    oom_preexec(OOM_SCORE_ADJ_MAX)()


def keep_own_oom_score_sane(proc_root: str = PROC_ROOT, log=None) -> bool:
    """Resets our own ``oom_score_adj`` to 0 when it is > 0. Returns True when it changed it."""
    current = read_oom_score_adj('self', proc_root)
    if current is None or current <= 0:
        return False
    try:
        set_oom_score_adj(0, 'self', proc_root)
    except OSError as e:
        if log is not None:
            log.debug('Could not reset oom_score_adj from %s to 0: %s', current, e)
        return False
    if log is not None:
        log.debug('Reset oom_score_adj from %s to 0', current)
    return True
