"""Find and kill worker processes a dead service left behind.

Why this exists: a worker runs in its own session (so a job can be killed as a group without
touching the service). The flip side is that when the service itself is SIGKILLed, the worker
is not: it keeps running as an orphan, writing into a job that recovery is about to mark
interrupted. Workers always run with the job directory as their working directory, so on Linux
``/proc/<pid>/cwd`` identifies them without any bookkeeping that a crash could lose.
The job's cgroup (when the sandbox made one) is named after the job, so it is found the same
way: :func:`remove_leftover_cgroup` kills its members (even those that changed directory) and
removes it, so a crash does not leave one cgroup per interrupted job behind for good.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

__all__ = ["kill_leftover_processes", "processes_in", "remove_leftover_cgroup"]

_PROC = Path("/proc")


def processes_in(directory: Path) -> list[int]:
    """Pids whose working directory is ``directory`` or below it (Linux ``/proc``; elsewhere
    an empty list). Processes we may not inspect are skipped."""
    if not _PROC.is_dir():
        return []
    root = os.path.realpath(directory)
    prefix = root.rstrip(os.sep) + os.sep
    me = os.getpid()
    found: list[int] = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == me:
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == root or cwd.startswith(prefix):
            found.append(pid)
    return sorted(found)


def kill_leftover_processes(directory: Path) -> list[int]:
    """SIGKILL every process working in ``directory`` and its process group; returns the pids.

    Our own process group is never signalled (a test or an operator shell could share it).
    """
    pids = processes_in(directory)
    own_group = os.getpgrp()
    for pid in pids:
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            continue
        try:
            if group != own_group:
                os.killpg(group, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
    return pids


def remove_leftover_cgroup(job_id: str) -> str | None:
    """Kill and remove the per-job cgroup a dead service left for ``job_id``; returns its name,
    or None when there was none. Raises ``CgroupError`` when it cannot be removed."""
    from ade.sandbox import job_cgroup_name, remove_leftover_job_cgroup

    found = remove_leftover_job_cgroup(job_cgroup_name(job_id))
    return None if found is None else found.name
