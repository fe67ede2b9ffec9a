"""The sandbox's service-side API: detection, strict mode, the spec, the cgroup helpers,
`ade doctor`, and how the layers degrade for a service that does not run as root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import attrs
import pytest
from support.sandbox import ROOT, make_job, require, spec_for

from ade.cli import main as ade_main
from ade.sandbox import (
    LAYERS,
    NOBODY,
    LayerReport,
    LayerStatus,
    SandboxSpec,
    SandboxUnavailable,
    build_spec,
    check_required,
    create_job_cgroup,
    detect_layers,
    job_cgroup_oom_killed,
    kill_job_cgroup,
    remove_job_cgroup,
    remove_leftover_job_cgroup,
    startup_line,
)
from ade.sandbox.bench import measure
from ade.sandbox.cgroup import CgroupError, add_process, controller_dirs, job_cgroup_for
from ade.sandbox.scratch import scratch_job
from ade.serde import converter
from ade.settings import load_settings


def _report(*missing: str) -> LayerReport:
    return LayerReport(
        tuple(
            LayerStatus(n, n not in missing, f"why not {n}" if n in missing else "ok")
            for n in LAYERS
        )
    )


def test_strict_mode_refuses_naming_every_missing_layer():
    strict = load_settings({"ADE_SANDBOX": "strict"})
    with pytest.raises(SandboxUnavailable) as caught:
        check_required(strict, _report("landlock", "seccomp"))
    assert caught.value.message == (
        "ADE_SANDBOX=strict but this machine lacks sandbox layers: "
        "landlock (why not landlock); seccomp (why not seccomp)"
    )
    assert caught.value.details == {
        "missing": {"landlock": "why not landlock", "seccomp": "why not seccomp"}
    }
    check_required(strict, _report())  # nothing missing: starts


def test_best_effort_runs_with_what_there_is_and_says_so():
    settings = load_settings({})
    check_required(settings, _report("landlock"))
    line = startup_line(settings, _report("landlock"))
    assert line.startswith("sandbox best-effort: layers rlimits, memory_cgroup,")
    assert line.endswith("; MISSING landlock (why not landlock)")


def test_detection_is_cached_and_serialisable():
    report = detect_layers()
    assert detect_layers() is report
    assert [layer.name for layer in report.layers] == list(LAYERS)
    assert all(layer.reason for layer in report.layers)
    assert converter.structure(converter.unstructure(report), LayerReport) == report


def test_build_spec_for_a_job(tmp_path):
    settings = load_settings({"ADE_SANDBOX": "strict"}, worker_mem_mb=300)
    job = tmp_path / "jobs" / "01JOB"
    config = tmp_path / "venvs" / "cfg1"
    spec = build_spec(settings, job, config, network=False)
    assert spec.job_dir == str(job)
    assert spec.writable_paths == (str(job / "tmp"),)
    assert spec.readonly_paths[:2] == (str(job), str(config))
    assert os.path.realpath(sys.base_prefix) in spec.readonly_paths
    assert all(p not in ("/", "/root", "/tmp", str(tmp_path)) for p in spec.readonly_paths)
    assert (spec.mem_mb, spec.network, spec.required) == (300, False, LAYERS)
    assert (spec.run_as_uid, spec.run_as_gid) == ((NOBODY, NOBODY) if ROOT else (None, None))
    if detect_layers().available("memory_cgroup"):
        assert spec.cgroup == "ade-01JOB"
    # it travels inside run-request.json
    assert converter.loads(converter.dumps(spec), SandboxSpec) == spec
    assert build_spec(load_settings({}), job, config, network=True).required == ()


def test_job_cgroup_kill_all_and_remove():
    require("memory_cgroup", "pids_cgroup")
    cgroup = create_job_cgroup("ade-test-killall", mem_mb=64, max_processes=8)
    try:
        dirs = dict(cgroup.dirs)
        assert Path(dirs["pids"], "pids.max").read_text().strip() == "8"
        if cgroup.version == 1:
            limit = Path(dirs["memory"], "memory.limit_in_bytes").read_text().strip()
            assert limit == str(64 * 1024 * 1024)
        sleepers = [subprocess.Popen(["sleep", "60"]) for _ in range(3)]
        for proc in sleepers:
            add_process(cgroup, proc.pid)
        kill_job_cgroup(cgroup)
        assert [proc.wait(timeout=5) for proc in sleepers] == [-9, -9, -9]
        assert not job_cgroup_oom_killed(cgroup)
    finally:
        assert remove_job_cgroup(cgroup)
    assert not any(os.path.exists(d) for d in cgroup.unique_dirs())


def test_a_leftover_cgroup_is_reset_and_bad_names_refused():
    require("pids_cgroup")
    first = create_job_cgroup("ade-test-leftover", mem_mb=64, max_processes=8)
    sleeper = subprocess.Popen(["sleep", "60"])
    add_process(first, sleeper.pid)
    # A crashed service left it behind, process included: creating it again starts clean.
    second = create_job_cgroup("ade-test-leftover", mem_mb=64, max_processes=4)
    try:
        assert sleeper.wait(timeout=5) == -9
        assert Path(dict(second.dirs)["pids"], "pids.max").read_text().strip() == "4"
    finally:
        remove_job_cgroup(second)
    with pytest.raises(CgroupError, match="is not a single path component"):
        create_job_cgroup("../escape", mem_mb=64, max_processes=4)
    assert job_cgroup_for(None, 64, 4, required=True) is None


def test_a_dead_services_job_cgroup_is_emptied_and_removed_by_name():
    require("pids_cgroup")
    cgroup = create_job_cgroup("ade-test-dead-service", mem_mb=64, max_processes=8)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        add_process(cgroup, sleeper.pid)
        found = remove_leftover_job_cgroup("ade-test-dead-service")
        assert found is not None and found.unique_dirs() == cgroup.unique_dirs()
        assert sleeper.wait(timeout=5) == -9
    finally:
        sleeper.kill()
        sleeper.wait()
        remove_job_cgroup(cgroup)
    assert not any(os.path.exists(d) for d in cgroup.unique_dirs())
    assert remove_leftover_job_cgroup("ade-test-dead-service") is None


def test_a_scratch_job_leaves_nothing_even_when_its_user_fails():
    with pytest.raises(RuntimeError, match="the probe broke"):
        with scratch_job(
            "ade-test-scratch", mem_mb=64, max_processes=8, fsize_mb=1, max_files=64
        ) as scratch:
            workdir = scratch.workdir
            assert scratch.spec.writable_paths == (os.path.join(workdir, "tmp"),)
            assert os.path.isdir(os.path.join(workdir, "tmp"))
            assert (scratch.cgroup is None) == bool(scratch.cgroup_reason)
            sleeper = subprocess.Popen(["sleep", "60"])
            if scratch.cgroup is not None:
                add_process(scratch.cgroup, sleeper.pid)
            raise RuntimeError("the probe broke")
    assert not os.path.exists(workdir)
    if scratch.cgroup is not None:
        assert not any(os.path.exists(d) for d in scratch.cgroup.unique_dirs())
        assert sleeper.wait(timeout=5) == -9  # killed with its cgroup
    else:
        sleeper.kill()
        sleeper.wait()


def test_scratch_cgroups_of_dead_processes_are_swept():
    require("pids_cgroup")
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = create_job_cgroup(f"ade-probe-{dead.pid}", mem_mb=64, max_processes=8)
    live = create_job_cgroup(f"ade-probe-{os.getpid()}-live", mem_mb=64, max_processes=8)
    try:
        with scratch_job("ade-test-sweep", mem_mb=64, max_processes=8, fsize_mb=1, max_files=64):
            pass
        assert not any(os.path.exists(d) for d in stale.unique_dirs())
        assert all(os.path.isdir(d) for d in live.unique_dirs())  # its process is alive
    finally:
        remove_job_cgroup(stale)
        remove_job_cgroup(live)


def test_the_sandbox_bench_measures_and_cleans_up():
    cost = measure(1)
    assert cost.rounds == 1 and cost.worker_total_ms > 0
    assert cost.worker_steps[0][0] == "rlimits"
    _, bases, _ = controller_dirs()
    leftovers = [
        name
        for base in set(bases.values())
        for name in os.listdir(base)
        if name.startswith(f"ade-bench-{os.getpid()}-")
    ]
    assert leftovers == []


def test_ade_doctor_prints_every_layer(capsys):
    code = ade_main(["doctor"])
    out = capsys.readouterr().out.splitlines()
    report = detect_layers()
    assert out[0] == "ADE sandbox layers on this machine (ADE_SANDBOX=best-effort):"
    for line, layer in zip(out[1 : 1 + len(LAYERS)], report.layers, strict=True):
        assert line.split()[:2] == ["yes" if layer.available else "NO", layer.name]
        assert line.endswith(layer.reason)
    failed = [check for check, passed in report.probe_checks if not passed]
    assert code == (0 if not report.missing() and not failed else 1)
    assert (
        "jobs start by ADE_WORKER_START=fork (a pre-imported template per worker forks one "
        "fully confined child per job), at nice 10"
    ) in out
    ade_main(["doctor", "--json"])
    parsed = json.loads(capsys.readouterr().out)
    assert [layer["name"] for layer in parsed["layers"]] == list(LAYERS)
    assert parsed["worker_start"] == {"mode": "fork", "nice": 10}


def test_ade_doctor_fails_when_a_probe_check_did_not_hold(capsys, monkeypatch):
    import ade.sandbox.detect as detect

    report = attrs.evolve(
        _report(), probe_checks=(("etc_shadow_unreadable", False), ("tcp_socket_denied", True))
    )
    monkeypatch.setattr(detect, "detect_layers", lambda: report)
    assert ade_main(["doctor"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "  probe etc_shadow_unreadable: FAILED" in out
    assert out[-1] == (
        "FAILED probe checks: etc_shadow_unreadable — a layer that applied did not hold"
    )
    assert ade_main(["doctor", "--json"]) == 1


def test_an_unprivileged_service_degrades_with_reasons(tmp_path):
    if not ROOT:
        pytest.skip("simulates an unprivileged service by dropping root; not root here")
    base = Path(os.environ.get("TMPDIR", "/tmp")) / f"ade-unpriv-{os.getpid()}-{time.time_ns()}"
    base.mkdir(mode=0o755)
    try:
        job = make_job(base)
        spec = spec_for(job, run_as_uid=None, run_as_gid=None)
        code = textwrap.dedent(
            """
            import ctypes, errno, json, os, socket, sys
            from ade.sandbox.confine import confine_with_report
            from ade.sandbox.spec import SandboxSpec
            from ade.serde import converter
            spec = converter.loads(sys.argv[1], SandboxSpec)
            os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)
            ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # dumpable, as after an exec by nobody
            result = confine_with_report(spec)
            out = {"applied": result.applied, "missing": dict(result.missing)}
            for label, fn in [("inet", lambda: socket.socket(socket.AF_INET)),
                              ("passwd", lambda: open("/etc/passwd"))]:
                try:
                    fn(); out[label] = "allowed"
                except OSError as exc:
                    out[label] = errno.errorcode[exc.errno]
            print(json.dumps(out))
            """
        )
        proc = subprocess.run(
            [sys.executable, "-I", "-c", code, converter.dumps(spec)],
            cwd=job,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        result = json.loads(proc.stdout)
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=True)
    # No cgroup for an unprivileged service here; everything else through a user namespace.
    assert result["missing"] == {
        "memory_cgroup": "the service created no cgroup for this job",
        "pids_cgroup": "the service created no cgroup for this job",
        "rlimit_nproc": "RLIMIT_NPROC would count every process of the service's own uid",
    }
    expected = [
        "rlimits",
        "rlimit_as",
        "network_namespace",
        "pid_namespace",
        "mount_namespace",
        "ipc_namespace",
        "uid_drop",
        "no_new_privs",
        "landlock",
        "seccomp",
    ]
    assert result["applied"] == expected
    assert (result["inet"], result["passwd"]) == ("EACCES", "EACCES")


def test_spec_fields_are_the_agreed_interface():
    names = [f.name for f in attrs.fields(SandboxSpec)]
    assert names == [
        "job_dir",
        "readonly_paths",
        "writable_paths",
        "cpu_seconds",
        "mem_mb",
        "fsize_mb",
        "max_files",
        "max_processes",
        "network",
        "cgroup",
        "run_as_uid",
        "run_as_gid",
        "required",
        "nice",
    ]
