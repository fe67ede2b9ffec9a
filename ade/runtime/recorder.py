"""The recorder: the only writer of job state and of every job's ``events.ndjson``.

Theory of operation
-------------------
:class:`RecorderState` decides; :func:`run_recorder` performs. For every message the state
produces a :class:`Plan` (the new job record, whether it is an insert, and the events with their
sequence numbers) without touching anything. The actor carries the plan out — store first, then
the events file, then the live subscribers — and only then ``commit``-s it to the state. A plan
whose I/O failed is simply not committed, so the state never runs ahead of the disk.

Why one writer: job state changes come from submitters, workers, cancels and recovery at the
same time. Funnelling them through one actor makes the status transitions a sequence, gives
each job's events gap-free ``seq`` numbers, and means appends to a file never interleave.

Ordering: a state change is stored before its event is written. If the service dies in between,
the store (which recovery trusts) is right and the log merely lacks that line; the reverse order
could log a ``finish`` for a job the store still calls ``running``.

Subscribers (:class:`EventHub`) get events with ``send_nowait`` into a bounded buffer; one that
is full is dropped on the spot. The recorder never waits for a reader.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import trio

from ade.errors import AdeError, Conflict, LeaseLost, NotFound
from ade.layout import JobLayout
from ade.models import JobEvent, JobRecord, JobStatus
from ade.outcome import issues_line, outcome_of
from ade.protocols import JobStore
from ade.runtime.ending import CANCELLED_MESSAGE, RESTART_MESSAGE, JobEnding, node_message
from ade.runtime.events import (
    LIFECYCLE_EVENT_TYPES,
    TERMINAL_EVENT_TYPES,
    append_events,
    repair_tail,
    scan_events,
)
from ade.runtime.messages import (
    AcceptJob,
    FinishJob,
    NoteRequeued,
    NoteRetry,
    Progress,
    RecordCancelled,
    RecordNodeLost,
    RecoverInterrupted,
    StartJob,
)
from ade.serde import utcnow
from ade.worker.protocol import Limit, is_event_type

__all__ = [
    "MAX_DETAIL_BYTES",
    "EventHub",
    "Plan",
    "RecorderState",
    "Subscription",
    "run_recorder",
]

logger = logging.getLogger(__name__)

# A worker-side event is untrusted (config code shares the worker's process): its detail is
# capped so a hostile or buggy config cannot bloat the log or the subscribers' buffers.
MAX_DETAIL_BYTES = 4096

_ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.ERROR}),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCESS, JobStatus.ERROR, JobStatus.CANCELLED}),
}
_TERMINAL_EVENT = {
    JobStatus.SUCCESS: "finish",
    JobStatus.ERROR: "error",
    JobStatus.CANCELLED: "cancel",
}


@attrs.frozen
class Plan:
    """What to write for one message. ``record`` is None when the job state does not change."""

    job_id: str
    record: JobRecord | None
    insert: bool
    events: tuple[JobEvent, ...]
    previous_status: JobStatus | None = None
    # Cluster: the job as its claim stored it (running on this node); nothing to write, but
    # telemetry counts its queue wait from it.
    claimed: JobRecord | None = None


class RecorderState:
    """Job state transitions and event numbering; no I/O.

    Active (non-terminal) jobs are cached with their last ``seq``; a job the state does not know
    (after a restart, or a terminal job getting a ``retry`` note) must be ``load``-ed first.
    """

    def __init__(
        self,
        *,
        totals: Mapping[JobStatus, int] | None = None,
        now: Callable[[], datetime] = utcnow,
        cluster: bool = False,
    ) -> None:
        self._now = now
        # In a cluster other nodes change jobs too: only the jobs this node claimed (and so
        # alone writes, by their lease) stay cached; any other job is read fresh for each
        # message and dropped after it (:meth:`release`), so no cached copy can go stale.
        self._cluster = cluster
        self._claimed: set[str] = set()
        self._jobs: dict[str, JobRecord] = {}
        self._seq: dict[str, int] = {}
        self._lost: set[str] = set()
        self._totals: dict[JobStatus, int] = dict.fromkeys(JobStatus, 0)
        if totals:
            self._totals.update(totals)

    # -- bookkeeping ---------------------------------------------------------------------------

    def knows(self, job_id: str) -> bool:
        return job_id in self._jobs

    def load(self, job: JobRecord, last_seq: int) -> None:
        self._jobs[job.id] = job
        self._seq[job.id] = last_seq

    def record(self, job_id: str) -> JobRecord:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise NotFound(f"job {job_id} is not loaded in the recorder") from None

    @property
    def totals(self) -> dict[JobStatus, int]:
        return dict(self._totals)

    @property
    def active_jobs(self) -> int:
        return len(self._jobs)

    def commit(self, plan: Plan) -> None:
        if plan.record is not None:
            self._jobs[plan.job_id] = plan.record
            if plan.insert:
                self._totals[plan.record.status] += 1
            elif plan.previous_status is not None and plan.previous_status != plan.record.status:
                self._totals[plan.previous_status] -= 1
                self._totals[plan.record.status] += 1
        if plan.events:
            self._seq[plan.job_id] = plan.events[-1].seq
        job = self._jobs.get(plan.job_id)
        if job is not None and job.status.is_terminal:
            # Terminal jobs leave the cache: memory stays bounded by the active jobs.
            del self._jobs[plan.job_id]
            self._seq.pop(plan.job_id, None)
            self._claimed.discard(plan.job_id)

    def release(self, job_id: str) -> None:
        """Cluster: after each message, drop a job this node does not run from the cache."""
        if self._cluster and job_id not in self._claimed:
            self._jobs.pop(job_id, None)
            self._seq.pop(job_id, None)

    def _event(
        self, job: JobRecord, type_: str, detail: dict[str, Any], offset: int = 1
    ) -> JobEvent:
        return JobEvent(
            seq=self._seq.get(job.id, 0) + offset,
            ts=self._now(),
            job_id=job.id,
            workspace_id=job.workspace_id,
            attempt=job.attempt,
            type=type_,
            detail=detail,
        )

    def _transition(self, job_id: str, to: JobStatus) -> JobRecord:
        job = self.record(job_id)
        if to not in _ALLOWED.get(job.status, frozenset()):
            raise Conflict(
                f"job {job_id} cannot go from {job.status.value} to {to.value}",
                {"job_id": job_id, "status": job.status.value},
            )
        return job

    # -- plans ---------------------------------------------------------------------------------

    def plan_accept(self, job: JobRecord, request_id: str | None = None) -> Plan:
        if job.id in self._jobs:
            raise Conflict(f"job {job.id} was already accepted")
        if job.status is not JobStatus.QUEUED:
            raise ValueError(f"a new job must be queued, not {job.status.value}")
        detail: dict[str, Any] = {
            "status": "queued",
            "config_version_id": job.config_version_id,
            "document_ids": list(job.document_ids),
            "runtime_network_access": job.runtime_network_access,
        }
        if job.retry_of is not None:
            detail["retry_of"] = job.retry_of
        if request_id is not None:
            detail["request_id"] = request_id
        event = JobEvent(
            seq=1,
            ts=self._now(),
            job_id=job.id,
            workspace_id=job.workspace_id,
            attempt=job.attempt,
            type="enqueue",
            detail=detail,
        )
        return Plan(job.id, job, True, (event,))

    def plan_start(self, job_id: str) -> Plan:
        job = self._transition(job_id, JobStatus.RUNNING)
        new = attrs.evolve(job, status=JobStatus.RUNNING, started_at=self._now())
        event = self._event(new, "start", {"status": "running"})
        return Plan(job_id, new, False, (event,), job.status)

    def plan_claimed_start(self, job: JobRecord, last_seq: int, node_id: str) -> Plan:
        """Cluster: the claim already stored ``job`` running on this node; only its start
        event (naming the node) remains to be written."""
        if job.status is not JobStatus.RUNNING:
            raise ValueError(f"a claimed job is running, not {job.status.value}")
        self.load(job, last_seq)
        self._claimed.add(job.id)
        event = self._event(job, "start", {"status": "running", "node": node_id})
        return Plan(job.id, None, False, (event,), claimed=job)

    def forget(self, job_id: str) -> None:
        """Drop a job whose lease was taken away (another node records its end): its later
        progress and its worker's result are ignored (:meth:`is_lost`)."""
        self._jobs.pop(job_id, None)
        self._seq.pop(job_id, None)
        self._claimed.discard(job_id)
        self._lost.add(job_id)

    def is_lost(self, job_id: str, *, final: bool = False) -> bool:
        """Was ``job_id`` forgotten after losing its lease? ``final`` (its worker's result)
        also clears the mark: nothing more will come for it."""
        if job_id not in self._lost:
            return False
        if final:
            self._lost.discard(job_id)
        return True

    def plan_progress(self, job_id: str, type_: str, detail: Mapping[str, Any]) -> Plan:
        job = self.record(job_id)
        if job.status is not JobStatus.RUNNING:
            raise Conflict(f"job {job_id} is {job.status.value}; progress ignored")
        name, clean = sanitize_progress(type_, detail)
        return Plan(job_id, None, False, (self._event(job, name, clean),))

    def plan_finish(self, job_id: str, ending: JobEnding) -> Plan:
        job = self._transition(job_id, ending.status)
        if not ending.status.is_terminal:
            raise ValueError(f"a job cannot finish as {ending.status.value}")
        new = attrs.evolve(
            job,
            status=ending.status,
            finished_at=self._now(),
            error_message=None if ending.status is JobStatus.SUCCESS else ending.message,
            exit_code=ending.exit_code,
            exit_signal=ending.exit_signal,
            limit=ending.limit,
            sandbox_layers=tuple(ending.sandbox_layers),
            summary=dict(ending.summary),
            worker_start=ending.worker_start,
        )
        detail: dict[str, Any] = {
            "status": ending.status.value,
            "duration_seconds": round(ending.duration_seconds, 3),
            "exit_code": ending.exit_code,
            "exit_signal": ending.exit_signal,
            "limit": ending.limit,
            "sandbox_layers": list(ending.sandbox_layers),
            "worker_start": ending.worker_start,
        }
        if new.error_message is not None:
            detail["message"] = new.error_message
        if ending.stopped_by is not None:
            detail["stopped_by"] = ending.stopped_by
        if ending.diagnostics:
            detail["diagnostics"] = ending.diagnostics
        if ending.summary:
            detail["summary"] = dict(ending.summary)
            # At a glance: clean / warnings / errors, and the issues in one line.
            detail["outcome"] = outcome_of(ending.summary)
            detail["issues"] = issues_line(ending.summary)
        event = self._event(new, _TERMINAL_EVENT[ending.status], detail)
        return Plan(job_id, new, False, (event,), job.status)

    def plan_cancel_queued(self, job_id: str) -> Plan:
        job = self.record(job_id)
        if job.status is not JobStatus.QUEUED:
            raise Conflict(f"job {job_id} is {job.status.value}, not queued")
        new = attrs.evolve(
            job,
            status=JobStatus.CANCELLED,
            finished_at=self._now(),
            error_message=CANCELLED_MESSAGE,
            limit=Limit.CANCELLED,
        )
        detail = {"status": "cancelled", "message": CANCELLED_MESSAGE, "stopped_by": "user"}
        return Plan(job_id, new, False, (self._event(new, "cancel", detail),), job.status)

    def plan_recover_interrupted(self, job_id: str) -> Plan:
        return self._interrupted(job_id, RESTART_MESSAGE, Limit.RESTART, {})

    def plan_node_lost(self, job_id: str, node_id: str) -> Plan:
        """Cluster: the job's node stopped heartbeating; another node records the ending."""
        return self._interrupted(job_id, node_message(node_id), Limit.NODE_LOST, {"node": node_id})

    def _interrupted(self, job_id: str, message: str, limit: str, extra: dict[str, Any]) -> Plan:
        job = self._transition(job_id, JobStatus.ERROR)
        new = attrs.evolve(
            job,
            status=JobStatus.ERROR,
            finished_at=self._now(),
            error_message=message,
            limit=limit,
        )
        recovery = self._event(
            new, "recovery", {"action": "interrupted", "was": job.status.value, **extra}, offset=1
        )
        error = self._event(
            new, "error", {"status": "error", "message": message, "limit": limit}, 2
        )
        return Plan(job_id, new, False, (recovery, error), job.status)

    def plan_requeued(self, job_id: str) -> Plan:
        job = self.record(job_id)
        if job.status is not JobStatus.QUEUED:
            raise Conflict(f"job {job_id} is {job.status.value}, not queued")
        return Plan(job_id, None, False, (self._event(job, "recovery", {"action": "requeued"}),))

    def plan_retry_note(self, job_id: str, retry_job_id: str) -> Plan:
        job = self.record(job_id)
        return Plan(
            job_id, None, False, (self._event(job, "retry", {"retry_job_id": retry_job_id}),)
        )


