"""Helpers for the actor-runtime tests: seeded data directories and a job runner that starts
real processes chosen by the job's input (so the runtime is tested without the engine).

Input document content -> what the job's process does:

    b"ok"            exits 0 at once                       -> success
    b"fail"          exits 3                               -> error "exit code 3"
    b"sleep <s>"     sleeps <s> seconds, then exits 0      -> success (or killed)
    b"events"        the runner forwards three pass events, then success

Every process carries ``ade-test-job=<job_id>`` on its command line, and runs with the job
directory as cwd (like the real worker), so tests can find it in /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from ade.configs.prepare import prepare_config, snapshot_dir
from ade.ids import new_id
from ade.models import ConfigVersion, JobRecord, JobStatus
from ade.runtime.ending import JobEnding
from ade.settings import Settings
from support import insert_records

T0 = datetime(2026, 1, 2, tzinfo=UTC)
MARKER = "ade-test-job="


@attrs.frozen
class Seeded:
    config_id: str
    documents: dict[bytes, str]  # content -> document id

    def doc(self, content: bytes) -> str:
        return self.documents[content]

    async def submit(self, runtime: Any, content: bytes, **options: Any) -> JobRecord:
        """Submit the seeded document ``content`` with the seeded config in workspace "ws"."""
        return await runtime.submit(
            workspace_id="ws",
            config_version_id=self.config_id,
            document_ids=[self.doc(content)],
            **options,
        )


async def seed(
    settings: Settings,
    contents: list[bytes],
    *,
    workspace: str = "ws",
    network: bool = False,
    config_id: str | None = None,
) -> Seeded:
    """A config version (with an empty snapshot directory, which is all the job directory needs)
    and one stored document per content, in ``workspace``."""
    from support.jobs import store_document

    config_id = config_id or new_id("cfg")
    config = ConfigVersion(config_id, workspace, "test", "1", "hash", T0, network)
    snapshot_dir(settings.venvs_dir, config_id).mkdir(parents=True, exist_ok=True)
    stored = [store_document(settings, workspace, "input.xlsx", content) for content in contents]
    await insert_records(settings, configs=[config], documents=stored)
    return Seeded(config_id, {c: d.id for c, d in zip(contents, stored, strict=True)})


def _script(content: bytes) -> str:
    if content.startswith(b"sleep "):
        return f"import time; time.sleep({float(content.split()[1])})"
    if content == b"fail":
        return "raise SystemExit(3)"
    return "pass"


class ScriptRunner:
    """A stand-in for ``supervise_job`` with the same kill discipline: own session, SIGKILL to
    the whole group on cancellation and in ``finally``."""

    def __init__(self, *, careless: bool = False) -> None:
        self.started: list[str] = []
        # careless: ignores cancellation (never kills), like a runner with a bug; the
        # runtime's backstop must still make a stopped job's processes go away.
        self.careless = careless

    async def __call__(
        self, settings: Settings, job_dir: Path, *, on_event: Any, request: Any = None
    ) -> JobEnding:
        inputs = sorted((job_dir / "inputs").iterdir())
        content = inputs[0].read_bytes()
        self.started.append(job_dir.name)
        if content == b"events":
            for pass_name in ("detect", "map", "write"):
                await on_event("pass_finished", {"pass": pass_name})
        started = trio.current_time()
        pgid: list[int] = []

        async def kill(process: trio.Process) -> None:
            if self.careless:
                await process.wait()
            else:
                os.killpg(process.pid, signal.SIGKILL)

        try:
            with trio.move_on_after(settings.job_timeout_seconds) as deadline:
                async with trio.open_nursery() as nursery:
                    process: trio.Process = await nursery.start(
                        lambda task_status: trio.run_process(
                            [sys.executable, "-c", _script(content), f"{MARKER}{job_dir.name}"],
                            cwd=str(job_dir),
                            start_new_session=True,
                            check=False,
                            stdin=subprocess.DEVNULL,
                            deliver_cancel=kill,
                            task_status=task_status,
                        )
                    )
                    pgid.append(process.pid)
                    await process.wait()
        finally:
            if pgid and not self.careless:
                try:
                    os.killpg(pgid[0], signal.SIGKILL)
                except ProcessLookupError:
                    pass
        duration = trio.current_time() - started
        if deadline.cancelled_caught:
            return JobEnding(JobStatus.ERROR, "timed out", None, 9, "timeout", (), duration, "")
        code = process.returncode
        if code == 0:
            return JobEnding(JobStatus.SUCCESS, None, 0, None, None, ("test",), duration, "")
        return JobEnding(
            JobStatus.ERROR, f"exit code {code}", code, None, None, ("test",), duration, "boom"
        )


def processes_with(marker: str) -> list[int]:
    """Live, non-zombie processes whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read()
            with open(f"/proc/{entry}/stat", "rb") as handle:
                state = handle.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != b"Z":
            found.append(int(entry))
    return found


def processes_under(directory: Path) -> list[int]:
    from ade.runtime.leftovers import processes_in

    return processes_in(directory)


@pytest.fixture(autouse=True, scope="module")
def no_leaked_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the module: no process works in (or names) this session's temporary tree."""
    yield
    base = tmp_path_factory.getbasetemp()
    leaked = sorted(set(processes_under(base)) | set(processes_with(str(base))))
    for pid in leaked:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert leaked == [], f"processes left running: {leaked}"


async def wait_for_status(runtime: Any, workspace: str, job_id: str, status: JobStatus) -> None:
    """Poll the store (the recorder's writes land there first) until the job has ``status``."""
    with trio.fail_after(10):
        while (await runtime.get_job(workspace, job_id)).status is not status:
            await trio.sleep(0.01)


async def wait_for_process(job_id: str) -> list[int]:
    with trio.fail_after(10):
        while not (pids := processes_with(f"{MARKER}{job_id}")):
            await trio.sleep(0.01)
    return pids


async def publish(settings: Settings, tmp_path: Path, *, sleep: float = 0) -> tuple[str, str]:
    """Prepare a tiny config (optionally one that sleeps while being imported) and store one
    small workbook; returns (config id, document id)."""
    from support.jobs import SAMPLE_ROWS, store_document, write_package, write_workbook

    extra = f"import time\ntime.sleep({sleep})\n" if sleep else ""
    package = write_package(tmp_path / f"package-{sleep}", name_module_extra=extra)
    build = await trio.to_thread.run_sync(prepare_config, package, settings.venvs_dir)
    data = write_workbook(tmp_path / "input.xlsx", SAMPLE_ROWS)
    document = store_document(settings, "ws", "input.xlsx", data)
    config = ConfigVersion(build.config_id, "ws", "tiny", "1", build.content_hash, T0)
    await insert_records(settings, configs=[config], documents=[document])
    return build.config_id, document.id
