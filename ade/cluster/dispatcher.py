"""The dispatcher of a node in a cluster: claims queued jobs from PostgreSQL for idle workers.

Theory of operation
-------------------
On one machine the queue lives in the dispatcher's memory (:mod:`ade.runtime.dispatcher`). In a
cluster it lives in the database, so this dispatcher keeps only what is local: which workers
are idle and which job each busy worker runs. :class:`ClusterDispatcherState` decides (no I/O);
:func:`run_cluster_dispatcher` is the actor: it answers the same worker messages as the local
dispatcher and runs a claim loop beside them.

The claim loop sleeps until *kicked*: a worker became idle, an ``ade_jobs`` notification said a
job was queued somewhere, or the node's pulse ticked (the slow poll that covers a lost
notification). Then, while a worker is idle and the node is not draining, it claims the oldest
queued job of the cluster (``FOR UPDATE SKIP LOCKED``) and assigns it. An empty queue ends the
round. So no queued job waits while a worker is idle anywhere, beyond one pulse interval when a
notification is lost.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import trio

from ade.cluster.queue import ClusterQueue
from ade.errors import StoreUnavailable
from ade.models import JobRecord
from ade.runtime.dispatcher import DURATION_WINDOW, DispatcherStatistics
from ade.runtime.messages import (
    Assign,
    CancelDecision,
    CancelJob,
    StopAdmitting,
    WorkerFinished,
    WorkerIdle,
)

__all__ = ["ClusterDispatcherState", "run_cluster_dispatcher"]

logger = logging.getLogger(__name__)

# After a failed claim (the database did not answer) wait this long before the next attempt.
_CLAIM_RETRY_SECONDS = 1.0


class ClusterDispatcherState:
    """Idle workers and running jobs of this node; the queue is the cluster's. No I/O."""

    def __init__(self, *, capacity: int, workers: int) -> None:
        self.capacity = capacity
        self.workers = workers
        self._idle: deque[int] = deque()
        self._running: dict[str, int] = {}
        self._durations: deque[float] = deque(maxlen=DURATION_WINDOW)
        self._dispatching = True
        self.accepting = True
        self.stop_reason = ""
        # The cluster's queue as last seen (the pulse refreshes it), for statistics().
        self.cluster_queued = 0
        self.cluster_reserved = 0

    def worker_idle(self, worker_id: int) -> None:
        if worker_id in self._idle:
            raise ValueError(f"worker {worker_id} announced itself idle twice")
        self._idle.append(worker_id)

    def worker_finished(self, worker_id: int, job_id: str, duration_seconds: float) -> None:
        if self._running.get(job_id) != worker_id:
            raise ValueError(f"worker {worker_id} finished job {job_id} it was not running")
        del self._running[job_id]
        self._durations.append(max(0.0, duration_seconds))
        self.worker_idle(worker_id)

    def can_claim(self) -> bool:
        return self._dispatching and bool(self._idle)

    def claimed(self, job: JobRecord) -> Assign:
        worker_id = self._idle.popleft()
        self._running[job.id] = worker_id
        return Assign(worker_id, job)

    def cancel(self, job_id: str) -> CancelDecision:
        """Only jobs running here can be stopped here; the rest is the cluster's business."""
        return CancelDecision("running" if job_id in self._running else "unknown")

    def running_on(self, job_id: str) -> int | None:
        return self._running.get(job_id)

    @property
    def running_jobs(self) -> dict[str, int]:
        return dict(self._running)

    def stop_admitting(self, reason: str) -> None:
        self.accepting = False
        self._dispatching = False
        self.stop_reason = reason

    def recent_mean_duration(self) -> float | None:
        return sum(self._durations) / len(self._durations) if self._durations else None

    def statistics(self) -> DispatcherStatistics:
        return DispatcherStatistics(
            queued=self.cluster_queued,
            reserved=self.cluster_reserved,
            running=len(self._running),
            idle_workers=len(self._idle),
            capacity=self.capacity,
            workers=self.workers,
            accepting=self.accepting,
            recent_mean_duration_seconds=self.recent_mean_duration(),
        )


ClusterDispatcherMessage = WorkerIdle | WorkerFinished | CancelJob | StopAdmitting


class Kicks:
    """A level-triggered wake-up: kicks while nobody waits are not lost."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def kick(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


async def run_cluster_dispatcher(
    state: ClusterDispatcherState,
    inbox: trio.MemoryReceiveChannel[ClusterDispatcherMessage],
    *,
    queue: ClusterQueue,
    kicks: Kicks,
    assign: Callable[[Assign], None],
    cancel_running: Callable[[str, int], None],
    on_change: Callable[[], None] = lambda: None,
) -> None:
    """The actor. Runs until ``inbox`` is closed; ``kicks`` wakes the claim loop."""

    # Held while a claim is in flight: StopAdmitting waits for it, so once the drain has been
    # told "stopped" no job can appear on this node any more.
    claiming = trio.Lock()

    async def claim_loop() -> None:
        while True:
            await kicks.wait()
            while state.can_claim():
                async with claiming:
                    try:
                        claim = await queue.claim()
                    except StoreUnavailable as exc:
                        logger.warning("could not claim a job: %s", exc.message)
                        claim = None
                        kicks.kick()
                        await trio.sleep(_CLAIM_RETRY_SECONDS)
                        break
                    if claim is None:
                        break
                    # Even if draining began while the claim was in flight the job is ours
                    # (its row says running here): it runs, and the drain waits for it.
                    assign(state.claimed(claim.job))
                on_change()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(claim_loop)
        kicks.kick()
        async for message in inbox:
            if isinstance(message, WorkerIdle):
                state.worker_idle(message.worker_id)
                kicks.kick()
            elif isinstance(message, WorkerFinished):
                state.worker_finished(message.worker_id, message.job_id, message.duration_seconds)
                kicks.kick()
            elif isinstance(message, CancelJob):
                decision = state.cancel(message.job_id)
                worker_id = state.running_on(message.job_id)
                if worker_id is not None:
                    cancel_running(message.job_id, worker_id)
                message.reply.set(decision)
            elif isinstance(message, StopAdmitting):
                state.stop_admitting(message.reason)
                async with claiming:
                    pass
                message.reply.set(None)
            else:  # pragma: no cover - the channel is typed
                raise TypeError(f"cluster dispatcher got an unexpected message: {message!r}")
            on_change()
        nursery.cancel_scope.cancel()
