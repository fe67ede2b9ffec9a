"""The Runtime facade over real actors, a real store, real job directories and real processes
(started by a stand-in runner; the engine is not involved here)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
import trio
import trio.testing
from support import make_settings
from support.actors import (  # noqa: F401 - the fixture is used by pytest
    MARKER,
    ScriptRunner,
    no_leaked_processes,
    processes_with,
    seed,
    wait_for_process,
    wait_for_status,
)

from ade.errors import BadRequest, Conflict, NotFound, QueueFull
from ade.models import JobStatus
from ade.runtime import CANCELLED_MESSAGE, DataDirLocked, StatusTotals, open_runtime
from ade.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", max_concurrency=1, queue_size=2)


def job_dirs(settings: Settings) -> list[str]:
    return sorted(os.listdir(settings.jobs_dir))


async def all_jobs(runtime, workspace: str = "ws") -> list:
    return await runtime.store.list_jobs(workspace, limit=100)


async def test_a_job_runs_and_its_events_are_logged_and_streamed_in_order(
    settings: Settings,
) -> None:
    seeded = await seed(settings, [b"events"])
    async with open_runtime(settings, runner=ScriptRunner()) as runtime:
        live = runtime.subscribe("ws")
        job = await seeded.submit(runtime, b"events")
        assert (job.status, job.attempt, job.retry_of) == (JobStatus.QUEUED, 1, None)
        final = await runtime.wait("ws", job.id)
        assert final.status is JobStatus.SUCCESS and final.error_message is None
        assert final.started_at is not None and final.finished_at is not None
        assert final.sandbox_layers == ("test",)
        logged = await runtime.read_events("ws", job.id)
        assert [(e.seq, e.type) for e in logged] == [
            (1, "enqueue"),
            (2, "start"),
            (3, "pass_finished"),
            (4, "pass_finished"),
            (5, "pass_finished"),
            (6, "finish"),
        ]
        assert [e.detail.get("pass") for e in logged[2:5]] == ["detect", "map", "write"]
        assert logged[-1].detail["status"] == "success"
        streamed = []
        with trio.fail_after(5):
            async for event in live:
                streamed.append(event)
                if event.type == "finish":
                    break
        assert streamed == logged
        assert [e.seq for e in await runtime.read_events("ws", job.id, after=4)] == [5, 6]
        layout = sorted(p.name for p in (settings.jobs_dir / job.id).iterdir())
        assert {"inputs", "run-request.json", ".venv", "events.ndjson"} <= set(layout)


async def test_queue_full_refusal_persists_nothing_and_hints_retry_after(
    settings: Settings,
) -> None:
    seeded = await seed(settings, [b"sleep 30", b"ok"])
    async with open_runtime(settings, runner=ScriptRunner()) as runtime:

        async def submit(content: bytes):
            return await seeded.submit(runtime, content)

        running = await submit(b"sleep 30")
        await wait_for_status(runtime, "ws", running.id, JobStatus.RUNNING)
        waiting = [await submit(b"ok"), await submit(b"ok")]
        before_rows = await all_jobs(runtime)
        before_dirs = job_dirs(settings)
        with pytest.raises(QueueFull) as refused:
            await submit(b"ok")
        assert refused.value.details == {"queued": 2, "capacity": 2, "retry_after_seconds": 1}
        assert await all_jobs(runtime) == before_rows and len(before_rows) == 3
        assert job_dirs(settings) == before_dirs == sorted([running.id, *(j.id for j in waiting)])
        stats = runtime.statistics()
        assert (stats.queued, stats.reserved, stats.running, stats.capacity) == (2, 0, 1, 2)
        assert stats.totals == StatusTotals(queued=2, running=1)
        assert stats.admission_refusals == 1  # /metrics: ade_admission_refusals_total
        # The slot is reserved before anything is looked up: under overload a submission is
        # refused without touching the store, even one that names ids that do not exist.
        with pytest.raises(QueueFull):
            await runtime.submit(
                workspace_id="ws", config_version_id="no-such-config", document_ids=["nope"]
            )
        assert runtime.statistics().reserved == 0
        assert runtime.statistics().admission_refusals == 2
        await runtime.cancel("ws", running.id)
        for job in waiting:
            assert (await runtime.wait("ws", job.id)).status is JobStatus.SUCCESS
        # With room again, the same bad submission names what is wrong and leaves no slot taken.
        with pytest.raises(NotFound):
            await runtime.submit(
                workspace_id="ws", config_version_id="no-such-config", document_ids=["nope"]
            )
        await trio.testing.wait_all_tasks_blocked()  # the release is a message to the dispatcher
        assert runtime.statistics().reserved == 0


async def test_jobs_start_in_submission_order(settings: Settings) -> None:
    seeded = await seed(settings, [b"sleep 0.3", b"ok"])
    runner = ScriptRunner()
    async with open_runtime(settings, runner=runner) as runtime:
        first = await seeded.submit(runtime, b"sleep 0.3")
        others = [await seeded.submit(runtime, b"ok") for _ in range(2)]
        finals = [await runtime.wait("ws", j.id) for j in (first, *others)]
    assert runner.started == [first.id, *(j.id for j in others)]
    starts = [f.started_at for f in finals]
    assert starts == sorted(starts)
    assert all(f.status is JobStatus.SUCCESS for f in finals)


async def test_bad_submissions_name_what_is_wrong_and_leave_nothing(settings: Settings) -> None:
    seeded = await seed(settings, [b"ok"])
    elsewhere = await seed(settings, [b"ok"], workspace="other")
    async with open_runtime(settings, runner=ScriptRunner()) as runtime:
        doc = seeded.doc(b"ok")
        cases = [
            (
                dict(config_version_id="cfg-nope", document_ids=[doc]),
                NotFound,
                "config version cfg-nope",
            ),
            (
                dict(config_version_id=seeded.config_id, document_ids=["doc-nope"]),
                NotFound,
                "document doc-nope",
            ),
            (
                dict(config_version_id=seeded.config_id, document_ids=[elsewhere.doc(b"ok")]),
                NotFound,
                f"document {elsewhere.doc(b'ok')} not found in workspace ws",
            ),
            (
                dict(config_version_id=elsewhere.config_id, document_ids=[doc]),
                NotFound,
                f"config version {elsewhere.config_id} not found in workspace ws",
            ),
            (
                dict(config_version_id=seeded.config_id, document_ids=[]),
                BadRequest,
                "at least one document",
            ),
            (
                dict(config_version_id=seeded.config_id, document_ids=[doc, doc]),
                BadRequest,
                "listed twice",
            ),
            (
                dict(
                    config_version_id=seeded.config_id,
                    document_ids=[doc],
                    runtime_network_access=True,
                ),
                BadRequest,
                "does not allow runtime network access",
            ),
        ]
        for kwargs, error, message in cases:
            with pytest.raises(error, match=message):
                await runtime.submit(workspace_id="ws", **kwargs)
        assert await all_jobs(runtime) == [] and job_dirs(settings) == []
        assert runtime.statistics().reserved == 0


async def test_network_access_is_allowed_when_the_config_declares_it(settings: Settings) -> None:
    seeded = await seed(settings, [b"ok"], network=True)
    async with open_runtime(settings, runner=ScriptRunner()) as runtime:
        job = await seeded.submit(runtime, b"ok", runtime_network_access=True)
        assert job.runtime_network_access is True
        assert (await runtime.wait("ws", job.id)).status is JobStatus.SUCCESS


async def test_a_failure_while_building_the_job_directory_releases_the_slot(
    settings: Settings,
) -> None:
    seeded = await seed(settings, [b"ok", b"fail"])
    # The stored content of a document vanished: the job directory cannot be built.
    (settings.documents_dir / "ws" / seeded.doc(b"fail")).unlink()
    async with open_runtime(settings, runner=ScriptRunner()) as runtime:
        for _ in range(3):  # more attempts than the queue has slots: none may leak
            with pytest.raises(NotFound, match="content of document"):
                await seeded.submit(runtime, b"fail")
        assert await all_jobs(runtime) == [] and job_dirs(settings) == []
        assert runtime.statistics().reserved == 0
        job = await seeded.submit(runtime, b"ok")
        assert (await runtime.wait("ws", job.id)).status is JobStatus.SUCCESS


async def test_cancel_a_queued_job(settings: Settings) -> None:
    seeded = await seed(settings, [b"sleep 30", b"ok"])
    runner = ScriptRunner()
    async with open_runtime(settings, runner=runner) as runtime:
        running = await seeded.submit(runtime, b"sleep 30")
        queued = await seeded.submit(runtime, b"ok")
        cancelled = await runtime.cancel("ws", queued.id)
        assert (cancelled.status, cancelled.error_message, cancelled.limit) == (
            JobStatus.CANCELLED,
            CANCELLED_MESSAGE,
            "cancelled",
        )
        assert cancelled.started_at is None and cancelled.finished_at is not None
        events = await runtime.read_events("ws", queued.id)
        assert [(e.seq, e.type) for e in events] == [(1, "enqueue"), (2, "cancel")]
        assert runtime.statistics().queued == 0
        with pytest.raises(Conflict, match="already finished"):
            await runtime.cancel("ws", queued.id)
        await runtime.cancel("ws", running.id)
    assert queued.id not in runner.started


async def test_cancel_a_running_job_kills_its_process(settings: Settings) -> None:
    seeded = await seed(settings, [b"sleep 30"])
    async with open_runtime(settings, runner=ScriptRunner()) as runtime:
        job = await seeded.submit(runtime, b"sleep 30")
        await wait_for_status(runtime, "ws", job.id, JobStatus.RUNNING)
        assert len(await wait_for_process(job.id)) == 1
        with trio.fail_after(5):
            cancelled = await runtime.cancel("ws", job.id)
        assert processes_with(f"{MARKER}{job.id}") == []
        assert (cancelled.status, cancelled.limit) == (JobStatus.CANCELLED, "cancelled")
        events = await runtime.read_events("ws", job.id)
        assert [e.type for e in events] == ["enqueue", "start", "cancel"]
        assert events[-1].detail["stopped_by"] == "user"
        assert runtime.statistics().running == 0


async def test_retry_creates_a_new_attempt_with_the_same_inputs(settings: Settings) -> None:
    seeded = await seed(settings, [b"fail", b"sleep 30"])
    async with open_runtime(settings, runner=ScriptRunner()) as runtime:
        failed = await seeded.submit(runtime, b"fail")
        failed = await runtime.wait("ws", failed.id)
        assert (failed.status, failed.error_message, failed.exit_code) == (
            JobStatus.ERROR,
            "exit code 3",
            3,
        )
        again = await runtime.retry("ws", failed.id)
        assert (again.attempt, again.retry_of) == (2, failed.id)
        assert (again.config_version_id, again.document_ids) == (
            failed.config_version_id,
            failed.document_ids,
        )
        assert again.id != failed.id
        third = await runtime.retry("ws", (await runtime.wait("ws", again.id)).id)
        assert (third.attempt, third.retry_of) == (3, again.id)
        await runtime.wait("ws", third.id)
        original_events = await runtime.read_events("ws", failed.id)
        assert original_events[-1].type == "retry"
        assert original_events[-1].detail == {"retry_job_id": again.id}
        retry_events = await runtime.read_events("ws", again.id)
        assert retry_events[0].detail["retry_of"] == failed.id and retry_events[0].attempt == 2

        busy = await seeded.submit(runtime, b"sleep 30")
        with pytest.raises(Conflict, match="only a finished job can be retried"):
            await runtime.retry("ws", busy.id)
        await runtime.cancel("ws", busy.id)


async def test_workspaces_are_isolated(settings: Settings) -> None:
    seeded = await seed(settings, [b"ok"])
    async with open_runtime(settings, runner=ScriptRunner()) as runtime:
        elsewhere = runtime.subscribe("other")
        job = await seeded.submit(runtime, b"ok")
        await runtime.wait("ws", job.id)
        for call in (
            runtime.get_job,
            runtime.cancel,
            runtime.retry,
            runtime.wait,
            runtime.read_events,
        ):
            with pytest.raises(NotFound, match=f"job {job.id} not found in workspace other"):
                await call("other", job.id)
        elsewhere.close()
        assert [e async for e in elsewhere] == []


async def test_a_subscriber_that_never_reads_is_dropped_and_jobs_go_on(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", max_concurrency=2, queue_size=10)
    seeded = await seed(settings, [b"events"])
    async with open_runtime(settings, runner=ScriptRunner(), subscriber_buffer=2) as runtime:
        stuck = runtime.subscribe("ws")
        with trio.fail_after(10):
            jobs = [await seeded.submit(runtime, b"events") for _ in range(4)]
            finals = [await runtime.wait("ws", j.id) for j in jobs]
        assert all(f.status is JobStatus.SUCCESS for f in finals)
        assert stuck.dropped is True
        assert [e.seq async for e in stuck] == [1, 2]  # what fitted in its buffer, then the end
        stats = runtime.statistics()
        assert (stats.dropped_subscribers, stats.subscribers) == (1, 0)
        assert stats.totals == StatusTotals(success=4)
        assert stats.recent_mean_duration_seconds is not None


async def test_one_runtime_per_data_directory(settings: Settings) -> None:
    async with open_runtime(settings, runner=ScriptRunner()):
        with pytest.raises(DataDirLocked, match=f"pid {os.getpid()}"):
            async with open_runtime(settings, runner=ScriptRunner()):
                pass  # pragma: no cover


async def test_a_runner_that_raises_ends_the_job_in_error_and_the_worker_goes_on(
    settings: Settings,
) -> None:
    seeded = await seed(settings, [b"ok"])
    calls: list[str] = []

    async def broken_then_fine(settings: Settings, job_dir: Path, *, on_event, request=None):
        calls.append(job_dir.name)
        if len(calls) == 1:
            raise FileNotFoundError(2, "No such file or directory", "run-request.json")
        return await ScriptRunner()(settings, job_dir, on_event=on_event)

    async with open_runtime(settings, runner=broken_then_fine) as runtime:
        jobs = [await seeded.submit(runtime, b"ok") for _ in range(2)]
        first, second = [await runtime.wait("ws", j.id) for j in jobs]
        assert (first.status, first.error_message) == (
            JobStatus.ERROR,
            "worker could not start: FileNotFoundError",
        )
        error = (await runtime.read_events("ws", first.id))[-1]
        assert error.type == "error"
        assert error.detail["diagnostics"].startswith("FileNotFoundError: [Errno 2]")
        assert second.status is JobStatus.SUCCESS
        # The broken process was replaced once (/metrics: ade_worker_process_restarts_total).
        assert runtime.statistics().worker_restarts == 1


async def test_a_stopped_job_dies_even_if_its_runner_misses_the_kill(settings: Settings) -> None:
    seeded = await seed(settings, [b"sleep 30"])
    async with open_runtime(settings, runner=ScriptRunner(careless=True)) as runtime:
        job = await seeded.submit(runtime, b"sleep 30")
        await wait_for_status(runtime, "ws", job.id, JobStatus.RUNNING)
        await wait_for_process(job.id)
        with trio.fail_after(5):
            cancelled = await runtime.cancel("ws", job.id)
        assert cancelled.status is JobStatus.CANCELLED
        assert processes_with(f"{MARKER}{job.id}") == []


async def test_concurrent_submits_and_cancels_leave_no_job_behind(tmp_path: Path) -> None:
    """Submissions, cancels at every stage (while being submitted, queued, starting, running)
    and refusals racing each other: every accepted job ends, every slot is given back, and the
    statistics agree with the store."""
    settings = make_settings(tmp_path / "data", max_concurrency=2, queue_size=4)
    seeded = await seed(settings, [b"ok", b"sleep 0.2"])
    accepted: list[str] = []
    refused = 0
    cancel_outcomes: list[str] = []
    async with open_runtime(settings, runner=ScriptRunner()) as runtime:

        async def client(index: int) -> None:
            nonlocal refused
            content = b"ok" if index % 3 else b"sleep 0.2"
            await trio.sleep(index * 0.003)
            try:
                job = await seeded.submit(runtime, content)
            except QueueFull:
                refused += 1
                return
            accepted.append(job.id)
            if index % 2:
                await trio.sleep((index % 5) * 0.01)
                try:
                    cancelled = await runtime.cancel("ws", job.id)
                    cancel_outcomes.append(cancelled.status.value)
                except Conflict:
                    cancel_outcomes.append("too late")

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for index in range(40):
                    nursery.start_soon(client, index)
            finals = [await runtime.wait("ws", job_id) for job_id in accepted]
            # A job is recorded finished just before its worker reports back as idle.
            while runtime.statistics().idle_workers < 2:
                await trio.sleep(0.01)
        stats = runtime.statistics()
        counts = await runtime.store.count_by_status()
    assert refused > 0 and len(accepted) + refused == 40
    assert all(final.status.is_terminal for final in finals)
    assert set(cancel_outcomes) <= {"cancelled", "too late"} and "cancelled" in cancel_outcomes
    assert (stats.queued, stats.reserved, stats.running, stats.idle_workers) == (0, 0, 0, 2)
    assert stats.totals == StatusTotals(**{s.value: n for s, n in counts.items()})
    assert stats.totals.cancelled == cancel_outcomes.count("cancelled")
    assert sorted(job_dirs(settings)) == sorted(accepted)


async def test_a_failed_insert_removes_the_job_directory_and_releases_the_slot(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded = await seed(settings, [b"ok"])
    async with open_runtime(settings, runner=ScriptRunner()) as runtime:
        real_insert = runtime.store.insert_job

        async def disk_full(job) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(runtime.store, "insert_job", disk_full)
        for _ in range(3):
            with pytest.raises(sqlite3.OperationalError, match="disk is full"):
                await seeded.submit(runtime, b"ok")
        assert await all_jobs(runtime) == [] and job_dirs(settings) == []
        assert runtime.statistics().reserved == 0
        monkeypatch.setattr(runtime.store, "insert_job", real_insert)
        job = await seeded.submit(runtime, b"ok")
        assert (await runtime.wait("ws", job.id)).status is JobStatus.SUCCESS
        assert runtime.statistics().totals == StatusTotals(success=1)
