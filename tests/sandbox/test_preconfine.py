"""Confinement split around the job's arrival: what a process prepared ahead may serve
(:meth:`Preconfinement.mismatch`, :func:`ade.runtime.starters.unfit`), the job process's own
refusal of a job it was not prepared for, and the cgroup handed over by a rename — with real
processes and real cgroups where the machine has them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest
from support.sandbox import ROOT, require

from ade.runtime.starters import unfit
from ade.sandbox import NOBODY, build_spec, create_job_cgroup, remove_job_cgroup
from ade.sandbox.cgroup import add_process, await_placement, is_member, rename_job_cgroup
from ade.sandbox.spec import preconfinement_for, runtime_readonly_paths, standby_cgroup_owner
from ade.settings import load_settings


def _spec(tmp_path: Path, **changes: object):
    spec = build_spec(
        load_settings({}), tmp_path / "jobs" / "01JOB", tmp_path / "venvs" / "c", False
    )
    return attrs.evolve(spec, **changes)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cpu_seconds", 1),
        ("mem_mb", 1),
        ("fsize_mb", 1),
        ("max_files", 1),
        ("max_processes", 1),
        ("network", True),
        ("run_as_uid", 1234),
        ("required", ("seccomp",)),
        ("nice", 3),
    ],
)
def test_a_process_prepared_for_other_settings_cannot_serve_the_job(tmp_path, field, value):
    spec = _spec(tmp_path, cgroup="ade-01JOB")
    pre = preconfinement_for(spec, cgroup="ade-standby-1-1")
    assert pre.mismatch(spec) is None  # only the cgroup's name differs: it is renamed
    other = attrs.evolve(spec, **{field: value})
    assert pre.mismatch(other) == f"the job's {field} differs from the one applied ahead of it"


def test_a_process_without_a_cgroup_cannot_serve_a_job_with_one(tmp_path):
    spec = _spec(tmp_path, cgroup="ade-01JOB")
    pre = attrs.evolve(preconfinement_for(spec), cgroup=None)
    assert pre.mismatch(spec) == "the job's cgroup differs from the one applied ahead of it"


@pytest.mark.skipif(not ROOT, reason="the uid drop ahead is a root service's")
def test_a_uid_dropped_ahead_cannot_serve_a_job_whose_paths_need_re_exposing(tmp_path):
    # pytest's tmp_path sits under a 0700 directory: nobody cannot traverse it.
    spec = _spec(tmp_path, run_as_uid=NOBODY, run_as_gid=NOBODY)
    (tmp_path / "jobs" / "01JOB").mkdir(parents=True)
    early = preconfinement_for(spec, uid_paths=runtime_readonly_paths())
    reason = unfit(early, spec)
    assert reason is not None and "need re-exposing for uid 65534" in reason
    assert unfit(preconfinement_for(spec), spec) is None  # the uid drop left for the job


def test_standby_cgroup_names_carry_their_service():
    assert standby_cgroup_owner("ade-standby-123-4") == 123
    assert standby_cgroup_owner("ade-01JOB") is None
    assert standby_cgroup_owner("ade-standby-x-4") is None


def test_the_job_process_refuses_a_job_it_was_not_prepared_for(tmp_path):
    """finish() checks what the service checked: a process prepared without network
    isolation (a job allowed on the network) must never run a job that is denied it."""
    code = textwrap.dedent(
        """
        import attrs
        from ade.sandbox.confine import SandboxError, finish, prepare
        from ade.sandbox.spec import preconfinement_for
        from ade.serde import converter
        from ade.sandbox import SandboxSpec
        import json, sys
        spec = converter.structure(json.loads(sys.argv[1]), SandboxSpec)
        prepared = prepare(preconfinement_for(attrs.evolve(spec, network=True)))
        try:
            finish(spec, prepared)
        except SandboxError as exc:
            print(exc)
        """
    )
    spec = _spec(tmp_path, cgroup=None)
    from ade.serde import converter

    out = subprocess.run(
        [sys.executable, "-I", "-c", code, converter.dumps(spec)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == (
        "this process was confined ahead for another job: "
        "the job's network differs from the one applied ahead of it"
    )


def test_a_cgroup_renamed_to_the_job_keeps_its_processes_and_limits():
    require("pids_cgroup")
    cgroup = create_job_cgroup("ade-standby-0-991", mem_mb=64, max_processes=7)
    sleeper = subprocess.Popen(["sleep", "60"])
    renamed = None
    try:
        add_process(cgroup, sleeper.pid)
        try:
            renamed = rename_job_cgroup(cgroup, "ade-test-renamed-job")
        except OSError as exc:  # cgroup v2 has no rename: the starters fall back
            pytest.skip(f"no cgroup rename here: {exc}")
        assert not any(os.path.exists(d) for d in cgroup.unique_dirs())
        pids = dict(renamed.dirs)["pids"]
        assert Path(pids, "pids.max").read_text().strip() == "7"
        assert Path(pids, "cgroup.procs").read_text().split() == [str(sleeper.pid)]
        with open(f"/proc/{sleeper.pid}/cgroup") as f:
            assert "/ade-test-renamed-job\n" in f.read()
    finally:
        sleeper.kill()
        sleeper.wait()
        remove_job_cgroup(renamed or cgroup)


def test_a_process_started_ahead_waits_for_its_placement_and_accepts_the_renamed_cgroup():
    """await_placement never moves the process itself; it returns once the service did, even
    when the cgroup has already been renamed to the job's by then."""
    require("pids_cgroup")
    code = textwrap.dedent(
        """
        import sys
        from ade.sandbox.cgroup import await_placement, is_member
        print("waiting", flush=True)
        sys.stdin.readline()
        placed = await_placement(sys.argv[1], timeout=10)
        print(placed.name, is_member(sys.argv[2]), flush=True)
        """
    )
    cgroup = create_job_cgroup("ade-standby-0-992", mem_mb=64, max_processes=8)
    renamed = None
    with subprocess.Popen(
        [sys.executable, "-I", "-c", code, cgroup.name, "ade-test-placed-job"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline() == "waiting\n"
            add_process(cgroup, proc.pid)
            try:
                renamed = rename_job_cgroup(cgroup, "ade-test-placed-job")
            except OSError as exc:
                pytest.skip(f"no cgroup rename here: {exc}")
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == "ade-standby-0-992 True\n"
            assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()
            proc.wait()
            remove_job_cgroup(renamed or cgroup)
    # Not placed at all: it gives up with the reason, never joining by itself.
    lonely = create_job_cgroup("ade-standby-0-993", mem_mb=64, max_processes=8)
    try:
        with pytest.raises(OSError, match="did not move this process into cgroup"):
            await_placement(lonely.name, timeout=0.05)
        assert not is_member(lonely.name)
    finally:
        remove_job_cgroup(lonely)
