"""DispatcherState, driven without trio: admission, FIFO, retry-after, cancel, shutdown."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ade.errors import QueueFull
from ade.models import JobRecord, JobStatus
from ade.runtime.dispatcher import (
    DEFAULT_DURATION_SECONDS,
    DURATION_WINDOW,
    MAX_RETRY_AFTER_SECONDS,
    DispatcherState,
    ShuttingDown,
)
from ade.runtime.messages import Assign, CancelDecision, CancelQueued

T0 = datetime(2026, 1, 2, tzinfo=UTC)


def job(job_id: str) -> JobRecord:
    return JobRecord(job_id, "ws", JobStatus.QUEUED, "cfg", ("d",), False, 1, T0)


def admit(state: DispatcherState, job_id: str) -> list:
    state.reserve(job_id)
    return state.enqueue(job(job_id))


def test_jobs_start_in_fifo_order_on_the_longest_idle_worker() -> None:
    state = DispatcherState(capacity=10, workers=2)
    for name in ("a", "b", "c", "d"):
        assert admit(state, name) == []
    assert state.worker_idle(1) == [Assign(1, job("a"))]
    assert state.worker_idle(0) == [Assign(0, job("b"))]
    assert state.statistics().queued == 2 and state.statistics().running == 2
    assert state.worker_finished(0, "b", 2.0) == [Assign(0, job("c"))]
    assert state.worker_finished(1, "a", 4.0) == [Assign(1, job("d"))]
    assert state.worker_finished(1, "d", 1.0) == []
    assert state.worker_finished(0, "c", 1.0) == []
    assert admit(state, "e") == [Assign(1, job("e"))]  # worker 1 was idle first


def test_admission_counts_reservations_and_refuses_beyond_capacity() -> None:
    state = DispatcherState(capacity=2, workers=1)
    state.reserve("a")
    admit(state, "b")
    with pytest.raises(QueueFull) as refused:
        state.reserve("c")
    assert (refused.value.queued, refused.value.capacity) == (2, 2)
    assert refused.value.details == {"queued": 2, "capacity": 2, "retry_after_seconds": 1}
    state.release("a")
    state.reserve("c")  # the released slot is free again
    assert state.statistics().reserved == 1 and state.statistics().queued == 1


def test_enqueue_without_a_reservation_is_a_programming_error() -> None:
    state = DispatcherState(capacity=2, workers=1)
    with pytest.raises(ValueError, match="without a reservation"):
        state.enqueue(job("x"))
    state.reserve("x")
    with pytest.raises(ValueError, match="already known"):
        state.reserve("x")


def test_retry_after_follows_recent_durations_per_worker() -> None:
    state = DispatcherState(capacity=1, workers=2)
    assert state.retry_after_seconds() == int(DEFAULT_DURATION_SECONDS)
    assert state.recent_mean_duration() is None
    state.worker_idle(0)
    state.worker_idle(1)
    for name in ("a", "b"):
        admit(state, name)
    state.worker_finished(0, "a", 10.0)
    state.worker_finished(1, "b", 30.0)
    assert state.recent_mean_duration() == 20.0
    assert state.retry_after_seconds() == 10  # one slot frees every 20 s / 2 workers
    # Only the last DURATION_WINDOW jobs count.
    for i in range(DURATION_WINDOW):
        admit(state, f"fast{i}")
        state.worker_finished(state.running_on(f"fast{i}") or 0, f"fast{i}", 0.2)
    assert state.recent_mean_duration() == pytest.approx(0.2)
    assert state.retry_after_seconds() == 1
    slow = DispatcherState(capacity=1, workers=1)
    slow.worker_idle(0)
    admit(slow, "s")
    slow.worker_finished(0, "s", 10 * MAX_RETRY_AFTER_SECONDS)
    assert slow.retry_after_seconds() == MAX_RETRY_AFTER_SECONDS


def test_full_queue_refusal_carries_the_hint() -> None:
    state = DispatcherState(capacity=1, workers=1)
    state.worker_idle(0)
    admit(state, "a")
    state.worker_finished(0, "a", 7.5)
    admit(state, "b")  # running
    admit(state, "c")  # waiting: the queue is full
    with pytest.raises(QueueFull) as refused:
        state.reserve("d")
    assert refused.value.retry_after_seconds == 8


def test_cancel_decisions() -> None:
    state = DispatcherState(capacity=5, workers=1)
    state.worker_idle(0)
    admit(state, "running")
    admit(state, "queued")
    state.reserve("reserved")
    assert state.cancel("queued") == CancelDecision("queue", job("queued"))
    assert state.statistics().queued == 0
    assert state.cancel("running") == CancelDecision("running")
    assert state.cancel("reserved") == CancelDecision("reserved")
    assert state.cancel("elsewhere") == CancelDecision("unknown")
    # A job cancelled while it was being submitted never reaches the queue.
    assert state.enqueue(job("reserved")) == [CancelQueued(job("reserved"))]
    assert state.statistics().queued == 0 and state.statistics().reserved == 0


def test_recovered_jobs_keep_their_order_and_may_exceed_capacity() -> None:
    state = DispatcherState(capacity=2, workers=1)
    recovered = [job(f"r{i}") for i in range(4)]
    assert state.recover(recovered) == []
    assert [j.id for j in state.queued_jobs()] == ["r0", "r1", "r2", "r3"]
    with pytest.raises(QueueFull):
        state.reserve("new")
    assert state.worker_idle(0) == [Assign(0, recovered[0])]


def test_stop_admitting_refuses_new_jobs_and_stops_starting_queued_ones() -> None:
    state = DispatcherState(capacity=5, workers=1)
    state.reserve("in-flight")
    admit(state, "queued")
    state.stop_admitting("shutdown")
    with pytest.raises(ShuttingDown, match="shutting down"):
        state.reserve("late")
    assert state.enqueue(job("in-flight")) == []  # a submission in flight still lands
    assert state.worker_idle(0) == []
    assert [j.id for j in state.queued_jobs()] == ["queued", "in-flight"]
    assert state.statistics().accepting is False


def test_worker_bookkeeping_errors_are_loud() -> None:
    state = DispatcherState(capacity=5, workers=1)
    state.worker_idle(0)
    with pytest.raises(ValueError, match="idle twice"):
        state.worker_idle(0)
    with pytest.raises(ValueError, match="was not running"):
        state.worker_finished(0, "ghost", 1.0)
    with pytest.raises(ValueError):
        DispatcherState(capacity=0, workers=1)
