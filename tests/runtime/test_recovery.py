"""Recovery after the service process is SIGKILLed mid-job: a real child process runs the
runtime, is killed, and a new one starts on the same data directory."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from support import make_settings
from support.actors import (  # noqa: F401 - the fixture is used by pytest
    MARKER,
    ScriptRunner,
    no_leaked_processes,
    processes_under,
    processes_with,
    publish,
    seed,
    wait_for_status,
)

from ade.ids import new_id
from ade.models import JobRecord, JobStatus
from ade.runtime import RESTART_MESSAGE, open_runtime, read_events, scan_events
from ade.sandbox.cgroup import controller_dirs
from ade.serde import utcnow
from ade.store import open_store
from ade.worker.protocol import load_request

# The child runs the support module as a script, with the support package importable.
TESTS = Path(__file__).resolve().parent.parent
CHILD = (
    f"import runpy, sys; sys.path.insert(0, {str(TESTS)!r}); "
    "runpy.run_module('support.runtime_child', run_name='__main__')"
)


def child_command(data_dir: Path, config_id: str, *documents: str, until_done: bool = False):
    command = [sys.executable, "-c", CHILD, str(data_dir), config_id, *documents]
    return [*command, "--until-done"] if until_done else command


async def read_line(process: trio.Process) -> dict:
    assert process.stdout is not None
    buffer = b""
    with trio.fail_after(20):
        while not buffer.endswith(b"\n"):
            chunk = await process.stdout.receive_some(4096)
            assert chunk, "the child exited before reporting"
            buffer += chunk
    return json.loads(buffer)


async def job_status(settings, job_id: str) -> JobStatus:
    store = open_store(settings)
    try:
        job = await store.get_job(job_id)
        assert job is not None
        return job.status
    finally:
        store.close()


async def _reap(process: trio.Process) -> None:
    """Make sure the service child is dead and its stdout closed, whatever the test did."""
    if process.returncode is None:
        process.kill()
        await process.wait()
    assert process.stdout is not None
    await process.stdout.aclose()


async def test_a_restart_marks_running_jobs_interrupted_and_runs_queued_ones(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path / "data", max_concurrency=1, queue_size=10)
    seeded = await seed(settings, [b"sleep 60", b"ok", b"events"])
    documents = [seeded.doc(b"sleep 60"), seeded.doc(b"ok"), seeded.doc(b"events")]

    process = await trio.lowlevel.open_process(
        child_command(settings.data_dir, seeded.config_id, *documents),
        stdout=subprocess.PIPE,
    )
    try:
        interrupted, *queued = (await read_line(process))["submitted"]
        with trio.fail_after(20):
            while await job_status(settings, interrupted) is not JobStatus.RUNNING:
                await trio.sleep(0.02)
            while not processes_with(f"{MARKER}{interrupted}"):
                await trio.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        await process.wait()
    finally:
        await _reap(process)
    # The job's own process outlived the service (it runs in its own session).
    assert processes_with(f"{MARKER}{interrupted}") != []
    for job_id in queued:
        assert await job_status(settings, job_id) is JobStatus.QUEUED
    # As if the service had died in the middle of writing an event: a torn last line.
    log = settings.jobs_dir / interrupted / "events.ndjson"
    with log.open("ab") as handle:
        handle.write(b'{"seq": 3, "ts": "2026-01-0')

    with trio.fail_after(30):
        restarted = await trio.run_process(
            child_command(settings.data_dir, seeded.config_id, until_done=True),
            capture_stdout=True,
        )
    assert json.loads(restarted.stdout) == {"submitted": []}
    assert processes_with(f"{MARKER}{interrupted}") == []  # recovery killed the orphan

    store = open_store(settings)
    try:
        job = await store.get_job(interrupted)
        assert job is not None
        assert (job.status, job.error_message, job.limit) == (
            JobStatus.ERROR,
            RESTART_MESSAGE,
            "restart",
        )
        for job_id in queued:
            done = await store.get_job(job_id)
            assert done is not None and done.status is JobStatus.SUCCESS
    finally:
        store.close()

    scan = scan_events(log)
    assert scan.skipped_lines == 1  # the torn fragment, kept on its own line
    events = list(scan.events)
    assert [(e.seq, e.type) for e in events] == [
        (1, "enqueue"),
        (2, "start"),
        (3, "recovery"),
        (4, "error"),
    ]
    assert events[2].detail == {"action": "interrupted", "was": "running"}
    assert events[3].detail["message"] == RESTART_MESSAGE
    for job_id in queued:
        types = [e.type for e in read_events(settings.jobs_dir / job_id / "events.ndjson")]
        assert types[:3] == ["enqueue", "recovery", "start"] and types[-1] == "finish"
    # The lock of the killed service did not outlive it, and nothing else was left.
    assert os.path.exists(settings.data_dir / "runtime.lock")


def job_cgroup_dirs(job_dir: Path) -> list[str]:
    """The directories of the job's cgroup named in its run-request.json (none without one)."""
    name = load_request(job_dir / "run-request.json").sandbox.cgroup
    if name is None:
        return []
    _, bases, _ = controller_dirs()
    return sorted({os.path.join(base, name) for base in bases.values()})