def sanitize_progress(type_: str, detail: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Make an untrusted worker event safe to log: a plain lowercase name that is not one of the
    lifecycle types, and a JSON detail of at most :data:`MAX_DETAIL_BYTES`."""
    if not is_event_type(type_):
        return "progress", {"invalid_event": True}
    name = "progress" if type_ in LIFECYCLE_EVENT_TYPES else type_
    try:
        encoded = json.dumps(dict(detail), separators=(",", ":"))
    except (TypeError, ValueError):
        return name, {"invalid_detail": True}
    if len(encoded) > MAX_DETAIL_BYTES:
        return name, {"detail_truncated": True, "detail_bytes": len(encoded)}
    clean: dict[str, Any] = json.loads(encoded)
    if name != type_:
        clean = {"event": type_, **clean}
    return name, clean


# -- subscribers --------------------------------------------------------------------------------


class Subscription:
    """Live events for one workspace (optionally one job). Implements
    :class:`ade.protocols.EventSubscription`.

    A job subscription ends by itself after that job's terminal event. A subscriber whose buffer
    is full when an event arrives is dropped: ``dropped`` becomes True, it still receives what
    was already buffered, then its iteration ends (the reader can replay the gap from
    ``events.ndjson`` using the last ``seq`` it saw).
    """

    def __init__(self, hub: EventHub, workspace_id: str, job_id: str | None, buffer: int) -> None:
        self.workspace_id = workspace_id
        self.job_id = job_id
        self.dropped = False
        self._hub = hub
        self._send, self._receive = trio.open_memory_channel[JobEvent](buffer)

    def matches(self, event: JobEvent) -> bool:
        return event.workspace_id == self.workspace_id and (
            self.job_id is None or event.job_id == self.job_id
        )

    def offer(self, event: JobEvent) -> bool:
        """Called by the hub; never blocks. Returns False once the subscription is finished."""
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped = True
            self._finish()
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._finish()
            return False
        if self.job_id is not None and event.type in TERMINAL_EVENT_TYPES:
            self._finish()
            return False
        return True

    def _finish(self) -> None:
        self._send.close()
        self._hub.discard(self)

    def close(self) -> None:
        """Stop receiving; a reader blocked in iteration finishes."""
        self._finish()
        self._receive.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> JobEvent:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None


class EventHub:
    """Fan-out to subscribers and wake-ups for callers waiting for a job to end."""

    def __init__(self, buffer: int) -> None:
        if buffer < 1:
            raise ValueError("subscriber buffer must be >= 1")
        self.buffer = buffer
        self._subscriptions: set[Subscription] = set()
        self._terminal_waiters: dict[str, trio.Event] = {}
        self.dropped_total = 0

    def subscribe(self, workspace_id: str, job_id: str | None = None) -> Subscription:
        subscription = Subscription(self, workspace_id, job_id, self.buffer)
        self._subscriptions.add(subscription)
        return subscription

    def discard(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def wants(self, workspace_id: str, job_id: str) -> bool:
        """Does anyone here listen for this job's events (a subscriber, or a caller waiting
        for its end)? The cluster's event relay only reads logs somebody wants."""
        if job_id in self._terminal_waiters:
            return True
        return any(
            s.workspace_id == workspace_id and s.job_id in (None, job_id)
            for s in self._subscriptions
        )

    def terminal_event(self, job_id: str) -> trio.Event:
        """An event set when ``job_id``'s terminal event is published. Register it *before*
        checking the store, so a job ending in between is not missed."""
        event = self._terminal_waiters.get(job_id)
        if event is None:
            event = self._terminal_waiters[job_id] = trio.Event()
        return event

    def publish(self, event: JobEvent) -> None:
        for subscription in list(self._subscriptions):
            if subscription.matches(event):
                was_dropped = subscription.dropped
                subscription.offer(event)
                if subscription.dropped and not was_dropped:
                    self.dropped_total += 1
                    logger.warning(
                        "dropped a slow event subscriber (workspace %s, job %s)",
                        subscription.workspace_id,
                        subscription.job_id or "*",
                    )
        if event.type in TERMINAL_EVENT_TYPES:
            waiter = self._terminal_waiters.pop(event.job_id, None)
            if waiter is not None:
                waiter.set()

    def close_all(self) -> None:
        for subscription in list(self._subscriptions):
            subscription._finish()
        for waiter in self._terminal_waiters.values():
            waiter.set()
        self._terminal_waiters.clear()


