"""What this machine's sandbox can do: :func:`detect_layers`, measured, not guessed.

Detection runs the real thing once: a throwaway ``python -I -m ade.sandbox.probe`` child is
confined exactly as a job would be (in a probe cgroup, with a probe job directory) and reports
which layers applied and why the others did not, plus whether a TCP socket and /etc/shadow
were really out of reach. ~100 ms, once per service process (cached).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import attrs

from ade.errors import AdeError
from ade.sandbox.scratch import scratch_job
from ade.sandbox.spec import LAYERS, NOBODY
from ade.serde import converter
from ade.settings import Settings

__all__ = [
    "LayerReport",
    "LayerStatus",
    "SandboxUnavailable",
    "check_required",
    "detect_layers",
    "startup_line",
]


@attrs.frozen
class LayerStatus:
    name: str
    available: bool
    reason: str


@attrs.frozen
class LayerReport:
    layers: tuple[LayerStatus, ...]
    # Fallbacks and notes that are not layers of their own (rlimit_as, landlock_scope ...).
    notes: tuple[tuple[str, str], ...] = ()
    probe_checks: tuple[tuple[str, bool], ...] = ()

    def available(self, name: str) -> bool:
        return any(layer.name == name and layer.available for layer in self.layers)

    def missing(self) -> tuple[LayerStatus, ...]:
        return tuple(layer for layer in self.layers if not layer.available)

    def available_names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers if layer.available)


class SandboxUnavailable(AdeError):
    """ADE_SANDBOX=strict and this machine lacks a layer; the message names each one."""

    code = "sandbox_unavailable"


_lock = threading.Lock()
_cached: LayerReport | None = None


def detect_layers(*, refresh: bool = False) -> LayerReport:
    """The layers this machine supports, with reasons. Cached for the life of the process."""
    global _cached
    with _lock:
        if _cached is None or refresh:
            _cached = _probe()
        return _cached


def _probe() -> LayerReport:
    with scratch_job(
        f"ade-probe-{os.getpid()}", mem_mb=256, max_processes=32, fsize_mb=1, max_files=64
    ) as scratch:
        cgroup_reason = scratch.cgroup_reason
        try:
            proc = subprocess.run(
                [sys.executable, "-I", "-m", "ade.sandbox.probe", converter.dumps(scratch.spec)],
                capture_output=True,
                timeout=20,
                cwd=scratch.workdir,
                env={"PATH": "/usr/bin:/bin", "MALLOC_ARENA_MAX": "2"},
                check=False,
            )
            output = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
            reason = f"the sandbox probe failed: {type(exc).__name__}: {exc}"
            return LayerReport(tuple(LayerStatus(n, False, reason) for n in LAYERS))

    applied = set(output["applied"])
    missing = dict(output["missing"])
    if cgroup_reason:
        for layer in ("memory_cgroup", "pids_cgroup"):
            missing[layer] = cgroup_reason
    statuses = []
    for layer in LAYERS:
        if layer in applied:
            reason = _OK.get(layer, "applies")
            if layer == "landlock":
                abi = int(output.get("abi", 0))
                reason = "filesystem allow-list"
                reason += ", TCP deny" if abi >= 4 else " (ABI < 4: no TCP rules)"
                reason += ", signal scoping" if abi >= 6 else " (ABI < 6: signals not scoped)"
                reason += f" (ABI {abi})"
            statuses.append(LayerStatus(layer, True, reason))
        else:
            statuses.append(LayerStatus(layer, False, missing.get(layer, "not applied")))
    notes = tuple((k, v) for k, v in sorted(missing.items()) if k not in LAYERS)
    notes += tuple((k, "applies (fallback)") for k in sorted(applied) if k not in LAYERS)
    checks = tuple((k, bool(v)) for k, v in sorted(output.get("checks", {}).items()))
    return LayerReport(tuple(statuses), notes, checks)


_OK = {
    "rlimits": "CPU, file size, open files, no core dumps",
    "memory_cgroup": "the kernel kills at the memory limit (real memory, not address space)",
    "pids_cgroup": "process cap that holds for root too",
    "network_namespace": "loopback only; DNS and every outside address unreachable",
    "pid_namespace": "the job's processes die with it; other pids are invisible",
    "mount_namespace": "fresh /proc; paths re-exposed for the dropped uid",
    "ipc_namespace": "SysV IPC and message queues private to the job, freed with it",
    "uid_drop": (f"jobs run as uid {NOBODY}" if os.geteuid() == 0 else "the service is not root"),
    "no_new_privs": "setuid binaries grant nothing",
    "landlock": "filesystem allow-list, TCP deny, signal scoping",
    "seccomp": "socket() (unix too; socketpair stays), io_uring, ptrace, mount, bpf ... denied",
}


def check_required(settings: Settings, report: LayerReport) -> None:
    """ADE_SANDBOX=strict: raise :class:`SandboxUnavailable` naming every missing layer."""
    if settings.sandbox != "strict":
        return
    missing = report.missing()
    if missing:
        listed = "; ".join(f"{layer.name} ({layer.reason})" for layer in missing)
        raise SandboxUnavailable(
            f"ADE_SANDBOX=strict but this machine lacks sandbox layers: {listed}",
            {"missing": {layer.name: layer.reason for layer in missing}},
        )


def startup_line(settings: Settings, report: LayerReport) -> str:
    """One log line for start-up: the mode, the layers in force and what is missing."""
    have = ", ".join(report.available_names()) or "none"
    line = f"sandbox {settings.sandbox}: layers {have}"
    missing = report.missing()
    if missing:
        line += "; MISSING " + "; ".join(f"{m.name} ({m.reason})" for m in missing)
    return line
