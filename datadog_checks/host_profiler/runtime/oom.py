# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""``oom_score_adj`` helpers.

Child tools we spawn (objcopy, debuginfod clients, ...) are expendable: they get
``oom_score_adj=1000`` so the OOM killer picks them before the profiler or the Agent.
The profiler itself should never volunteer to be killed: ``keep_own_oom_score_sane()``
resets our own score to 0 when something left it above 0, as Datadog's Go host profiler does.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any, Optional, Sequence, Union

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


# The child raises its own score, then execs the tool: the tool never runs with the inherited
# score, and nothing runs in Python between fork and exec. Raising needs no privilege.
_RAISE_THEN_EXEC = 'echo {} >/proc/self/oom_score_adj 2>/dev/null; exec "$0" "$@"'.format(OOM_SCORE_ADJ_MAX)


def spawn_expendable(cmd: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen(cmd, **popen_kwargs)`` with the child's ``oom_score_adj`` at 1000 from
    its first instruction.

    Not a ``preexec_fn``: Python runs a ``preexec_fn`` and the at-fork hooks of imported
    libraries (logging, tracers) in the child of a threaded process, and a lock another thread
    held at fork time is never released there, so the child hung before exec (seen in this
    project's test suite: objcopy never started). Not only a write from the parent after the spawn
    either: the tool ran a moment with the inherited score, and a short one could finish before
    the write (a flaky test showed it). ``/bin/sh`` sets the score and execs the tool, which
    keeps its pid, file descriptors and environment.
    """
    cmd = list(cmd)
    # A tool that cannot run raises OSError here, as Popen would, not exit 127 from the shell
    if shutil.which(cmd[0]) is not None and os.access('/bin/sh', os.X_OK):
        cmd = ['/bin/sh', '-c', _RAISE_THEN_EXEC] + cmd
    proc = subprocess.Popen(cmd, **popen_kwargs)
    try:  # also from here, so that the score is 1000 when this returns, whoever wrote it first
        set_oom_score_adj(OOM_SCORE_ADJ_MAX, proc.pid)
    except OSError:
        pass  # it exited already, or there is no /proc: the tool still runs
    return proc


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