# -- the actor ----------------------------------------------------------------------------------

RecorderMessage = (
    AcceptJob
    | StartJob
    | Progress
    | FinishJob
    | RecordCancelled
    | RecoverInterrupted
    | RecordNodeLost
    | NoteRequeued
    | NoteRetry
)


def _load_log(path: Path) -> int:
    repair_tail(path)
    return scan_events(path).last_seq


async def run_recorder(
    state: RecorderState,
    inbox: trio.MemoryReceiveChannel[RecorderMessage],
    *,
    store: JobStore,
    hub: EventHub,
    jobs_dir: Path,
    announce: Callable[[Plan], Awaitable[None]] | None = None,
    node_id: str | None = None,
    fence: Callable[[str], Awaitable[None]] | None = None,
    observe: Callable[[Plan], None] | None = None,
) -> None:
    """The recorder actor. Runs until ``inbox`` is closed and drained.

    A failed write is answered to the sender (who decides what it means) and the recorder goes
    on with the next message; only a fire-and-forget ``Progress`` that fails is logged instead.
    Every state change is a compare-and-set on the status the plan started from, so in a
    cluster a change another node made first is refused (Conflict) instead of overwritten.
    ``announce`` (cluster) tells the other nodes about the events just written; a job whose
    lease was taken away (:class:`LeaseLost`) is dropped from the cache and its result logged
    and discarded: the node that fenced it records its end. ``fence(job_id)`` (cluster) is
    asked before events that change no row (progress), so such a node appends nothing either.
    ``observe(plan)`` is told of every plan carried out (log lines and counts,
    :class:`ade.telemetry.jobs.JobTelemetry`); it must not block.
    """

    def observed(plan: Plan) -> None:
        if observe is None:
            return
        try:
            observe(plan)
        except Exception:
            # Telemetry must never stop the one writer of job state.
            logger.exception("job telemetry failed for job %s", plan.job_id)

    async def ensure_loaded(job_id: str) -> None:
        if state.knows(job_id):
            return
        job = await store.get_job(job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        last_seq = await trio.to_thread.run_sync(_load_log, JobLayout.of(jobs_dir, job_id).events)
        state.load(job, last_seq)

    async def carry_out(plan: Plan) -> None:
        path = JobLayout.of(jobs_dir, plan.job_id).events
        if plan.insert:
            # A new job: the log line first, then the row (the commit point of a submission).
            # If the row fails the submitter removes the whole directory, log included.
            await trio.to_thread.run_sync(append_events, path, plan.events)
            assert plan.record is not None
            await store.insert_job(plan.record)
        else:
            if plan.record is not None:
                await store.update_job(plan.record, expected=plan.previous_status)
            elif fence is not None:
                await fence(plan.job_id)
            # From here the store holds the new state, so the state object must follow it
            # whatever happens to the log: a line that cannot be written is reported, not
            # allowed to split the two apart.
            try:
                await trio.to_thread.run_sync(append_events, path, plan.events)
            except OSError:
                logger.exception("could not append to %s", path)
        state.commit(plan)
        observed(plan)
        for event in plan.events:
            hub.publish(event)
        if announce is not None and plan.events:
            try:
                await announce(plan)
            except AdeError as exc:
                # The events are written; other nodes' subscribers catch up at the job's
                # next announcement or from the log.
                logger.warning("could not announce events of job %s: %s", plan.job_id, exc)

    async def requeued(jobs: tuple[JobRecord, ...]) -> None:
        paths = [JobLayout.of(jobs_dir, job.id).events for job in jobs]
        last_seqs = await trio.to_thread.run_sync(lambda: [_load_log(path) for path in paths])
        plans = []
        for job, last_seq in zip(jobs, last_seqs, strict=True):
            state.load(job, last_seq)
            plans.append(state.plan_requeued(job.id))

        def append_all() -> None:
            for path, plan in zip(paths, plans, strict=True):
                try:
                    append_events(path, plan.events)
                except OSError:
                    logger.exception("could not append to %s", path)

        await trio.to_thread.run_sync(append_all)
        for plan in plans:
            state.commit(plan)
            observed(plan)
            for event in plan.events:
                hub.publish(event)

    async def handle(message: RecorderMessage) -> Any:
        if isinstance(message, AcceptJob):
            plan = state.plan_accept(message.job, message.request_id)
            await carry_out(plan)
            return plan.record
        if isinstance(message, Progress | FinishJob) and state.is_lost(
            message.job_id, final=isinstance(message, FinishJob)
        ):
            return None  # another node took the job over and records its end
        if isinstance(message, Progress):
            await carry_out(state.plan_progress(message.job_id, message.type, message.detail))
            return None
        if isinstance(message, NoteRequeued):
            await requeued(message.jobs)
            return None
        if isinstance(message, StartJob) and message.claimed is not None:
            path = JobLayout.of(jobs_dir, message.job_id).events
            last_seq = await trio.to_thread.run_sync(_load_log, path)
            plan = state.plan_claimed_start(message.claimed, last_seq, node_id or "?")
            await carry_out(plan)
            return message.claimed
        await ensure_loaded(message.job_id)
        if isinstance(message, StartJob):
            plan = state.plan_start(message.job_id)
        elif isinstance(message, FinishJob):
            plan = state.plan_finish(message.job_id, message.ending)
        elif isinstance(message, RecordCancelled):
            plan = state.plan_cancel_queued(message.job_id)
        elif isinstance(message, RecoverInterrupted):
            plan = state.plan_recover_interrupted(message.job_id)
        elif isinstance(message, RecordNodeLost):
            plan = state.plan_node_lost(message.job_id, message.node_id)
        elif isinstance(message, NoteRetry):
            plan = state.plan_retry_note(message.job_id, message.retry_job_id)
        else:  # pragma: no cover - the channel is typed; a stray message is a programming error
            raise TypeError(f"recorder got an unexpected message: {message!r}")
        await carry_out(plan)
        if isinstance(message, NoteRetry):
            return None
        return plan.record

    async for message in inbox:
        try:
            try:
                result = await handle(message)
            finally:
                job_id = message.job.id if isinstance(message, AcceptJob) else None
                job_id = getattr(message, "job_id", job_id)
                if job_id is not None:
                    state.release(job_id)
        except LeaseLost as exc:
            job_id = getattr(message, "job_id", "?")
            state.forget(job_id)
            logger.warning("job %s: %s", job_id, exc.message)
            if isinstance(message, FinishJob):
                # The worker is done either way; the fencing node records the job's end.
                message.reply.set(None)
            elif not isinstance(message, Progress):
                message.reply.fail(exc)
            continue
        except Exception as exc:
            if isinstance(message, Progress):
                logger.exception("could not record a progress event of job %s", message.job_id)
            else:
                message.reply.fail(exc)
            continue
        if not isinstance(message, Progress):
            message.reply.set(result)
