"""Compose the layers for one job: :func:`confine`, called first thing in the worker.

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

Best-effort vs strict: a layer that cannot apply is recorded with its reason (and written to
stderr, which reaches the job's diagnostics); if the layer is in ``spec.required`` (ADE_SANDBOX
=strict) :class:`SandboxError` is raised instead and the worker never runs config code.
"""

from __future__ import annotations

import os
import sys
import time

import attrs

from ade.sandbox import layers as L
from ade.sandbox.spec import SandboxSpec

__all__ = ["ConfineResult", "SandboxError", "confine", "confine_with_report"]


class SandboxError(RuntimeError):
    """A required sandbox layer could not be applied; the message names it and says why."""

    def __init__(self, layer: str, reason: str) -> None:
        super().__init__(f"required sandbox layer {layer!r} could not be applied: {reason}")
        self.layer = layer
        self.reason = reason


@attrs.frozen
class ConfineResult:
    applied: tuple[str, ...]
    # (layer, reason) for every layer that did not apply.
    missing: tuple[tuple[str, str], ...]
    # (step, milliseconds) in the order run: what `python -m ade.sandbox.bench` reports.
    timings: tuple[tuple[str, float], ...] = ()


class _Tally:
    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
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
        if layer in self.spec.required:
            raise SandboxError(layer, reason)


def _fresh_proc() -> bool:
    try:
        return os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        return False


def confine_with_report(spec: SandboxSpec) -> ConfineResult:
    """Apply every layer this machine and process allow. Returns in the job process only."""
    t = _Tally(spec)
    root = os.geteuid() == 0
    # Not a layer (nothing to enforce): the job yields the CPU to the service's event loop.
    # Absolute, so a template or standby started at another nice value does not matter.
    L.set_cpu_priority(spec.nice)

    try:
        L.apply_rlimits(spec)
        t.ok("rlimits")
    except L.LayerUnavailable as exc:
        t.fail("rlimits", exc.reason)

    controllers: tuple[str, ...] = ()
    cgroup_reason = ""
    try:
        controllers = L.join_cgroup(spec).controllers
    except L.LayerUnavailable as exc:
        cgroup_reason = exc.reason
    for controller in ("memory", "pids"):
        if controller in controllers:
            t.ok(f"{controller}_cgroup")
        else:
            t.fail(f"{controller}_cgroup", cgroup_reason or f"no {controller} controller")
    if "memory" not in controllers:
        try:
            L.apply_memory_rlimit(spec)
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

    mount_ns = pid_ns = False
    if namespaces:
        if not spec.network:
            try:
                L.unshare_network()
                L.bring_loopback_up()
                t.ok("network_namespace")
            except L.LayerUnavailable as exc:
                t.fail("network_namespace", exc.reason)
        try:
            L.unshare_mount()
            mount_ns = True
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
            L.enter_pid_namespace(private_mounts=mount_ns)
            pid_ns = True
            t.ok("pid_namespace")
        except L.LayerUnavailable as exc:
            t.fail("pid_namespace", exc.reason)
        if mount_ns:
            if pid_ns and not _fresh_proc():
                t.fail("mount_namespace", "could not mount a fresh /proc for the PID namespace")
            else:
                t.ok("mount_namespace")
        if ipc_ns:
            t.ok("ipc_namespace")
        else:
            t.fail("ipc_namespace", ipc_reason)
    fresh_proc = pid_ns and mount_ns and _fresh_proc()

    if root:
        _drop_root(spec, t, mount_ns, "pids" in controllers)
    else:
        try:
            if namespaces:
                L.drop_capabilities()  # the user namespace's, which we no longer need
            t.ok("uid_drop")  # the service is unprivileged: so is the job
        except L.LayerUnavailable as exc:
            t.fail("uid_drop", f"capabilities of the user namespace kept: {exc.reason}")
        if "pids" not in controllers:
            t.missing["rlimit_nproc"] = (
                "RLIMIT_NPROC would count every process of the service's own uid"
            )

    try:
        L.set_no_new_privs()
        t.ok("no_new_privs")
    except L.LayerUnavailable as exc:
        t.fail("no_new_privs", exc.reason)

    try:
        abi = L.apply_landlock(
            spec.readonly_paths, spec.writable_paths, network=spec.network, fresh_proc=fresh_proc
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


def _drop_root(spec: SandboxSpec, t: _Tally, mount_ns: bool, pids_cgroup: bool) -> None:
    uid = spec.run_as_uid
    gid = spec.run_as_gid if spec.run_as_gid is not None else uid
    try:
        if uid is None or gid is None:
            raise L.LayerUnavailable("uid_drop", "the job's spec names no uid to run as")
        if uid == 0:
            raise L.LayerUnavailable("uid_drop", "the job's spec asks to run as root")
        paths = [*spec.readonly_paths, *spec.writable_paths]
        hidden = L.hidden_ancestors(paths, uid, gid)
        if hidden and not mount_ns:
            raise L.LayerUnavailable(
                "uid_drop",
                f"{', '.join(sorted(hidden))} cannot be traversed by uid {uid} and there is no "
                "mount namespace to re-expose the paths below it",
            )
        nproc = False
        if not pids_cgroup:
            try:
                L.apply_nproc_rlimit(spec, dropping_to=uid)
                nproc = True
            except L.LayerUnavailable as exc:
                t.missing["rlimit_nproc"] = exc.reason
        L.expose_paths_for_uid(spec.readonly_paths, spec.writable_paths, uid, gid)
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
    result = confine_with_report(spec)
    for layer, reason in result.missing:
        sys.stderr.write(f"ade.sandbox: {layer} not applied: {reason}\n")
    return result.applied
