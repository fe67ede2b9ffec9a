"""Compose the layers for one job: :func:`confine`, called first thing in the worker — or in
two halves: :func:`prepare` before the job is known (a spawn standby, while it waits) and
:func:`finish` once its assignment arrives, before the request or any input is read.

Theory of operation — why this order:

1. rlimits first: cheap, unprivileged, and they cover everything after (CPU, file size, fds).
2. Join the job cgroup while we may still write to /sys/fs/cgroup (before the uid drop and
   Landlock) and before any fork, so every later process is counted. Without a memory cgroup,
   RLIMIT_AS is the fallback; without a pids cgroup, RLIMIT_NPROC (meaningful only after a uid
   drop, since root ignores it).
3. Namespaces while we still hold privileges: network (then ``lo`` up), mount, then PID — which
   forks, so that only the job process returns (see layers.enter_pid_namespace).
4. Identity: re-expose the allow-listed paths the target uid cannot reach (the interpreter under
   /root) inside the private mount namespace, then setresuid. Capabilities go with uid 0.
5. no_new_privs, then Landlock (needs it when unprivileged), then seccomp last: it forbids
   mount/unshare, which the earlier steps use.

What waits for the job (:func:`finish`): everything that names its paths — Landlock's rules
for its directory and config snapshot, and (for a root service whose jobs' paths the target
uid cannot traverse) re-exposing them and the uid drop — then seccomp. Everything before is
decided by the service's settings alone (:class:`~ade.sandbox.spec.Preconfinement`): the
rlimits, the cgroup (created for the waiting process and renamed to the job's), the network
(unless the job may use it), mount, IPC and PID namespaces, the uid drop where the job's paths
need no re-exposing, and no_new_privs. Those are also the expensive steps: the cgroup
migration waits for an RCU grace period (v1) and the PID namespace forks twice.

Best-effort vs strict: a layer that cannot apply is recorded with its reason (and written to
stderr, which reaches the job's diagnostics); if the layer is in ``spec.required`` (ADE_SANDBOX
=strict) :class:`SandboxError` is raised instead and the worker never runs config code.
"""

from __future__ import annotations

import os
import sys
import time

import attrs

from ade.sandbox import cgroup as _cgroup
from ade.sandbox import layers as L
from ade.sandbox.spec import Preconfinement, SandboxSpec, preconfinement_for

__all__ = [
    "ConfineResult",
    "Prepared",
    "SandboxError",
    "UnfitForJob",
    "confine",
    "confine_with_report",
    "finish",
    "prepare",
    "report_missing",
]


class SandboxError(RuntimeError):
    """A required sandbox layer could not be applied; the message names it and says why."""

    def __init__(self, layer: str, reason: str) -> None:
        super().__init__(f"required sandbox layer {layer!r} could not be applied: {reason}")
        self.layer = layer
        self.reason = reason


class UnfitForJob(SandboxError):
    """A process confined ahead of its job was handed a job it was not confined for (the
    service checks this first: reaching it is a defect, and the job never runs here)."""

    def __init__(self, reason: str) -> None:
        RuntimeError.__init__(self, f"this process was confined ahead for another job: {reason}")
        self.layer = "preconfinement"
        self.reason = reason


@attrs.frozen
class ConfineResult:
    applied: tuple[str, ...]
    # (layer, reason) for every layer that did not apply.
    missing: tuple[tuple[str, str], ...]
    # (step, milliseconds) in the order run: what `python -m ade.sandbox.bench` reports.
    timings: tuple[tuple[str, float], ...] = ()


class _Tally:
    def __init__(self, required: tuple[str, ...]) -> None:
        self.required = required
        self.applied: list[str] = []
        self.missing: dict[str, str] = {}
        self.timings: list[tuple[str, float]] = []
        self._mark = time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.timings.append((step, round((now - self._mark) * 1000, 3)))
        self._mark = now

    def ok(self, layer: str) -> None:
        self.lap(layer)
        self.applied.append(layer)

    def fail(self, layer: str, reason: str) -> None:
        self.lap(layer)
        self.missing[layer] = reason
        if layer in self.required:
            raise SandboxError(layer, reason)


def _fresh_proc() -> bool:
    try:
        return os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        return False


@attrs.define
class Prepared:
    """A process confined as far as it can be without its job (:func:`prepare`)."""

    pre: Preconfinement
    tally: _Tally
    controllers: tuple[str, ...] = ()
    mount_ns: bool = False
    fresh_proc: bool = False
    # The identity step is done (uid dropped, or an unprivileged service's capabilities).
    identity_done: bool = False
    # A required layer that could not apply: the job is told so and never runs.
    error: SandboxError | None = None
    # no_new_privs set ahead of a uid drop left for the job: None, or why it failed. Reported
    # after the uid drop, in LAYERS order, as when both happen together.
    no_new_privs_early: str | None = None


