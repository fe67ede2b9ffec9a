"""What the sandbox must enforce for one job: :class:`SandboxSpec`, and how the service builds it.

The spec is decided in the service (trusted) and travels to the worker inside
``run-request.json``; the worker only applies it. Paths are absolute and resolved, because the
kernel layers (Landlock, bind mounts) act on real paths, not on the job directory's symlinks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import attrs

from ade.settings import Settings

__all__ = [
    "LAYERS",
    "NOBODY",
    "Preconfinement",
    "SandboxSpec",
    "build_spec",
    "job_cgroup_name",
    "preconfinement_for",
    "runtime_readonly_paths",
    "standby_cgroup_name",
    "standby_cgroup_owner",
]

# Every layer the sandbox knows, in the order `confine` applies them. These names are what
# JobRecord.sandbox_layers, /health, `ade doctor` and ADE_SANDBOX=strict talk about.
LAYERS: tuple[str, ...] = (
    "rlimits",  # CPU, FSIZE, NOFILE, CORE=0: always
    "memory_cgroup",  # memory limit counted on real memory (fallback: rlimit_as)
    "pids_cgroup",  # process cap that holds for root too (fallback: rlimit_nproc)
    "network_namespace",  # nothing but loopback, DNS included
    "pid_namespace",  # the job's processes die with it; the server's pids are invisible
    "mount_namespace",  # a fresh /proc for the pid namespace; re-exposes paths for the uid drop
    "ipc_namespace",  # no SysV IPC / mqueue shared with others or left behind
    "uid_drop",  # the job never runs as root
    "no_new_privs",  # setuid binaries give nothing; required by seccomp/landlock unprivileged
    "landlock",  # filesystem allow-list, TCP deny, signal scoping
    "seccomp",  # socket() families, io_uring, ptrace, mount, unshare, bpf, kexec ...
)

# The uid/gid a root service drops jobs to. `nobody` owns nothing, so it can read only what is
# world-readable — and Landlock narrows that to the allow-list.
NOBODY = 65534


@attrs.frozen
class SandboxSpec:
    job_dir: str
    readonly_paths: tuple[str, ...]
    writable_paths: tuple[str, ...]
    cpu_seconds: int
    mem_mb: int
    fsize_mb: int
    max_files: int
    max_processes: int
    network: bool
    # Name of the per-job cgroup (created by the supervisor, joined by the worker), or None.
    cgroup: str | None = None
    run_as_uid: int | None = None
    run_as_gid: int | None = None
    # Layers that must apply or `confine` raises (ADE_SANDBOX=strict). Empty: best-effort.
    required: tuple[str, ...] = ()
    # The job's CPU priority (nice value), set first thing: below the service's event loop.
    nice: int = 0


@attrs.frozen
class Preconfinement:
    """The part of a job's confinement that does not depend on the job: what a process kept
    ahead of its job (a spawn standby, a fork child) applies to itself while it waits for its
    assignment (:func:`ade.sandbox.confine.prepare`).

    Every field but ``cgroup`` and ``uid_paths`` must equal the job's :class:`SandboxSpec`
    for that process to serve the job (:meth:`mismatch`); otherwise it is discarded and
    the job gets a fresh process. ``cgroup`` is the standby's own cgroup, created for it by the
    service and renamed to the job's when its job is assigned: one cgroup
    per process, one process per job.
    """

    cpu_seconds: int
    mem_mb: int
    fsize_mb: int
    max_files: int
    max_processes: int
    network: bool
    cgroup: str | None
    run_as_uid: int | None
    run_as_gid: int | None
    required: tuple[str, ...]
    nice: int
    # Paths re-exposed for the dropped uid before the job (the interpreter under /root):
    # None leaves the uid drop for the job's arrival (it must then re-expose the job's paths,
    # which a process that already dropped its uid can no longer mount).
    uid_paths: tuple[str, ...] | None = None

    def mismatch(self, spec: SandboxSpec) -> str | None:
        """Why a process prepared this way cannot run the job ``spec`` describes, or None."""
        for name in _SHARED_WITH_SPEC:
            if getattr(self, name) != getattr(spec, name):
                return f"the job's {name} differs from the one applied ahead of it"
        if (self.cgroup is None) != (spec.cgroup is None):
            return "the job's cgroup differs from the one applied ahead of it"
        if self.uid_paths is not None and not set(self.uid_paths) <= set(spec.readonly_paths):
            return "the job does not read the paths re-exposed ahead of it for its uid"
        return None


# The fields a prepared process and its job's spec must agree on: all but the process's own
# cgroup (renamed to the job's) and the paths it re-exposed for its uid (checked apart).
_SHARED_WITH_SPEC = tuple(
    field.name
    for field in attrs.fields(Preconfinement)
    if field.name not in ("cgroup", "uid_paths")
)


def preconfinement_for(
    spec: SandboxSpec, *, cgroup: str | None = None, uid_paths: tuple[str, ...] | None = None
) -> Preconfinement:
    """The job-independent part of ``spec``: its own cgroup (``cgroup``, default the spec's)
    and, when ``uid_paths`` is given, a uid drop before the job that re-exposes only them."""
    shared = {name: getattr(spec, name) for name in _SHARED_WITH_SPEC}
    return Preconfinement(
        **shared, cgroup=spec.cgroup if cgroup is None else cgroup, uid_paths=uid_paths
    )


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(path)


def runtime_readonly_paths() -> tuple[str, ...]:
    """What any job must be able to read: the interpreter (its prefix holds the stdlib and
    libpython), the venv with ADE's libraries, and the ``ade`` package itself (an editable
    install lives outside the venv). Exact paths — never their parents (``/root``)."""
    import ade

    paths = {
        _real(sys.base_prefix),
        _real(sys.prefix),
        _real(sys.exec_prefix),
        _real(Path(ade.__file__).parent),
    }
    return tuple(sorted(paths))


def job_cgroup_name(job_id: str) -> str:
    """The per-job cgroup's name; recovery derives it again to remove a dead service's leftover."""
    return f"ade-{job_id}"


def standby_cgroup_name(service_pid: int, number: int) -> str:
    """The cgroup of a process confined ahead of its job, until its job's name replaces it.
    The service's pid in it lets a later service tell a dead service's leftover (its pid gone)
    from the standbys of a live one sharing the cgroup."""
    return f"{_STANDBY_PREFIX}{service_pid}-{number}"


_STANDBY_PREFIX = "ade-standby-"


def standby_cgroup_owner(name: str) -> int | None:
    """The service pid in a :func:`standby_cgroup_name`, or None for any other name."""
    if not name.startswith(_STANDBY_PREFIX):
        return None
    pid, _, number = name[len(_STANDBY_PREFIX) :].partition("-")
    return int(pid) if pid.isdigit() and number.isdigit() else None


def build_spec(settings: Settings, job_dir: Path, snapshot_dir: Path, network: bool) -> SandboxSpec:
    """The spec for one job. ``snapshot_dir`` is the config's prepared directory
    (``venvs/<config_id>``: the frozen snapshot and its installed requirements), read-only.

    The job may read its own directory (inputs, run-request.json) and write only under its
    ``tmp/`` (TMPDIR, HOME and the engine's output before the supervisor publishes it).
    """
    from ade.sandbox.detect import detect_layers

    report = detect_layers()
    job = _real(job_dir)
    readonly = [job, _real(snapshot_dir), *runtime_readonly_paths()]
    uid = gid = None
    if os.geteuid() == 0:
        uid = gid = NOBODY
    cgroup = None
    if report.available("memory_cgroup") or report.available("pids_cgroup"):
        cgroup = job_cgroup_name(Path(job).name)
    required = LAYERS if settings.sandbox == "strict" else ()
    return SandboxSpec(
        job_dir=job,
        readonly_paths=tuple(dict.fromkeys(readonly)),
        writable_paths=(os.path.join(job, "tmp"),),
        cpu_seconds=settings.worker_cpu_seconds,
        mem_mb=settings.worker_mem_mb,
        fsize_mb=settings.worker_fsize_mb,
        max_files=settings.worker_max_files,
        max_processes=settings.worker_max_processes,
        network=network,
        cgroup=cgroup,
        run_as_uid=uid,
        run_as_gid=gid,
        required=required,
        nice=settings.worker_nice,
    )
