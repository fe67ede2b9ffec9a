"""Worker actors: take the next job, run it in its sandboxed subprocess, report how it ended.

Each worker has a :class:`WorkerSlot`, the handle through which the dispatcher stops the job
the worker is running (a user's cancel, or shutdown after the grace period). The slot's cancel
scope wraps the call to the job runner; the runner (``ade.runtime.supervisor.supervise_job``)
kills the job's whole process group before the cancellation propagates, so "cancel" means the
processes are gone by the time the ending is recorded.

The runner returns the job's :class:`~ade.runtime.ending.JobEnding`; the endings a worker makes
itself (:func:`~ade.runtime.ending.stopped_ending`, :func:`~ade.runtime.ending.crashed_ending`)
are plain code; :func:`run_worker_actor` is the loop around them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import attrs
import trio

from ade.layout import JobLayout
from ade.models import JobStatus
from ade.runtime.ending import JobEnding, crashed_ending, stopped_ending
from ade.runtime.leftovers import kill_leftover_processes
from ade.runtime.messages import (
    FinishJob,
    Progress,
    RunJob,
    StartJob,
    WorkerFinished,
    WorkerIdle,
    ask,
)
from ade.settings import Settings
from ade.worker.protocol import RunRequest

__all__ = [
    "BACKSTOP_SECONDS",
    "JobRunner",
    "WorkerSlot",
    "run_worker_actor",
]

logger = logging.getLogger(__name__)

EventCallback = Callable[[str, dict[str, Any]], Awaitable[None]]
# The runner kills a stopped job at once; if it has not returned this long after a stop, the
# backstop kills whatever still works in the job directory (and again at this interval).
BACKSTOP_SECONDS = 0.5


class JobRunner(Protocol):
    """Runs one job's subprocess to the end; the shape of ``supervise_job``."""

    async def __call__(
        self,
        settings: Settings,
        job_dir: Path,
        *,
        on_event: EventCallback,
        request: RunRequest | None = None,
    ) -> JobEnding:
        """Run the job to its end (``request`` is None for a job recovered after a restart)."""
        ...


class WorkerSlot:
    """What the dispatcher knows about one worker's current job, and how to stop it."""

    def __init__(self, worker_id: int) -> None:
        self.worker_id = worker_id
        self.job_id: str | None = None
        self.scope = trio.CancelScope()
        self.stopped = trio.Event()
        self.stop_reason: str | None = None
        # Worker processes this worker had to replace: the runner raised instead of returning
        # an ending, so the next job starts from a fresh process (/metrics reports the sum).
        self.restarts = 0

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


async def run_worker_actor(
    slot: WorkerSlot,
    inbox: trio.MemoryReceiveChannel[RunJob],
    *,
    settings: Settings,
    runner: JobRunner,
    dispatcher: trio.MemorySendChannel[Any],
    recorder: trio.MemorySendChannel[Any],
    worker_start: str | None = None,
) -> None:
    """One worker actor. Runs until ``inbox`` is closed; owns (and closes) its channel clones.
    ``worker_start`` is how the runner starts job processes ("fork" / "spawn"): a job stopped
    from outside still ran in one, and its record says which."""
    async with dispatcher, recorder:
        await dispatcher.send(WorkerIdle(slot.worker_id))
        async for message in inbox:
            job = message.job
            job_dir = JobLayout.of(settings.jobs_dir, job.id).root

            async def forward(type_: str, detail: dict[str, Any], job_id: str = job.id) -> None:
                await recorder.send(Progress(job_id, type_, detail))

            started = trio.current_time()
            ending: JobEnding | None = None
            try:
                # A job handed over already running was claimed from the cluster's queue.
                claimed = job if job.status is JobStatus.RUNNING else None
                await ask(recorder, StartJob(job.id, claimed=claimed))
            except Exception as exc:
                logger.exception("could not mark job %s running", job.id)
                ending = crashed_ending(exc, 0.0)
            if ending is None:
                async with trio.open_nursery() as guard:
                    guard.start_soon(_backstop, slot.stopped, job_dir)
                    with slot.scope:
                        try:
                            ending = await runner(
                                settings, job_dir, on_event=forward, request=message.request
                            )
                        except Exception as exc:
                            logger.exception("the runner of job %s raised", job.id)
                            slot.restarts += 1
                            ending = crashed_ending(exc, trio.current_time() - started)
                    guard.cancel_scope.cancel()
                duration = trio.current_time() - started
                if slot.scope.cancelled_caught:
                    ending = attrs.evolve(
                        stopped_ending(slot.stop_reason or "shutdown", duration),
                        worker_start=worker_start,
                    )
            assert ending is not None
            slot.clear()
            # If even this fails the store is broken: let it propagate (the runtime stops and
            # the next start's recovery marks the job interrupted).
            await ask(recorder, FinishJob(job.id, ending))
            await dispatcher.send(
                WorkerFinished(slot.worker_id, job.id, trio.current_time() - started)
            )