def prepare(pre: Preconfinement) -> Prepared:
    """Apply the job-independent layers. May fork (PID namespace): returns in the job process
    only. Never raises :class:`SandboxError`: a required layer that failed is kept in
    ``error`` for :func:`finish` to raise once there is a job to report it to."""
    prepared = Prepared(pre, _Tally(pre.required))
    try:
        _prepare(prepared)
    except SandboxError as exc:
        prepared.error = exc
    return prepared


def _prepare(p: Prepared) -> None:
    pre, t = p.pre, p.tally
    root = os.geteuid() == 0
    # Not a layer (nothing to enforce): the job yields the CPU to the service's event loop.
    # Absolute, so a template or standby started at another nice value does not matter.
    L.set_cpu_priority(pre.nice)

    try:
        L.apply_rlimits(pre)
        t.ok("rlimits")
    except L.LayerUnavailable as exc:
        t.fail("rlimits", exc.reason)

    cgroup_reason = ""
    try:
        p.controllers = L.join_cgroup(pre).controllers
    except L.LayerUnavailable as exc:
        cgroup_reason = exc.reason
    for controller in ("memory", "pids"):
        if controller in p.controllers:
            t.ok(f"{controller}_cgroup")
        else:
            t.fail(f"{controller}_cgroup", cgroup_reason or f"no {controller} controller")
    if "memory" not in p.controllers:
        try:
            L.apply_memory_rlimit(pre)
            t.ok("rlimit_as")
        except L.LayerUnavailable as exc:
            t.fail("rlimit_as", exc.reason)

    namespaces = root
    if not root:
        try:
            L.unshare_user()
            namespaces = True
        except L.LayerUnavailable as exc:
            for layer in (
                "network_namespace",
                "mount_namespace",
                "ipc_namespace",
                "pid_namespace",
            ):
                t.fail(layer, f"not root and no user namespace ({exc.reason})")

    pid_ns = False
    if namespaces:
        if not pre.network:
            try:
                L.unshare_network()
                L.bring_loopback_up()
                t.ok("network_namespace")
            except L.LayerUnavailable as exc:
                t.fail("network_namespace", exc.reason)
        try:
            L.unshare_mount()
            p.mount_ns = True
        except L.LayerUnavailable as exc:
            t.fail("mount_namespace", exc.reason)
        ipc_ns, ipc_reason = False, ""
        try:
            L.unshare_ipc()
            ipc_ns = True
        except L.LayerUnavailable as exc:
            ipc_reason = exc.reason
        try:
            # Forks: from here on we are the job process.
            L.enter_pid_namespace(private_mounts=p.mount_ns)
            pid_ns = True
            t.ok("pid_namespace")
        except L.LayerUnavailable as exc:
            t.fail("pid_namespace", exc.reason)
        if p.mount_ns:
            if pid_ns and not _fresh_proc():
                t.fail("mount_namespace", "could not mount a fresh /proc for the PID namespace")
            else:
                t.ok("mount_namespace")
        if ipc_ns:
            t.ok("ipc_namespace")
        else:
            t.fail("ipc_namespace", ipc_reason)
    p.fresh_proc = pid_ns and p.mount_ns and _fresh_proc()

    if root and pre.uid_paths is None:
        # The uid drop must re-expose the job's own paths: finish() does it. no_new_privs
        # does not stand in its way (it limits what execve grants, not mount or setresuid).
        try:
            L.set_no_new_privs()
        except L.LayerUnavailable as exc:
            p.no_new_privs_early = exc.reason
        return
    if root:
        _drop_root(pre, pre.uid_paths or (), (), t, p.mount_ns, "pids" in p.controllers)
    else:
        try:
            if namespaces:
                L.drop_capabilities()  # the user namespace's, which we no longer need
            t.ok("uid_drop")  # the service is unprivileged: so is the job
        except L.LayerUnavailable as exc:
            t.fail("uid_drop", f"capabilities of the user namespace kept: {exc.reason}")
        if "pids" not in p.controllers:
            t.missing["rlimit_nproc"] = (
                "RLIMIT_NPROC would count every process of the service's own uid"
            )
    p.identity_done = True
    _no_new_privs(t)


def _no_new_privs(t: _Tally) -> None:
    try:
        L.set_no_new_privs()
        t.ok("no_new_privs")
    except L.LayerUnavailable as exc:
        t.fail("no_new_privs", exc.reason)


