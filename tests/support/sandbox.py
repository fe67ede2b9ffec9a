"""Helpers for the sandbox tests: a job directory laid out like a real one, a spec for it, and
``run_confined`` — a real ``python -I`` child that confines itself and then runs the attack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import attrs
import pytest

from ade.sandbox import NOBODY, SandboxSpec, create_job_cgroup, detect_layers, remove_job_cgroup
from ade.sandbox.cgroup import add_process, job_cgroup_oom_killed
from ade.sandbox.spec import runtime_readonly_paths
from ade.serde import converter

ROOT = os.geteuid() == 0


def require(*layers: str) -> None:
    """Skip (with the reason `ade doctor` gives) when this machine lacks a layer."""
    report = detect_layers()
    for layer in layers:
        if not report.available(layer):
            reason = next(s.reason for s in report.layers if s.name == layer)
            pytest.skip(f"sandbox layer {layer} unavailable here: {reason}")


def make_job(base: Path, name: str = "job") -> Path:
    job = base / name
    (job / "inputs").mkdir(parents=True)
    (job / "inputs" / "001-doc.csv").write_text("name,amount\nsecret-row,1\n")
    (job / "tmp" / "output").mkdir(parents=True)
    for path in (base, job, job / "inputs"):
        path.chmod(0o755)
    if ROOT:
        os.chown(job / "tmp", NOBODY, NOBODY)
        os.chown(job / "tmp" / "output", NOBODY, NOBODY)
    return job


def spec_for(job: Path, *extra_readonly: Path, **overrides: object) -> SandboxSpec:
    spec = SandboxSpec(
        job_dir=str(job),
        readonly_paths=(str(job), *(str(p) for p in extra_readonly), *runtime_readonly_paths()),
        writable_paths=(str(job / "tmp"),),
        cpu_seconds=5,
        mem_mb=256,
        fsize_mb=5,
        max_files=64,
        max_processes=32,
        network=False,
        cgroup=None,
        run_as_uid=NOBODY if ROOT else None,
        run_as_gid=NOBODY if ROOT else None,
    )
    return attrs.evolve(spec, **overrides)  # type: ignore[arg-type]


@attrs.frozen
class Confined:
    returncode: int
    stdout: str  # what the attack printed (after the layers line)
    stderr: str
    applied: tuple[str, ...]
    missing: dict[str, str]
    oom_killed: bool
    marker: str


PRELUDE = """
import json, sys, tempfile
from ade.sandbox.confine import confine_with_report
from ade.sandbox.spec import SandboxSpec
from ade.serde import converter
result = confine_with_report(converter.loads(sys.argv[1], SandboxSpec))
tempfile.tempdir = sys.argv[2]
print(json.dumps({"applied": result.applied, "missing": result.missing}), flush=True)
MARKER = sys.argv[3]
"""


def run_confined(
    spec: SandboxSpec, code: str, *, timeout: float = 30, with_cgroup: bool = False
) -> Confined:
    """Run ``code`` in a fresh interpreter after ``confine(spec)``. With ``with_cgroup`` a job
    cgroup is created (and moved into from here, as the supervisor does) and removed after."""
    marker = uuid.uuid4().hex
    cgroup = None
    if with_cgroup:
        name = f"ade-test-{marker[:12]}"
        cgroup = create_job_cgroup(name, spec.mem_mb, spec.max_processes)
        spec = attrs.evolve(spec, cgroup=name)
    program = PRELUDE + textwrap.dedent(code)
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-c",
                program,
                converter.dumps(spec),
                os.path.join(spec.job_dir, "tmp"),
                marker,
            ],
            cwd=spec.job_dir,
            env={"PATH": "/usr/bin:/bin", "MALLOC_ARENA_MAX": "2", "ADE_TEST_SECRET": marker},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        if cgroup is not None:
            add_process(cgroup, proc.pid)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            out, err = proc.communicate()
        oom = cgroup is not None and job_cgroup_oom_killed(cgroup)
    finally:
        if cgroup is not None:
            remove_job_cgroup(cgroup)
    text = out.decode(errors="replace")
    first, _, rest = text.partition("\n")
    try:
        header = json.loads(first)
    except ValueError:
        header = {"applied": [], "missing": []}
    return Confined(
        returncode=proc.returncode,
        stdout=rest,
        stderr=err.decode(errors="replace"),
        applied=tuple(header["applied"]),
        missing=dict(header["missing"]),
        oom_killed=oom,
        marker=marker,
    )


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line mentions ``marker`` (zombies excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry))
    return found
