"""The vocabulary between the runtime's actors: small frozen attrs messages.

Messages travel over bounded ``trio`` memory channels. A message that needs an answer carries a
:class:`Reply`: a one-shot slot the receiving actor fills with a value or an exception and the
sender awaits. The slot is the only mutable thing a message holds, and it never travels further.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import attrs
import trio

from ade.models import JobRecord
from ade.runtime.ending import JobEnding
from ade.worker.protocol import RunRequest

__all__ = [
    "AcceptJob",
    "Assign",
    "CancelDecision",
    "CancelJob",
    "CancelQueued",
    "EnqueueJob",
    "FinishJob",
    "NoteRequeued",
    "NoteRetry",
    "Progress",
    "RecordCancelled",
    "RecordNodeLost",
    "RecoverInterrupted",
    "RecoverJobs",
    "ReleaseReservation",
    "Reply",
    "ReserveSlot",
    "RunJob",
    "StartJob",
    "StopAdmitting",
    "WorkerFinished",
    "WorkerIdle",
    "ask",
]

T = TypeVar("T")


class Reply(Generic[T]):
    """A one-shot answer: the actor calls :meth:`set` or :meth:`fail` once; the sender awaits
    :meth:`wait`. Why not a channel per request: a request gets exactly one answer, and an
    ``Event`` plus a slot is the cheapest honest way to say that."""

    __slots__ = ("_done", "_error", "_value")

    def __init__(self) -> None:
        self._done = trio.Event()
        self._value: T | None = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def set(self, value: T) -> None:
        if self._done.is_set():
            raise RuntimeError("reply already given")
        self._value = value
        self._done.set()

    def fail(self, error: BaseException) -> None:
        if self._done.is_set():
            raise RuntimeError("reply already given")
        self._error = error
        self._done.set()

    async def wait(self) -> T:
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


# -- to the dispatcher -------------------------------------------------------------------------


@attrs.frozen
class ReserveSlot:
    """Admission: hold a queue slot for ``job_id`` before anything is persisted."""

    job_id: str
    reply: Reply[None] = attrs.field(factory=Reply, eq=False, repr=False)


@attrs.frozen
class ReleaseReservation:
    """The submission failed after reserving; give the slot back."""

    job_id: str


@attrs.frozen
class EnqueueJob:
    """A reserved job is now persisted (row + job directory): put it in the FIFO queue.

    The reply is True when queued, False when a cancel arrived while it was being submitted
    (the submitter then records the cancellation)."""

    job: JobRecord
    reply: Reply[bool] = attrs.field(factory=Reply, eq=False, repr=False)


@attrs.frozen
class RecoverJobs:
    """Queued jobs found at start-up, oldest first; they bypass the capacity check."""

    jobs: tuple[JobRecord, ...]
    reply: Reply[None] = attrs.field(factory=Reply, eq=False, repr=False)


@attrs.frozen
class WorkerIdle:
    worker_id: int


@attrs.frozen
class WorkerFinished:
    """A worker recorded a job's end and is free again; ``duration_seconds`` feeds retry-after."""

    worker_id: int
    job_id: str
    duration_seconds: float


@attrs.frozen
class CancelJob:
    job_id: str
    reply: Reply[CancelDecision] = attrs.field(factory=Reply, eq=False, repr=False)


@attrs.frozen
class StopAdmitting:
    """Shutdown step 1: refuse new submissions and stop handing out queued jobs."""

    reason: str
    reply: Reply[None] = attrs.field(factory=Reply, eq=False, repr=False)


@attrs.frozen
class CancelDecision:
    """What the dispatcher did with a cancel request.

    ``where`` is ``"queue"`` (removed from the queue), ``"reserved"`` (still being submitted; it
    is cancelled the moment it would be enqueued), ``"running"`` (the worker's cancel scope was
    cancelled) or ``"unknown"`` (not queued or running here).
    """

    where: str
    job: JobRecord | None = None


# -- dispatcher actions (state -> actor) -------------------------------------------------------


@attrs.frozen
class Assign:
    worker_id: int
    job: JobRecord


@attrs.frozen
class CancelQueued:
    """A job left the queue because it was cancelled; the recorder must mark it."""

    job: JobRecord


# -- to a worker ------------------------------------------------------------------------------


@attrs.frozen
class RunJob:
    job: JobRecord
    # The run request admission wrote, handed over in memory; None for a job recovered from the
    # store after a restart (the supervisor then reads it from the job directory).
    request: RunRequest | None = None


# -- to the recorder ---------------------------------------------------------------------------


@attrs.frozen
class AcceptJob:
    """Persist a new queued job (the commit point of a submission) and write its enqueue event."""

    job: JobRecord
    reply: Reply[JobRecord] = attrs.field(factory=Reply, eq=False, repr=False)
    # The X-Request-Id of the HTTP request that submitted it (written into the enqueue event).
    request_id: str | None = None


@attrs.frozen
class StartJob:
    job_id: str
    # In a cluster the claim already marked the row running for this node: the recorder
    # takes this record as it is and writes the start event (no second state change).
    claimed: JobRecord | None = None
    reply: Reply[JobRecord] = attrs.field(factory=Reply, eq=False, repr=False)


@attrs.frozen
class Progress:
    """A worker-side event (pass boundaries). Fire-and-forget: the channel keeps the order."""

    job_id: str
    type: str
    detail: dict[str, Any]


@attrs.frozen
class FinishJob:
    job_id: str
    ending: JobEnding
    reply: Reply[JobRecord] = attrs.field(factory=Reply, eq=False, repr=False)


@attrs.frozen
class RecordCancelled:
    """A queued (never started) job was cancelled."""

    job_id: str
    reply: Reply[JobRecord] = attrs.field(factory=Reply, eq=False, repr=False)


@attrs.frozen
class RecoverInterrupted:
    """Start-up: a job found ``running`` belonged to a service that died; mark it error."""

    job_id: str
    reply: Reply[JobRecord] = attrs.field(factory=Reply, eq=False, repr=False)


@attrs.frozen
class RecordNodeLost:
    """Cluster: a job's node stopped heartbeating and this node fenced its lease; mark it
    error with a message naming the node."""

    job_id: str
    node_id: str
    reply: Reply[JobRecord] = attrs.field(factory=Reply, eq=False, repr=False)


@attrs.frozen
class NoteRequeued:
    """Start-up: jobs found ``queued`` are re-enqueued; write each a ``recovery`` event.

    One message for the whole batch: a restart with thousands of queued jobs should cost two
    trips to a worker thread, not thousands."""

    jobs: tuple[JobRecord, ...]
    reply: Reply[None] = attrs.field(factory=Reply, eq=False, repr=False)


@attrs.frozen
class NoteRetry:
    """Append a ``retry`` event to the original job, naming the job that retries it."""

    job_id: str
    retry_job_id: str
    reply: Reply[None] = attrs.field(factory=Reply, eq=False, repr=False)


async def ask(channel: trio.MemorySendChannel[Any], message: Any) -> Any:
    """Send a message that carries a :class:`Reply` and wait for the answer."""
    reply: Reply[Any] = message.reply
    await channel.send(message)
    return await reply.wait()
