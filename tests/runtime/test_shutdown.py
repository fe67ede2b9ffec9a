"""Graceful shutdown: stop admitting, let running jobs finish within the grace period, then
kill them and record them interrupted; queued jobs stay queued for the next start."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
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

from ade.models import JobStatus
from ade.runtime import SHUTDOWN_MESSAGE, ShuttingDown, open_runtime


async def test_running_jobs_finish_within_the_grace_period_and_queued_ones_wait(
    tmp_path: Path,
) -> None:
    settings = make_settings(
        tmp_path / "data", max_concurrency=1, queue_size=5, shutdown_grace_seconds=10
    )
    seeded = await seed(settings, [b"sleep 0.5", b"ok"])
    async with open_runtime(settings, runner=ScriptRunner()) as runtime:
        running = await seeded.submit(runtime, b"sleep 0.5")
        queued = [await seeded.submit(runtime, b"ok") for _ in range(2)]
        await wait_for_status(runtime, "ws", running.id, JobStatus.RUNNING)
        store = runtime.store
        with trio.fail_after(5):
            await runtime.drain()
        assert (await runtime.get_job("ws", running.id)).status is JobStatus.SUCCESS
        for job in queued:
            assert (await store.get_job(job.id)).status is JobStatus.QUEUED  # type: ignore[union-attr]
        with pytest.raises(ShuttingDown):
            await seeded.submit(runtime, b"ok")
        assert runtime.statistics().accepting is False

    # The next start runs what was left queued, in order.
    runner = ScriptRunner()
    async with open_runtime(settings, runner=runner) as runtime:
        for job in queued:
            assert (await runtime.wait("ws", job.id)).status is JobStatus.SUCCESS
    assert runner.started == [job.id for job in queued]


async def test_jobs_that_outlast_the_grace_period_are_killed_and_marked_interrupted(
    tmp_path: Path,
) -> None:
    settings = make_settings(
        tmp_path / "data", max_concurrency=2, queue_size=5, shutdown_grace_seconds=0.3
    )
    seeded = await seed(settings, [b"sleep 60", b"ok"])
    async with open_runtime(settings, runner=ScriptRunner()) as runtime:
        slow = [await seeded.submit(runtime, b"sleep 60") for _ in range(2)]
        for job in slow:
            await wait_for_status(runtime, "ws", job.id, JobStatus.RUNNING)
            await wait_for_process(job.id)
        store = runtime.store
        started = trio.current_time()
        # Leaving the block drains.
    assert trio.current_time() - started < 3
    for job in slow:
        assert processes_with(f"{MARKER}{job.id}") == []
    async with open_runtime(settings, runner=ScriptRunner()) as runtime:
        store = runtime.store
        for job in slow:
            final = await store.get_job(job.id)
            assert final is not None
            assert (final.status, final.error_message, final.limit) == (
                JobStatus.ERROR,
                SHUTDOWN_MESSAGE,
                "shutdown",
            )
            events = await runtime.read_events("ws", job.id)
            assert [e.type for e in events] == ["enqueue", "start", "error"]
            assert events[-1].detail["stopped_by"] == "shutdown"


async def test_a_cancelled_host_still_drains_and_refuses_work_meanwhile(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "data", max_concurrency=1, queue_size=5, shutdown_grace_seconds=0.5
    )
    seeded = await seed(settings, [b"sleep 60", b"ok"])
    refusals: list[str] = []
    with trio.move_on_after(10) as outer:
        async with open_runtime(settings, runner=ScriptRunner()) as runtime:
            job = await seeded.submit(runtime, b"sleep 60")
            await wait_for_status(runtime, "ws", job.id, JobStatus.RUNNING)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(runtime.drain)
                await trio.sleep(0.05)
                try:
                    await seeded.submit(runtime, b"ok")
                except ShuttingDown as refused:
                    refusals.append(refused.code)
                # The host is cancelled (say, Ctrl+C) while the drain is under way.
                outer.cancel()
    assert refusals == ["shutting_down"]
    assert processes_with(f"{MARKER}{job.id}") == []
    async with open_runtime(settings, runner=ScriptRunner()) as runtime:
        final = await runtime.get_job("ws", job.id)
        assert (final.status, final.error_message) == (JobStatus.ERROR, SHUTDOWN_MESSAGE)


async def test_after_the_runtime_stops_calls_fail_fast_and_streams_end(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    seeded = await seed(settings, [b"ok"])
    async with open_runtime(settings, runner=ScriptRunner()) as runtime:
        live = runtime.subscribe("ws")
    with trio.fail_after(2):
        assert [e async for e in live] == []
        assert [e async for e in runtime.subscribe("ws")] == []
        with pytest.raises(ShuttingDown):
            await seeded.submit(runtime, b"ok")
        await runtime.drain()  # idempotent


async def test_an_error_in_the_callers_block_drains_and_propagates_unwrapped(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path / "data", shutdown_grace_seconds=0.2)
    seeded = await seed(settings, [b"sleep 60"])
    with pytest.raises(LookupError, match="caller's own bug"):
        async with open_runtime(settings, runner=ScriptRunner()) as runtime:
            job = await seeded.submit(runtime, b"sleep 60")
            await wait_for_process(job.id)
            raise LookupError("the caller's own bug")
    assert processes_with(f"{MARKER}{job.id}") == []
    async with open_runtime(settings, runner=ScriptRunner()) as runtime:
        final = await runtime.get_job("ws", job.id)
        assert (final.status, final.error_message) == (JobStatus.ERROR, SHUTDOWN_MESSAGE)