def finish(spec: SandboxSpec, p: Prepared) -> ConfineResult:
    """Apply the job-specific rest to a :func:`prepare` d process: its uid drop if still to
    do, Landlock for its paths, seccomp last. Raises :class:`SandboxError` when a required
    layer failed (here or in :func:`prepare`) or when the process was prepared for different
    limits, network or identity than ``spec`` asks for — the service never hands such a job to
    such a process, so that is a defect to stop at, whatever ``spec.required`` says."""
    if p.error is not None:
        raise p.error
    t = p.tally
    reason = p.pre.mismatch(spec)
    if reason is not None:
        raise UnfitForJob(reason)
    if p.controllers and p.pre.cgroup != spec.cgroup:
        # The service renamed our cgroup to the job's before it sent the assignment.
        if spec.cgroup is None or not _cgroup.is_member(spec.cgroup):
            raise SandboxError("memory_cgroup", f"this process is not in cgroup {spec.cgroup}")
    if not p.identity_done:
        _drop_root(
            spec,
            spec.readonly_paths,
            spec.writable_paths,
            t,
            p.mount_ns,
            "pids" in p.controllers,
        )
        if p.no_new_privs_early is None:
            t.ok("no_new_privs")
        else:
            t.fail("no_new_privs", p.no_new_privs_early)

    try:
        abi = L.apply_landlock(
            spec.readonly_paths, spec.writable_paths, network=spec.network, fresh_proc=p.fresh_proc
        )
        t.ok("landlock")
        if abi < 6:
            t.missing["landlock_scope"] = f"Landlock ABI {abi} < 6: signals are not scoped"
    except L.LayerUnavailable as exc:
        t.fail("landlock", exc.reason)

    try:
        L.apply_seccomp(network=spec.network)
        t.ok("seccomp")
    except L.LayerUnavailable as exc:
        t.fail("seccomp", exc.reason)

    if spec.network:
        t.ok("network_allowed")
    return ConfineResult(tuple(t.applied), tuple(sorted(t.missing.items())), tuple(t.timings))


def confine_with_report(spec: SandboxSpec) -> ConfineResult:
    """Apply every layer this machine and process allow. Returns in the job process only."""
    return finish(spec, prepare(preconfinement_for(spec)))


def _drop_root(
    who: SandboxSpec | Preconfinement,
    readonly: tuple[str, ...],
    writable: tuple[str, ...],
    t: _Tally,
    mount_ns: bool,
    pids_cgroup: bool,
) -> None:
    """Drop to ``who``'s uid, re-exposing first the ``readonly`` and ``writable`` paths that
    uid could not reach (inside our private mount namespace)."""
    uid = who.run_as_uid
    gid = who.run_as_gid if who.run_as_gid is not None else uid
    try:
        if uid is None or gid is None:
            raise L.LayerUnavailable("uid_drop", "the job's spec names no uid to run as")
        if uid == 0:
            raise L.LayerUnavailable("uid_drop", "the job's spec asks to run as root")
        hidden = L.hidden_ancestors([*readonly, *writable], uid, gid)
        if hidden and not mount_ns:
            raise L.LayerUnavailable(
                "uid_drop",
                f"{', '.join(sorted(hidden))} cannot be traversed by uid {uid} and there is no "
                "mount namespace to re-expose the paths below it",
            )
        nproc = False
        if not pids_cgroup:
            try:
                L.apply_nproc_rlimit(who, dropping_to=uid)
                nproc = True
            except L.LayerUnavailable as exc:
                t.missing["rlimit_nproc"] = exc.reason
        L.expose_paths_for_uid(readonly, writable, uid, gid)
        L.drop_uid(uid, gid)
        t.ok("uid_drop")
        if nproc:
            t.ok("rlimit_nproc")
    except L.LayerUnavailable as exc:
        try:
            L.drop_capabilities()  # still root, but without any capability
        except L.LayerUnavailable:
            pass
        t.fail("uid_drop", exc.reason)


def confine(spec: SandboxSpec) -> tuple[str, ...]:
    """Confine the calling (worker) process per ``spec``; returns the layers applied.

    May fork (PID namespace): only the confined job process returns; the original process
    waits and exits exactly as the job did. Layers that could not apply are written to stderr
    with their reason; a required one raises :class:`SandboxError`.
    """
    return report_missing(confine_with_report(spec))


def report_missing(result: ConfineResult) -> tuple[str, ...]:
    """Write the layers that did not apply to stderr (the job's diagnostics) with their
    reason; returns the layers applied."""
    for layer, reason in result.missing:
        sys.stderr.write(f"ade.sandbox: {layer} not applied: {reason}\n")
    return result.applied
