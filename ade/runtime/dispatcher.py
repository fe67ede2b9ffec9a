"""The dispatcher: admission, the FIFO queue, and handing jobs to idle workers.

Theory of operation
-------------------
:class:`DispatcherState` makes every decision and does no I/O; :func:`run_dispatcher` is the
async loop that feeds it messages and carries out the actions it returns.

Admission is two-phase so that a refusal leaves nothing behind. A submission first *reserves* a
slot by job id (``reserve``): the job counts as waiting from that moment, before any row or file
exists. Only when the store row and the job directory exist does the submitter ``enqueue`` it;
if anything in between fails it ``release``-s the reservation. ``queue_size`` bounds
``queued + reserved``; jobs recovered at start-up bypass the bound (they were already accepted).

Workers announce themselves idle; whenever the queue and the idle set are both non-empty the
state pairs the oldest job with the longest-idle worker (``Assign``). The retry-after hint is
how long until the next slot is expected to free up: one job leaves the queue each time any
worker finishes, so about ``mean recent duration / workers``.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence

import attrs
import trio

from ade.errors import QueueFull, ShuttingDown
from ade.models import JobRecord
from ade.runtime.messages import (
    Assign,
    CancelDecision,
    CancelJob,
    CancelQueued,
    EnqueueJob,
    RecoverJobs,
    ReleaseReservation,
    ReserveSlot,
    StopAdmitting,
    WorkerFinished,
    WorkerIdle,
)

__all__ = [
    "DEFAULT_DURATION_SECONDS",
    "DURATION_WINDOW",
    "MAX_RETRY_AFTER_SECONDS",
    "DispatcherState",
    "DispatcherStatistics",
    "ShuttingDown",
    "run_dispatcher",
]

logger = logging.getLogger(__name__)

# How many recent job durations the retry-after hint and the statistics average over: enough to
# smooth one odd job out, few enough to follow a change in workload within a minute or two.
DURATION_WINDOW = 20
# Before any job has finished there is nothing to measure; a tiny job takes about a second.
DEFAULT_DURATION_SECONDS = 1.0
# A client told to wait an hour has effectively been told "no"; cap the hint there.
MAX_RETRY_AFTER_SECONDS = 3600


@attrs.frozen
class DispatcherStatistics:
    queued: int
    reserved: int
    running: int
    idle_workers: int
    capacity: int
    workers: int
    accepting: bool
    recent_mean_duration_seconds: float | None


Action = Assign | CancelQueued


class DispatcherState:
    """Admission and queue decisions, no I/O. Every method returns the actions to carry out."""

    def __init__(self, *, capacity: int, workers: int) -> None:
        if capacity < 1 or workers < 1:
            raise ValueError("capacity and workers must be >= 1")
        self.capacity = capacity
        self.workers = workers
        self._queue: OrderedDict[str, JobRecord] = OrderedDict()
        self._reserved: set[str] = set()
        self._cancel_on_enqueue: set[str] = set()
        self._idle: deque[int] = deque()
        self._running: dict[str, int] = {}  # job id -> worker id
        self._durations: deque[float] = deque(maxlen=DURATION_WINDOW)
        self._accepting = True
        self._dispatching = True
        self.stop_reason = ""

    # -- admission -----------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        return len(self._queue) + len(self._reserved)

    def reserve(self, job_id: str) -> None:
        """Hold a slot for ``job_id`` or raise :class:`QueueFull` / :class:`ShuttingDown`."""
        if not self._accepting:
            raise ShuttingDown(f"the service is shutting down ({self.stop_reason}); retry later")
        if job_id in self._reserved or job_id in self._queue or job_id in self._running:
            raise ValueError(f"job {job_id} is already known to the dispatcher")
        if self.waiting >= self.capacity:
            raise QueueFull(self.waiting, self.capacity, self.retry_after_seconds())
        self._reserved.add(job_id)

    def release(self, job_id: str) -> None:
        self._reserved.discard(job_id)
        self._cancel_on_enqueue.discard(job_id)

    def enqueue(self, job: JobRecord) -> list[Action]:
        if job.id not in self._reserved:
            raise ValueError(f"job {job.id} was enqueued without a reservation")
        self._reserved.discard(job.id)
        if job.id in self._cancel_on_enqueue:
            self._cancel_on_enqueue.discard(job.id)
            return [CancelQueued(job)]
        self._queue[job.id] = job
        return self._dispatch()

    def recover(self, jobs: Sequence[JobRecord]) -> list[Action]:
        """Re-enqueue jobs accepted before a restart, in the given (original) order."""
        for job in jobs:
            if job.id not in self._queue and job.id not in self._running:
                self._queue[job.id] = job
        return self._dispatch()

    def retry_after_seconds(self) -> int:
        mean = self.recent_mean_duration()
        per_slot = (mean if mean is not None else DEFAULT_DURATION_SECONDS) / self.workers
        return max(1, min(MAX_RETRY_AFTER_SECONDS, math.ceil(per_slot)))

    def recent_mean_duration(self) -> float | None:
        if not self._durations:
            return None
        return sum(self._durations) / len(self._durations)

    # -- workers -------------------------------------------------------------------------------

    def worker_idle(self, worker_id: int) -> list[Action]:
        if worker_id in self._idle:
            raise ValueError(f"worker {worker_id} announced itself idle twice")
        self._idle.append(worker_id)
        return self._dispatch()

    def worker_finished(self, worker_id: int, job_id: str, duration_seconds: float) -> list[Action]:
        if self._running.get(job_id) != worker_id:
            raise ValueError(f"worker {worker_id} finished job {job_id} it was not running")
        del self._running[job_id]
        self._durations.append(max(0.0, duration_seconds))
        return self.worker_idle(worker_id)

    def running_on(self, job_id: str) -> int | None:
        return self._running.get(job_id)

    @property
    def running_jobs(self) -> dict[str, int]:
        return dict(self._running)

    def queued_jobs(self) -> list[JobRecord]:
        return list(self._queue.values())

    # -- cancel and shutdown -------------------------------------------------------------------

    def cancel(self, job_id: str) -> CancelDecision:
        job = self._queue.pop(job_id, None)
        if job is not None:
            return CancelDecision("queue", job)
        if job_id in self._reserved:
            self._cancel_on_enqueue.add(job_id)
            return CancelDecision("reserved")
        if job_id in self._running:
            return CancelDecision("running")
        return CancelDecision("unknown")

    def stop_admitting(self, reason: str) -> None:
        """Refuse new submissions and stop starting queued jobs (they stay queued in the store
        for the next start). Reservations in flight may still complete their enqueue."""
        self._accepting = False
        self._dispatching = False
        self.stop_reason = reason

    @property
    def accepting(self) -> bool:
        return self._accepting

    def statistics(self) -> DispatcherStatistics:
        return DispatcherStatistics(
            queued=len(self._queue),
            reserved=len(self._reserved),
            running=len(self._running),
            idle_workers=len(self._idle),
            capacity=self.capacity,
            workers=self.workers,
            accepting=self._accepting,
            recent_mean_duration_seconds=self.recent_mean_duration(),
        )

    def _dispatch(self) -> list[Action]:
        actions: list[Action] = []
        while self._dispatching and self._queue and self._idle:
            _, job = self._queue.popitem(last=False)
            worker_id = self._idle.popleft()
            self._running[job.id] = worker_id
            actions.append(Assign(worker_id, job))
        return actions


DispatcherMessage = (
    ReserveSlot
    | ReleaseReservation
    | EnqueueJob
    | RecoverJobs
    | WorkerIdle
    | WorkerFinished
    | CancelJob
    | StopAdmitting
)


async def run_dispatcher(
    state: DispatcherState,
    inbox: trio.MemoryReceiveChannel[DispatcherMessage],
    *,
    assign: Callable[[Assign], None],
    cancel_running: Callable[[str, int], None],
    on_change: Callable[[], None] = lambda: None,
) -> None:
    """The dispatcher actor. Runs until ``inbox`` is closed.

    ``assign`` hands a job to a worker without blocking (each worker's inbox holds one job and
    the state only assigns to idle workers); ``cancel_running(job_id, worker_id)`` cancels the
    worker's scope; ``on_change`` is called after every message (shutdown waits on it). All are
    synchronous so the dispatcher never waits on another actor.
    """

    def carry_out(actions: list[Action]) -> bool:
        """Returns False when the job being enqueued was cancelled during its submission."""
        queued = True
        for action in actions:
            if isinstance(action, Assign):
                assign(action)
            else:
                queued = False
        return queued

    async for message in inbox:
        if isinstance(message, ReserveSlot):
            try:
                state.reserve(message.job_id)
            except (QueueFull, ShuttingDown, ValueError) as refusal:
                message.reply.fail(refusal)
            else:
                message.reply.set(None)
        elif isinstance(message, ReleaseReservation):
            state.release(message.job_id)
        elif isinstance(message, EnqueueJob):
            try:
                actions = state.enqueue(message.job)
            except ValueError as exc:
                message.reply.fail(exc)
            else:
                message.reply.set(carry_out(actions))
        elif isinstance(message, RecoverJobs):
            carry_out(state.recover(message.jobs))
            message.reply.set(None)
        elif isinstance(message, WorkerIdle):
            carry_out(state.worker_idle(message.worker_id))
        elif isinstance(message, WorkerFinished):
            carry_out(
                state.worker_finished(message.worker_id, message.job_id, message.duration_seconds)
            )
        elif isinstance(message, CancelJob):
            decision = state.cancel(message.job_id)
            if decision.where == "running":
                worker_id = state.running_on(message.job_id)
                assert worker_id is not None
                cancel_running(message.job_id, worker_id)
            message.reply.set(decision)
        elif isinstance(message, StopAdmitting):
            state.stop_admitting(message.reason)
            message.reply.set(None)
        else:  # pragma: no cover - the channel is typed; a stray message is a programming error
            raise TypeError(f"dispatcher got an unexpected message: {message!r}")
        on_change()
