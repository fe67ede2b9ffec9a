"""RecorderState (transitions, seq numbering, totals, untrusted progress) and the EventHub."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest
import trio
import trio.testing

from ade.errors import Conflict
from ade.models import JobEvent, JobRecord, JobStatus
from ade.runtime.ending import (
    CANCELLED_MESSAGE,
    RESTART_MESSAGE,
    SHUTDOWN_MESSAGE,
    JobEnding,
    stopped_ending,
)
from ade.runtime.recorder import (
    MAX_DETAIL_BYTES,
    EventHub,
    Plan,
    RecorderState,
    sanitize_progress,
)

T0 = datetime(2026, 1, 2, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def new_job(job_id: str = "job1", workspace: str = "ws") -> JobRecord:
    return JobRecord(job_id, workspace, JobStatus.QUEUED, "cfg", ("d1",), False, 1, T0)


def apply(state: RecorderState, plan: Plan) -> Plan:
    state.commit(plan)
    return plan


def test_a_job_life_numbers_events_from_one_without_gaps() -> None:
    state = RecorderState(now=Clock())
    accept = apply(state, state.plan_accept(new_job()))
    start = apply(state, state.plan_start("job1"))
    progress = apply(state, state.plan_progress("job1", "pass_finished", {"pass": "map"}))
    finish = apply(
        state,
        state.plan_finish(
            "job1",
            JobEnding(
                JobStatus.SUCCESS,
                exit_code=0,
                sandbox_layers=("rlimits",),
                summary={"rows_written": 3, "issue_count": 1},
            ),
        ),
    )
    events = [*accept.events, *start.events, *progress.events, *finish.events]
    assert [(e.seq, e.type) for e in events] == [
        (1, "enqueue"),
        (2, "start"),
        (3, "pass_finished"),
        (4, "finish"),
    ]
    assert all(e.job_id == "job1" and e.workspace_id == "ws" and e.attempt == 1 for e in events)
    assert accept.insert and accept.record == new_job()
    assert start.record is not None and start.record.status is JobStatus.RUNNING
    assert start.record.started_at == T0 + timedelta(seconds=2)
    assert finish.record is not None and finish.record.status is JobStatus.SUCCESS
    assert finish.record.error_message is None and finish.record.sandbox_layers == ("rlimits",)
    assert finish.events[0].detail["status"] == "success"
    # The engine's summary reaches the record and the finish event, unchanged.
    assert finish.record.summary == {"rows_written": 3, "issue_count": 1}
    assert finish.events[0].detail["summary"] == {"rows_written": 3, "issue_count": 1}
    # Terminal jobs leave the cache.
    assert not state.knows("job1")
    assert state.totals[JobStatus.SUCCESS] == 1 and state.totals[JobStatus.QUEUED] == 0


def test_invalid_transitions_are_conflicts() -> None:
    state = RecorderState(now=Clock())
    apply(state, state.plan_accept(new_job()))
    with pytest.raises(Conflict, match="cannot go from queued to success"):
        state.plan_finish("job1", JobEnding(JobStatus.SUCCESS))
    with pytest.raises(Conflict, match="progress ignored"):
        state.plan_progress("job1", "pass_started", {})
    with pytest.raises(Conflict, match="already accepted"):
        state.plan_accept(new_job())
    apply(state, state.plan_start("job1"))
    with pytest.raises(Conflict, match="cannot go from running to running"):
        state.plan_start("job1")
    with pytest.raises(Conflict, match="not queued"):
        state.plan_cancel_queued("job1")
    with pytest.raises(ValueError, match="must be queued"):
        state.plan_accept(attrs.evolve(new_job("job2"), status=JobStatus.RUNNING))
    # A job loaded in a terminal state (after a restart) cannot move on.
    state.load(attrs.evolve(new_job("old"), status=JobStatus.ERROR), last_seq=5)
    with pytest.raises(Conflict, match="from error to running"):
        state.plan_start("old")


def test_a_plan_that_is_not_committed_changes_nothing() -> None:
    state = RecorderState(now=Clock())
    apply(state, state.plan_accept(new_job()))
    state.plan_start("job1")  # its I/O "failed": never committed
    again = state.plan_start("job1")
    assert again.events[0].seq == 2
    assert state.record("job1").status is JobStatus.QUEUED


def test_cancel_restart_and_shutdown_endings() -> None:
    state = RecorderState(now=Clock(), totals={JobStatus.RUNNING: 1, JobStatus.QUEUED: 2})
    state.load(new_job("q"), last_seq=1)
    cancelled = apply(state, state.plan_cancel_queued("q"))
    assert cancelled.record is not None
    assert (cancelled.record.status, cancelled.record.error_message, cancelled.record.limit) == (
        JobStatus.CANCELLED,
        CANCELLED_MESSAGE,
        "cancelled",
    )
    assert [(e.seq, e.type) for e in cancelled.events] == [(2, "cancel")]

    state.load(attrs.evolve(new_job("r"), status=JobStatus.RUNNING), last_seq=7)
    recovered = apply(state, state.plan_recover_interrupted("r"))
    assert recovered.record is not None and recovered.record.error_message == RESTART_MESSAGE
    assert [(e.seq, e.type) for e in recovered.events] == [(8, "recovery"), (9, "error")]
    assert recovered.events[1].detail == {
        "status": "error",
        "message": RESTART_MESSAGE,
        "limit": "restart",
    }
    assert state.totals == {
        JobStatus.QUEUED: 1,
        JobStatus.RUNNING: 0,
        JobStatus.SUCCESS: 0,
        JobStatus.ERROR: 1,
        JobStatus.CANCELLED: 1,
    }

    apply(state, state.plan_accept(new_job("s")))
    apply(state, state.plan_start("s"))
    stopped = state.plan_finish(
        "s",
        stopped_ending("shutdown", 0.0),
    )
    assert stopped.record is not None and stopped.record.limit == "shutdown"
    assert stopped.record.error_message == SHUTDOWN_MESSAGE
    assert stopped.events[0].type == "error"
    assert stopped.events[0].detail["stopped_by"] == "shutdown"


def test_requeue_and_retry_notes_only_add_events() -> None:
    state = RecorderState(now=Clock())
    state.load(new_job("q"), last_seq=3)
    plan = state.plan_requeued("q")
    assert plan.record is None and [(e.seq, e.type) for e in plan.events] == [(4, "recovery")]
    assert plan.events[0].detail == {"action": "requeued"}
    state.load(attrs.evolve(new_job("done"), status=JobStatus.ERROR), last_seq=4)
    note = state.plan_retry_note("done", "job2")
    assert note.events[0].type == "retry" and note.events[0].detail == {"retry_job_id": "job2"}
    assert note.events[0].seq == 5


def test_worker_events_cannot_forge_lifecycle_events_or_bloat_the_log() -> None:
    assert sanitize_progress("pass_started", {"pass": "detect"}) == (
        "pass_started",
        {"pass": "detect"},
    )
    assert sanitize_progress("finish", {"status": "success"}) == (
        "progress",
        {"event": "finish", "status": "success"},
    )
    assert sanitize_progress("Bad Name!", {"x": 1}) == ("progress", {"invalid_event": True})
    name, detail = sanitize_progress("pass_finished", {"blob": "x" * (MAX_DETAIL_BYTES + 1)})
    assert name == "pass_finished" and detail["detail_truncated"] is True
    assert sanitize_progress("odd", {"x": object()}) == ("odd", {"invalid_detail": True})


def event(job_id: str, seq: int, type_: str = "progress", workspace: str = "ws") -> JobEvent:
    return JobEvent(seq, T0, job_id, workspace, 1, type_, {})


async def test_hub_fans_out_by_workspace_and_job_and_ends_job_streams_at_the_end() -> None:
    hub = EventHub(buffer=10)
    everything = hub.subscribe("ws")
    one_job = hub.subscribe("ws", "a")
    other_ws = hub.subscribe("other")
    for e in (event("a", 1), event("b", 1), event("a", 2, "finish"), event("a", 3, "retry")):
        hub.publish(e)
    hub.publish(event("x", 1, workspace="other"))
    assert [(e.job_id, e.seq) async for e in one_job] == [("a", 1), ("a", 2)]
    assert not one_job.dropped
    everything.close()
    assert [e.seq async for e in everything] == []
    other_ws.close()
    assert hub.subscribers == 0


async def test_a_slow_subscriber_is_dropped_without_blocking_the_publisher() -> None:
    hub = EventHub(buffer=3)
    slow = hub.subscribe("ws")
    fast = hub.subscribe("ws")
    received: list[int] = []
    async with trio.open_nursery() as nursery:

        async def reader() -> None:
            async for e in fast:
                received.append(e.seq)

        nursery.start_soon(reader)
        with trio.fail_after(2):
            for seq in range(1, 11):
                hub.publish(event("a", seq))  # synchronous: it cannot wait for anyone
                await trio.sleep(0)
        await trio.testing.wait_all_tasks_blocked()
        fast.close()
    assert received == list(range(1, 11))
    assert slow.dropped is True and hub.dropped_total == 1
    # The dropped reader gets what was buffered, then its iteration ends.
    assert [e.seq async for e in slow] == [1, 2, 3]


async def test_terminal_waiters_wake_on_the_terminal_event_or_on_close() -> None:
    hub = EventHub(buffer=1)
    ended = hub.terminal_event("a")
    assert hub.terminal_event("a") is ended
    hub.publish(event("a", 1, "start"))
    assert not ended.is_set()
    hub.publish(event("a", 2, "cancel"))
    assert ended.is_set()
    pending = hub.terminal_event("b")
    hub.close_all()
    assert pending.is_set()
