"""A throwaway job for confining a child outside any real job: the probe behind
:func:`ade.sandbox.detect_layers` and the per-layer cost benchmark (:mod:`ade.sandbox.bench`).

Both need the same thing a job gets — a directory the child may read, a ``tmp/`` it may write
(owned by the uid it drops to), a cgroup with limits and the spec naming them — and both must
leave nothing behind however the child ends. :func:`scratch_job` does that in one place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import attrs

from ade.sandbox import cgroup as _cgroup
from ade.sandbox.spec import NOBODY, SandboxSpec, runtime_readonly_paths

__all__ = ["SCRATCH_PREFIXES", "ScratchJob", "remove_stale_scratch_cgroups", "scratch_job"]

# Scratch cgroups are named <prefix><pid of the creating process>[-<round>].
SCRATCH_PREFIXES = ("ade-probe-", "ade-bench-")


@attrs.frozen
class ScratchJob:
    workdir: str
    spec: SandboxSpec
    cgroup: _cgroup.JobCgroup | None
    # Why there is no cgroup ("" when there is one).
    cgroup_reason: str
    cgroup_create_ms: float


def remove_stale_scratch_cgroups() -> list[str]:
    """Remove the scratch cgroups of processes that died before their ``finally`` ran (a
    service killed while probing): their names carry a pid that never comes back to them.
    A cgroup whose pid is alive is left alone, whoever that process is."""
    _, bases, _ = _cgroup.controller_dirs()
    removed: list[str] = []
    for base in set(bases.values()):
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in names:
            prefix = next((p for p in SCRATCH_PREFIXES if name.startswith(p)), None)
            if prefix is None or name in removed:
                continue
            pid = name[len(prefix) :].split("-", 1)[0]
            if not pid.isdigit() or _cgroup.pid_alive(int(pid)):
                continue
            try:
                _cgroup.remove_leftover_job_cgroup(name)
            except OSError:
                continue  # still busy: the next scratch job tries again
            removed.append(name)
    return sorted(removed)


@contextmanager
def scratch_job(
    cgroup_name: str,
    *,
    mem_mb: int,
    max_processes: int,
    fsize_mb: int,
    max_files: int,
    network: bool = False,
) -> Iterator[ScratchJob]:
    """A scratch job directory, its cgroup (when this machine allows one) and its spec; the
    directory and the cgroup (after killing what is left in it) are removed on exit. Scratch
    cgroups that dead processes left behind are removed first."""
    remove_stale_scratch_cgroups()
    workdir = tempfile.mkdtemp(prefix="ade-sandbox-scratch-")
    cgroup: _cgroup.JobCgroup | None = None
    try:
        os.chmod(workdir, 0o755)
        writable = os.path.join(workdir, "tmp")
        os.mkdir(writable)
        root = os.geteuid() == 0
        if root:
            os.chown(writable, NOBODY, NOBODY)
        reason = ""
        start = time.perf_counter()
        try:
            cgroup = _cgroup.create_job_cgroup(cgroup_name, mem_mb, max_processes)
        except OSError as exc:
            reason = str(exc)
        create_ms = (time.perf_counter() - start) * 1000
        spec = SandboxSpec(
            job_dir=workdir,
            readonly_paths=(workdir, *runtime_readonly_paths()),
            writable_paths=(writable,),
            cpu_seconds=10,
            mem_mb=mem_mb,
            fsize_mb=fsize_mb,
            max_files=max_files,
            max_processes=max_processes,
            network=network,
            cgroup=cgroup.name if cgroup else None,
            run_as_uid=NOBODY if root else None,
            run_as_gid=NOBODY if root else None,
        )
        yield ScratchJob(workdir, spec, cgroup, reason, create_ms)
    finally:
        if cgroup is not None:
            _cgroup.remove_job_cgroup(cgroup)
        shutil.rmtree(workdir, ignore_errors=True)
