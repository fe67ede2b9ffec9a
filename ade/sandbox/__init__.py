"""Kernel-enforced confinement for one job's worker process.

Service side: :func:`detect_layers` (what this machine supports, cached), :func:`check_required`
(ADE_SANDBOX=strict), :func:`build_spec` (the :class:`SandboxSpec` stored in run-request.json)
and the per-job cgroup helpers. Worker side: :func:`confine`, before any config code.
Each layer is one function in :mod:`ade.sandbox.layers`; docs/security.md explains them.
"""

from ade.sandbox.cgroup import (
    CgroupError,
    JobCgroup,
    add_process,
    create_job_cgroup,
    job_cgroup_oom_killed,
    kill_job_cgroup,
    remove_job_cgroup,
    remove_leftover_job_cgroup,
)
from ade.sandbox.confine import ConfineResult, SandboxError, confine, confine_with_report
from ade.sandbox.spec import LAYERS, NOBODY, SandboxSpec, build_spec, job_cgroup_name

__all__ = [
    "LAYERS",
    "NOBODY",
    "CgroupError",
    "ConfineResult",
    "JobCgroup",
    "LayerReport",
    "LayerStatus",
    "SandboxError",
    "SandboxSpec",
    "SandboxUnavailable",
    "add_process",
    "build_spec",
    "check_required",
    "confine",
    "confine_with_report",
    "create_job_cgroup",
    "detect_layers",
    "job_cgroup_name",
    "job_cgroup_oom_killed",
    "kill_job_cgroup",
    "remove_job_cgroup",
    "remove_leftover_job_cgroup",
    "startup_line",
]


def __getattr__(name: str) -> object:
    # detect imports subprocess/tempfile: keep them out of the worker's start-up path.
    if name in (
        "LayerReport",
        "LayerStatus",
        "SandboxUnavailable",
        "check_required",
        "detect_layers",
        "startup_line",
    ):
        from ade.sandbox import detect

        return getattr(detect, name)
    raise AttributeError(f"module 'ade.sandbox' has no attribute {name!r}")