async def test_a_sigkilled_services_sandboxed_worker_dies_with_it_and_recovery_cleans_up(
    tmp_path: Path,
) -> None:
    """Same story with the real runner: its sandboxed worker holds a lifeline to the service,
    so it dies with the SIGKILLed service (the test above proves that recovery kills a worker
    that outlived it); the job's cgroup is left behind, and the next start removes it and
    records the job's ending. Until this runner kept a process confined ahead of each job, the
    worker usually outlived the service for a moment and this test asserted that, racing the
    lifeline; it lost that race now and then."""
    settings = make_settings(tmp_path / "data", max_concurrency=1, queue_size=10)
    config_id, document_id = await publish(settings, tmp_path, sleep=60)
    process = await trio.lowlevel.open_process(
        [*child_command(settings.data_dir, config_id, document_id), "--runner", "real"],
        stdout=subprocess.PIPE,
    )
    try:
        (job_id,) = (await read_line(process))["submitted"]
        job_dir = settings.jobs_dir / job_id
        with trio.fail_after(20):
            while not processes_under(job_dir):
                await trio.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        await process.wait()
    finally:
        await _reap(process)
    with trio.move_on_after(10):
        while processes_under(job_dir):
            await trio.sleep(0.02)
    assert processes_under(job_dir) == []
    # Where the machine gives jobs a cgroup, the dead service left it behind.
    cgroup_dirs = job_cgroup_dirs(job_dir)
    assert all(os.path.isdir(d) for d in cgroup_dirs)
    with trio.fail_after(30):
        await trio.run_process(
            [*child_command(settings.data_dir, config_id, until_done=True), "--runner", "real"],
            capture_stdout=True,
        )
    assert processes_under(job_dir) == []
    assert [d for d in cgroup_dirs if os.path.exists(d)] == []
    events = read_events(job_dir / "events.ndjson")
    assert [e.type for e in events][-2:] == ["recovery", "error"]
    assert events[-1].detail["message"] == RESTART_MESSAGE


async def test_jobs_whose_directory_vanished_still_reach_a_terminal_state(tmp_path: Path) -> None:
    """An operator removed job directories while the service was down: recovery must not stop
    the service from starting, and no job may stay queued or running forever."""
    settings = make_settings(tmp_path / "data", max_concurrency=1, queue_size=10)
    seeded = await seed(settings, [b"ok"])
    store = open_store(settings)
    try:
        jobs = {}
        for status in (JobStatus.RUNNING, JobStatus.QUEUED):
            job = JobRecord(
                id=new_id(),
                workspace_id="ws",
                status=status,
                config_version_id=seeded.config_id,
                document_ids=(seeded.doc(b"ok"),),
                runtime_network_access=False,
                attempt=1,
                created_at=utcnow(),
            )
            await store.insert_job(job)
            jobs[status] = job.id
    finally:
        store.close()
    async with open_runtime(settings, runner=ScriptRunner()) as runtime:
        with trio.fail_after(10):
            interrupted = await runtime.wait("ws", jobs[JobStatus.RUNNING])
            orphan = await runtime.wait("ws", jobs[JobStatus.QUEUED])
    assert (interrupted.status, interrupted.error_message) == (JobStatus.ERROR, RESTART_MESSAGE)
    assert (orphan.status, orphan.error_message) == (
        JobStatus.ERROR,
        "worker could not start: FileNotFoundError",
    )


async def test_half_built_job_directories_of_a_dead_service_are_removed_at_start(
    tmp_path: Path,
) -> None:
    """A service killed inside create_job_dir leaves its hidden build directory (with a
    read-only inputs/); the next start removes it and nothing else."""
    settings = make_settings(tmp_path / "data")
    building = settings.jobs_dir / ".creating-01JOB-abc123"
    (building / "inputs").mkdir(parents=True)
    (building / "inputs" / "001-doc.csv").write_text("name\n")
    (building / "inputs").chmod(0o555)
    kept = settings.jobs_dir / "01KEPT"
    kept.mkdir()
    async with open_runtime(settings, runner=ScriptRunner()):
        assert sorted(os.listdir(settings.jobs_dir)) == ["01KEPT"]


async def test_a_broken_store_stops_the_runtime_and_the_next_start_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path / "data", max_concurrency=1, queue_size=10)
    seeded = await seed(settings, [b"sleep 0.3"])
    with pytest.raises(BaseExceptionGroup) as failed:
        async with open_runtime(settings, runner=ScriptRunner()) as runtime:
            job = await seeded.submit(runtime, b"sleep 0.3")
            await wait_for_status(runtime, "ws", job.id, JobStatus.RUNNING)

            async def disk_error(record: JobRecord, **_: object) -> None:
                raise sqlite3.OperationalError("disk I/O error")

            # The job's end cannot be stored: the runtime must stop, not limp on.
            monkeypatch.setattr(runtime.store, "update_job", disk_error)
            with trio.fail_after(10):
                await trio.sleep_forever()
    assert failed.group_contains(sqlite3.OperationalError, match="disk I/O error")
    assert processes_with(f"{MARKER}{job.id}") == []
    async with open_runtime(settings, runner=ScriptRunner()) as runtime:
        final = await runtime.get_job("ws", job.id)
        assert (final.status, final.error_message) == (JobStatus.ERROR, RESTART_MESSAGE)
