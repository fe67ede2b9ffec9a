"""Worker actors: take the next job, run it in its sandboxed subprocess, report how it ended.

Each worker has a :class:`WorkerSlot`, the handle through which the dispatcher stops the job
the worker is running (a user's cancel, or shutdown after the grace period). The slot's cancel
scope wraps the call to the job runner; the runner (``ade.runtime.supervisor.supervise_job``)
kills the job's whole process group before the cancellation propagates, so "cancel" means the
processes are gone by the time the outcome is recorded.

The decision of what to record (:func:`result_from_outcome`, :func:`stopped_result`,
:func:`crashed_result`) is plain code; :func:`run_worker` is the loop around it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import trio

from ade.models import JobStatus
from ade.runtime.leftovers import kill_leftover_processes
from ade.runtime.messages import (
    FinishJob,
    JobResult,
    Progress,
    Reply,
    RunJob,
    StartJob,
    WorkerFinished,
    WorkerIdle,
)
from ade.runtime.recorder import CANCELLED_MESSAGE, SHUTDOWN_MESSAGE
from ade.settings import Settings

__all__ = [
    "BACKSTOP_SECONDS",
    "JobRunner",
    "WorkerSlot",
    "crashed_result",
    "result_from_outcome",
    "run_worker",
    "stopped_result",
]

logger = logging.getLogger(__name__)

EventCallback = Callable[[str, dict[str, Any]], Awaitable[None]]
# Diagnostics are for operators; keep them short enough to sit in one events.ndjson line.
_MAX_DIAGNOSTICS = 2000
# The runner kills a stopped job at once; if it has not returned this long after a stop, the
# backstop kills whatever still works in the job directory (and again at this interval).
BACKSTOP_SECONDS = 0.5


class JobRunner(Protocol):
    """Runs one job's subprocess to the end; the shape of ``supervise_job``."""

    async def __call__(self, settings: Settings, job_dir: Path, *, on_event: EventCallback) -> Any:
        """Returns an outcome with ``status`` ("success" | "error"), ``message``, ``exit_code``,
        ``exit_signal``, ``limit``, ``sandbox_layers``, ``duration_seconds``, ``diagnostics``."""
        ...


class WorkerSlot:
    """What the dispatcher knows about one worker's current job, and how to stop it."""

    def __init__(self, worker_id: int) -> None:
        self.worker_id = worker_id
        self.job_id: str | None = None
        self.scope = trio.CancelScope()
        self.stopped = trio.Event()
        self.stop_reason: str | None = None

    def assign(self, job_id: str) -> None:
        # A fresh scope per job: a scope can be entered once, and cancelling it before the
        # worker enters it (cancel right after dispatch) still takes effect on entry.
        self.job_id = job_id
        self.scope = trio.CancelScope()
        self.stopped = trio.Event()
        self.stop_reason = None

    def stop(self, job_id: str, reason: str) -> bool:
        """Stop ``job_id`` if this slot still runs it; the first reason wins."""
        if self.job_id != job_id:
            return False
        if self.stop_reason is None:
            self.stop_reason = reason
        self.scope.cancel()
        self.stopped.set()
        return True

    def clear(self) -> None:
        self.job_id = None
        self.stop_reason = None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def result_from_outcome(outcome: Any) -> JobResult:
    """Translate the runner's outcome into the recorder's vocabulary."""
    status = JobStatus(str(getattr(outcome.status, "value", outcome.status)))
    diagnostics = _text(getattr(outcome, "diagnostics", None))
    return JobResult(
        status=status,
        message=_text(outcome.message),
        exit_code=outcome.exit_code,
        exit_signal=outcome.exit_signal,
        limit=outcome.limit,
        sandbox_layers=tuple(outcome.sandbox_layers or ()),
        duration_seconds=float(outcome.duration_seconds or 0.0),
        diagnostics=diagnostics[-_MAX_DIAGNOSTICS:] if diagnostics else None,
    )


def stopped_result(reason: str, duration_seconds: float) -> JobResult:
    if reason == "user":
        return JobResult(
            JobStatus.CANCELLED,
            message=CANCELLED_MESSAGE,
            duration_seconds=duration_seconds,
            stopped_by="user",
        )
    return JobResult(
        JobStatus.ERROR,
        message=SHUTDOWN_MESSAGE,
        duration_seconds=duration_seconds,
        stopped_by="shutdown",
    )


def crashed_result(exc: Exception, duration_seconds: float) -> JobResult:
    """The runner itself raised (it could not even launch the job)."""
    return JobResult(
        JobStatus.ERROR,
        message=f"worker could not start: {type(exc).__name__}",
        duration_seconds=duration_seconds,
        diagnostics=f"{type(exc).__name__}: {exc}"[:_MAX_DIAGNOSTICS],
    )


async def _backstop(stopped: trio.Event, job_dir: Path) -> None:
    """Defence in depth for "a stopped job's processes are gone": should the runner miss its
    kill (say, a stop that lands while the process is being spawned), kill every process that
    works in the job directory until the runner returns."""
    await stopped.wait()
    while True:
        await trio.sleep(BACKSTOP_SECONDS)
        killed = await trio.to_thread.run_sync(kill_leftover_processes, job_dir)
        if killed:
            logger.warning(
                "backstop killed %d process(es) of stopped job %s", len(killed), job_dir.name
            )


async def _ask(channel: trio.MemorySendChannel[Any], message: Any) -> Any:
    reply: Reply[Any] = message.reply
    await channel.send(message)
    return await reply.wait()


async def run_worker(
    slot: WorkerSlot,
    inbox: trio.MemoryReceiveChannel[RunJob],
    *,
    settings: Settings,
    runner: JobRunner,
    dispatcher: trio.MemorySendChannel[Any],
    recorder: trio.MemorySendChannel[Any],
) -> None:
    """One worker actor. Runs until ``inbox`` is closed; owns (and closes) its channel clones."""
    async with dispatcher, recorder:
        await dispatcher.send(WorkerIdle(slot.worker_id))
        async for message in inbox:
            job = message.job
            job_dir = settings.jobs_dir / job.id

            async def forward(type_: str, detail: dict[str, Any], job_id: str = job.id) -> None:
                await recorder.send(Progress(job_id, type_, detail))

            started = trio.current_time()
            result: JobResult | None = None
            try:
                # A job handed over already running was claimed from the cluster's queue.
                claimed = job if job.status is JobStatus.RUNNING else None
                await _ask(recorder, StartJob(job.id, claimed=claimed))
            except Exception as exc:
                logger.exception("could not mark job %s running", job.id)
                result = crashed_result(exc, 0.0)
            if result is None:
                async with trio.open_nursery() as guard:
                    guard.start_soon(_backstop, slot.stopped, job_dir)
                    with slot.scope:
                        try:
                            outcome = await runner(settings, job_dir, on_event=forward)
                            result = result_from_outcome(outcome)
                        except Exception as exc:
                            logger.exception("the runner of job %s raised", job.id)
                            result = crashed_result(exc, trio.current_time() - started)
                    guard.cancel_scope.cancel()
                duration = trio.current_time() - started
                if slot.scope.cancelled_caught:
                    result = stopped_result(slot.stop_reason or "shutdown", duration)
            assert result is not None
            slot.clear()
            # If even this fails the store is broken: let it propagate (the runtime stops and
            # the next start's recovery marks the job interrupted).
            await _ask(recorder, FinishJob(job.id, result))
            await dispatcher.send(
                WorkerFinished(slot.worker_id, job.id, trio.current_time() - started)
            )
