"""Worker decisions without processes: the slot's stop semantics and what gets recorded."""

from __future__ import annotations

import trio

from ade.models import JobStatus
from ade.runtime.messages import JobResult
from ade.runtime.recorder import CANCELLED_MESSAGE, SHUTDOWN_MESSAGE
from ade.runtime.supervisor import JobOutcome
from ade.runtime.workers import (
    WorkerSlot,
    crashed_result,
    result_from_outcome,
    stopped_result,
)


async def test_a_slot_stops_only_its_current_job_and_the_first_reason_wins() -> None:
    slot = WorkerSlot(0)
    assert slot.stop("nobody", "user") is False
    slot.assign("a")
    assert slot.stop("b", "user") is False and not slot.scope.cancel_called
    assert slot.stop("a", "shutdown") is True
    assert slot.stop("a", "user") is True
    assert (slot.stop_reason, slot.scope.cancel_called, slot.stopped.is_set()) == (
        "shutdown",
        True,
        True,
    )
    slot.assign("c")  # a new job gets a fresh scope and no reason
    assert (slot.stop_reason, slot.scope.cancel_called, slot.stopped.is_set()) == (
        None,
        False,
        False,
    )
    slot.clear()
    assert slot.stop("c", "user") is False


async def test_a_stop_before_the_worker_enters_the_scope_still_takes_effect() -> None:
    slot = WorkerSlot(0)
    slot.assign("a")
    slot.stop("a", "user")
    with slot.scope:
        await trio.sleep(10)
    assert slot.scope.cancelled_caught


def test_outcomes_are_translated_for_the_recorder() -> None:
    outcome = JobOutcome(
        status=JobStatus.ERROR,
        message="CPU limit of 2 s exceeded",
        exit_code=None,
        exit_signal=24,
        limit="cpu",
        sandbox_layers=("rlimits", "seccomp"),
        duration_seconds=2.5,
        diagnostics="x" * 5000,
    )
    result = result_from_outcome(outcome)
    assert result == JobResult(
        JobStatus.ERROR,
        message="CPU limit of 2 s exceeded",
        exit_signal=24,
        limit="cpu",
        sandbox_layers=("rlimits", "seccomp"),
        duration_seconds=2.5,
        diagnostics="x" * 2000,
    )
    assert stopped_result("user", 1.0) == JobResult(
        JobStatus.CANCELLED, message=CANCELLED_MESSAGE, duration_seconds=1.0, stopped_by="user"
    )
    assert stopped_result("shutdown", 1.0) == JobResult(
        JobStatus.ERROR, message=SHUTDOWN_MESSAGE, duration_seconds=1.0, stopped_by="shutdown"
    )
    crashed = crashed_result(PermissionError(13, "Permission denied"), 0.1)
    assert crashed.message == "worker could not start: PermissionError"
    assert crashed.diagnostics == "PermissionError: [Errno 13] Permission denied"
