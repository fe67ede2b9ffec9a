"""Worker decisions without processes: the slot's stop semantics and what gets recorded."""

from __future__ import annotations

import trio

from ade.models import JobStatus
from ade.runtime.ending import (
    CANCELLED_MESSAGE,
    SHUTDOWN_MESSAGE,
    JobEnding,
    cap_diagnostics,
    crashed_ending,
    stopped_ending,
)
from ade.runtime.workers import WorkerSlot


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


def test_the_endings_a_worker_makes_itself() -> None:
    # Diagnostics keep their end (where a traceback says what happened).
    assert cap_diagnostics("a" + "x" * 5000) == "x" * 2000
    assert cap_diagnostics("") is None
    assert stopped_ending("user", 1.0) == JobEnding(
        JobStatus.CANCELLED,
        message=CANCELLED_MESSAGE,
        limit="cancelled",
        duration_seconds=1.0,
        stopped_by="user",
    )
    assert stopped_ending("shutdown", 1.0) == JobEnding(
        JobStatus.ERROR,
        message=SHUTDOWN_MESSAGE,
        limit="shutdown",
        duration_seconds=1.0,
        stopped_by="shutdown",
    )
    crashed = crashed_ending(PermissionError(13, "Permission denied"), 0.1)
    assert crashed.message == "worker could not start: PermissionError"
    assert crashed.diagnostics == "PermissionError: [Errno 13] Permission denied"
