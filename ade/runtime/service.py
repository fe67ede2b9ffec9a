"""The runtime facade: :class:`Runtime` (what the API calls) and :func:`open_runtime` (its life).

Theory of operation
-------------------
``Runtime`` is thin on purpose: a submission or retry goes to
:class:`~ade.runtime.admission.Admission` (the steps, checks and undoing), everything about the
actors — start, recovery, guarding, drain, stop — to :class:`~ade.runtime.lifecycle.Lifecycle`,
and reads go to the store and the job directories. Its methods are called from other tasks (HTTP
handlers); they reach the actors only through their bounded inboxes and
:class:`~ade.runtime.messages.Reply` slots.

``open_runtime`` takes the data directory's lock, removes half-built job directories, opens the
store, starts the lifecycle, and on leaving (normally, by an exception or cancellation) drains,
shielded and bounded by ``shutdown_grace_seconds`` plus a margin.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, contextmanager, nullcontext, suppress
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ade.errors import AdeError, Conflict, DataDirLocked, NotFound, QueueFull, ShuttingDown
from ade.ids import new_id
from ade.layout import JobLayout
from ade.models import ConfigVersion, Document, JobEvent, JobRecord, JobStatus
from ade.protocols import Store
from ade.retention import Retention, Sweeper
from ade.runtime.admission import Admission
from ade.runtime.events import read_events
from ade.runtime.lifecycle import Lifecycle
from ade.runtime.messages import (
    AcceptJob,
    CancelDecision,
    CancelJob,
    EnqueueJob,
    NoteRetry,
    RecordCancelled,
    ReleaseReservation,
    ReserveSlot,
)
from ade.runtime.recorder import Subscription
from ade.runtime.starters import JobStarter, make_starter
from ade.runtime.workers import JobRunner
from ade.serde import utcnow
from ade.settings import Settings
from ade.store import open_store
from ade.telemetry.context import current_request_id
from ade.telemetry.jobs import JobTelemetry
from ade.worker.protocol import RunRequest

if TYPE_CHECKING:
    # The cluster's modules (and psycopg) load only when ADE_DATABASE_URL is set.
    from ade.cluster.member import ClusterMember

__all__ = [
    "DEFAULT_INBOX_SIZE",
    "DEFAULT_SUBSCRIBER_BUFFER",
    "DataDirLocked",
    "Runtime",
    "RuntimeStatistics",
    "StatusTotals",
    "open_runtime",
]

logger = logging.getLogger(__name__)

# Inboxes are bounded so a flood (say, a config spamming progress events) slows its producer
# instead of growing memory. 64 is far above what a healthy actor ever has waiting.
DEFAULT_INBOX_SIZE = 64
# Per live subscriber. A job produces a dozen or two events; 256 lets a UI watching a busy
# workspace lag for a while before it is dropped (it then replays from events.ndjson).
DEFAULT_SUBSCRIBER_BUFFER = 256
# After the grace period, killing the remaining jobs and recording them takes well under a
# second; this margin bounds the shielded drain if something is wedged.
_DRAIN_MARGIN_SECONDS = 15.0
_LOCK_FILE = "runtime.lock"
# In a shared data directory another node may be building a job directory right now; one that
# has been half-built for this long belongs to a node that died mid-submission.
_SHARED_BUILD_AGE_SECONDS = 600.0


@attrs.frozen
class StatusTotals:
    queued: int = 0
    running: int = 0
    success: int = 0
    error: int = 0
    cancelled: int = 0


@attrs.frozen
class RuntimeStatistics:
    """A snapshot; nothing in it changes after it is returned."""

    queued: int
    reserved: int
    running: int
    capacity: int
    workers: int
    idle_workers: int
    accepting: bool
    totals: StatusTotals
    recent_mean_duration_seconds: float | None
    subscribers: int
    dropped_subscribers: int
    # Submissions refused because the queue was full (429) since start; worker processes
    # replaced after their runner failed (ade.runtime.workers.WorkerSlot.restarts).
    admission_refusals: int = 0
    worker_restarts: int = 0
    # How job processes start here ("fork" / "spawn", ADE_WORKER_START); for a runner given
    # by the caller, "custom".
    worker_start: str = "custom"
    # Fork templates (or spawn standbys) restarted after dying or misbehaving, and why the
    # last one was.
    template_restarts: int = 0
    last_template_restart: str | None = None
    # Processes confined ahead of a job that could not serve it (StarterStatistics.discarded).
    ahead_discards: int = 0
    last_ahead_discard: str | None = None


class Runtime:
    """Implements :class:`ade.protocols.JobService` plus ``statistics()`` and ``drain()``.

    Create it with :func:`open_runtime`; its methods may be called from any task of the same
    trio run while the ``async with`` block is open.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        runner: JobRunner,
        subscriber_buffer: int = DEFAULT_SUBSCRIBER_BUFFER,
        inbox_size: int = DEFAULT_INBOX_SIZE,
        member: ClusterMember | None = None,
        workers: int | None = None,
        make_starter: Callable[[], JobStarter] | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._member = member
        self.lifecycle = Lifecycle(
            settings,
            store,
            runner=runner,
            subscriber_buffer=subscriber_buffer,
            inbox_size=inbox_size,
            member=member,
            workers=workers,
            make_starter=make_starter,
        )
        self._hub = self.lifecycle.hub
        self._admission = Admission(_AdmissionSteps(self._store, self._settings, self.lifecycle))
        self._refusals = 0
        # The retention sweep (ADE_RETENTION_DAYS), started by open_runtime; None when off.
        self.sweeper: Sweeper | None = None

    # -- public surface ------------------------------------------------------------------------

    @property
    def member(self) -> ClusterMember | None:
        """This node's cluster membership (None on the embedded SQLite store)."""
        return self._member

    @property
    def store(self) -> Store:
        """The job store (read it freely; only the runtime writes job state)."""
        return self._store

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def telemetry(self) -> JobTelemetry:
        """Jobs finished by status and workspace, durations and queue waits (/metrics)."""
        return self.lifecycle.telemetry

    async def submit(
        self,
        *,
        workspace_id: str,
        config_version_id: str,
        document_ids: Sequence[str],
        runtime_network_access: bool = False,
        submitted_by: str | None = None,
    ) -> JobRecord:
        """Admit a new job and return its record (status ``queued``, or ``cancelled`` if a
        cancel overtook it). Refusals (:mod:`ade.runtime.admission`): BadRequest (no documents,
        one listed twice, too many; network access the config does not allow), NotFound (the
        config or documents, every missing one named), QueueFull or ShuttingDown; then nothing
        was persisted."""
        self._check_open()
        job = JobRecord(
            id=new_id(),
            workspace_id=workspace_id,
            status=JobStatus.QUEUED,
            config_version_id=config_version_id,
            document_ids=tuple(document_ids),
            runtime_network_access=runtime_network_access,
            attempt=1,
            created_at=utcnow(),
            submitted_by=submitted_by,
        )
        return await self._admit(job)

    async def retry(
        self, workspace_id: str, job_id: str, *, submitted_by: str | None = None
    ) -> JobRecord:
        """A new job with the same config and documents, ``attempt + 1`` and ``retry_of``.
        Only for finished jobs (else Conflict); QueueFull possible."""
        original = await self.get_job(workspace_id, job_id)
        if not original.status.is_terminal:
            raise Conflict(
                f"job {job_id} is {original.status.value}; only a finished job can be retried",
                {"job_id": job_id, "status": original.status.value},
            )
        job = JobRecord(
            id=new_id(),
            workspace_id=workspace_id,
            status=JobStatus.QUEUED,
            config_version_id=original.config_version_id,
            document_ids=original.document_ids,
            runtime_network_access=original.runtime_network_access,
            attempt=original.attempt + 1,
            created_at=utcnow(),
            retry_of=original.id,
            submitted_by=submitted_by,
        )
        return await self._admit(job)

    async def cancel(self, workspace_id: str, job_id: str) -> JobRecord:
        """Cancel a queued job (it leaves the queue) or a running one (its process group is
        killed); returns the cancelled record. Conflict if the job has already finished."""
        job = await self.get_job(workspace_id, job_id)
        if job.status.is_terminal:
            raise self._finished_conflict(job)
        ended = self._hub.terminal_event(job_id)
        # Shielded: once the dispatcher has taken a job out of the queue, recording it
        # cancelled must happen even if our caller gives up, or the job would stay "queued"
        # in the store with no queue holding it.
        life = self.lifecycle
        with trio.CancelScope(shield=True):
            decision: CancelDecision = await life.ask(life.dispatcher, CancelJob(job_id))
            if decision.where == "queue":
                life.requests.pop(job_id, None)
                return await life.ask(life.recorder, RecordCancelled(job_id))
        if decision.where == "unknown" and self._member is not None:
            return await self._cancel_in_cluster(job, ended)
        if decision.where in ("running", "reserved"):
            final = await self._wait_ended(job_id, ended)
            if final.status is JobStatus.CANCELLED:
                return final
            raise self._finished_conflict(final)
        current = await self.get_job(workspace_id, job_id)
        if current.status.is_terminal:
            raise self._finished_conflict(current)
        raise Conflict(
            f"job {job_id} is {current.status.value} but not in this runtime's queue "
            "(the service is starting or stopping); try again",
            {"job_id": job_id, "status": current.status.value},
        )

    async def _cancel_in_cluster(self, job: JobRecord, ended: trio.Event) -> JobRecord:
        """A job not running on this node: cancel it in the queue (a compare-and-set, so a
        node claiming it at the same moment wins or loses cleanly), else ask the node that
        runs it and wait for its cancel event (relayed here) or, failing that, the store."""
        assert self._member is not None
        with trio.CancelScope(shield=True):
            try:
                return await self.lifecycle.ask(self.lifecycle.recorder, RecordCancelled(job.id))
            except Conflict:
                pass  # no longer queued: claimed by a node, or finished
        node_id = await self._member.queue.request_cancel(job.id)
        if node_id is None:
            current = await self.get_job(job.workspace_id, job.id)
            raise self._finished_conflict(current)
        final = await self._wait_ended(job.id, ended)
        if final.status is JobStatus.CANCELLED:
            return final
        raise self._finished_conflict(final)

    def subscribe(self, workspace_id: str, job_id: str | None = None) -> Subscription:
        """Live events of a workspace (or one job). For a replay without gaps, subscribe
        first, then :meth:`read_events`, and skip live events with ``seq`` already seen.
        Once the runtime has stopped, a new subscription ends at once."""
        subscription = self._hub.subscribe(workspace_id, job_id)
        if self.lifecycle.stopped:
            subscription.close()
        return subscription

    async def get_job(self, workspace_id: str, job_id: str) -> JobRecord:
        """The job, or NotFound — also when it belongs to another workspace."""
        self._check_open()
        job = await self._store.get_job(job_id)
        if job is None or job.workspace_id != workspace_id:
            raise NotFound(
                f"job {job_id} not found in workspace {workspace_id}", {"job_id": job_id}
            )
        return job

    async def read_events(
        self, workspace_id: str, job_id: str, *, after: int = 0
    ) -> list[JobEvent]:
        """The job's ``events.ndjson`` from ``seq > after`` (a torn last line is skipped)."""
        await self.get_job(workspace_id, job_id)
        path = self.layout(job_id).events
        return await trio.to_thread.run_sync(lambda: read_events(path, after=after))

    def layout(self, job_id: str) -> JobLayout:
        """Where the files of ``job_id`` live (its artifact, output and events)."""
        return JobLayout.of(self._settings.jobs_dir, job_id)

    async def wait(self, workspace_id: str, job_id: str) -> JobRecord:
        """Wait until the job is finished and return its final record."""
        await self.get_job(workspace_id, job_id)
        return await self._wait_ended(job_id, self._hub.terminal_event(job_id))

    def statistics(self) -> RuntimeStatistics:
        life = self.lifecycle
        dispatcher = life.dispatcher_state.statistics()
        totals = life.recorder_state.totals if life.recorder_state is not None else {}
        if self._member is not None:
            totals = self._member.snapshot.totals  # the cluster's, as of the last pulse
        return RuntimeStatistics(
            queued=dispatcher.queued,
            reserved=dispatcher.reserved,
            running=dispatcher.running,
            capacity=dispatcher.capacity,
            workers=dispatcher.workers,
            idle_workers=dispatcher.idle_workers,
            accepting=dispatcher.accepting and not life.draining,
            totals=StatusTotals(**{status.value: totals.get(status, 0) for status in JobStatus}),
            recent_mean_duration_seconds=dispatcher.recent_mean_duration_seconds,
            subscribers=self._hub.subscribers,
            dropped_subscribers=self._hub.dropped_total,
            admission_refusals=self._refusals,
            worker_restarts=life.worker_restarts,
            **self._starter_statistics(),
        )

    def _starter_statistics(self) -> dict[str, Any]:
        starters = [starter.statistics() for starter in self.lifecycle.starters]
        if self.lifecycle.custom_runner:
            return {}
        restarted = [s for s in starters if s.last_restart_reason is not None]
        discarded = [s for s in starters if s.last_discard_reason is not None]
        return {
            "worker_start": self._settings.worker_start,
            "template_restarts": sum(s.restarts for s in starters),
            "last_template_restart": restarted[-1].last_restart_reason if restarted else None,
            "ahead_discards": sum(s.discarded for s in starters),
            "last_ahead_discard": discarded[-1].last_discard_reason if discarded else None,
        }

    async def drain(self, reason: str = "shutdown") -> None:
        """Graceful shutdown (:meth:`Lifecycle.drain`); idempotent, safe to call from a task
        that may be cancelled."""
        await self.lifecycle.drain(reason)

    # -- submission ----------------------------------------------------------------------------

    async def _admit(self, job: JobRecord) -> JobRecord:
        with self.lifecycle.submission():
            # Shielded: see Admission (a hung-up client must not leave half a job behind).
            with trio.CancelScope(shield=True):
                try:
                    return await self._admission.admit(job)
                except QueueFull:
                    self._refusals += 1
                    raise

    # -- helpers -------------------------------------------------------------------------------

    async def _wait_ended(self, job_id: str, ended: trio.Event) -> JobRecord:
        while True:
            job = await self._store.get_job(job_id)
            if job is None:
                raise NotFound(f"job {job_id} not found", {"job_id": job_id})
            if job.status.is_terminal:
                return job
            if self.lifecycle.stopped:
                raise ShuttingDown(f"the runtime stopped before job {job_id} finished")
            if self._member is None:
                await ended.wait()
            else:
                # The end is relayed from the node running the job; should that notification
                # be lost, the store says so at the next poll.
                with trio.move_on_after(self._member.poll_seconds):
                    await ended.wait()
            ended = self._hub.terminal_event(job_id)

    def _check_open(self) -> None:
        # While draining, reads still work and only admission is refused (in _admit).
        if self.lifecycle.stopped:
            raise ShuttingDown("the runtime has stopped")

    @staticmethod
    def _finished_conflict(job: JobRecord) -> Conflict:
        return Conflict(
            f"job {job.id} has already finished ({job.status.value})",
            {"job_id": job.id, "status": job.status.value},
        )


class _AdmissionSteps:
    """Admission's I/O (:class:`~ade.runtime.admission.AdmissionSteps`) over the store, the
    disk and the actors."""

    def __init__(self, store: Store, settings: Settings, lifecycle: Lifecycle) -> None:
        self._store = store
        self._settings = settings
        self._life = lifecycle

    async def reserve(self, job_id: str) -> None:
        member = self._life.member
        if member is not None:
            # The cluster's bound, in PostgreSQL (ade.cluster.queue: reserve-before-rows).
            await member.queue.reserve(job_id, self._settings.queue_size)
            return
        await self._life.ask(self._life.dispatcher, ReserveSlot(job_id))

    async def release(self, job_id: str) -> None:
        member = self._life.member
        if member is not None:
            try:
                await member.queue.release(job_id)
            except AdeError as exc:
                # The slot frees itself later (a stale reservation is forgotten by the pulse).
                logger.warning("could not release the reservation of %s: %s", job_id, exc)
            return
        with suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            # (closed only if the runtime is already broken; nothing to release then)
            await self._life.dispatcher.send(ReleaseReservation(job_id))

    async def config(self, workspace_id: str, config_id: str) -> ConfigVersion | None:
        return await self._store.get_config(workspace_id, config_id)

    async def document(self, workspace_id: str, document_id: str) -> Document | None:
        return await self._store.get_document(workspace_id, document_id)

    async def build(self, job: JobRecord, documents: Sequence[Document]) -> tuple[Path, RunRequest]:
        return await trio.to_thread.run_sync(_create_job_dir, self._settings, job, list(documents))

    async def remove(self, job_dir: Path) -> None:
        await trio.to_thread.run_sync(_remove_job_dir, job_dir)

    async def accept(self, job: JobRecord) -> JobRecord:
        # Read here, in the submitting request's task: from now on the id travels explicitly.
        request_id = current_request_id()
        return await self._life.ask(self._life.recorder, AcceptJob(job, request_id=request_id))

    async def enqueue(self, record: JobRecord, request: RunRequest) -> bool:
        if self._life.member is not None:
            # In a cluster the row is the queue entry (its insert woke the idle nodes); any
            # node may claim it, and reads the run request from the job directory.
            return True
        # Before the dispatcher can assign it: the worker takes the request from here.
        self._life.requests[record.id] = request
        queued: bool = await self._life.ask(self._life.dispatcher, EnqueueJob(record))
        if not queued:
            self._life.requests.pop(record.id, None)
        return queued

    async def record_cancelled(self, job_id: str) -> JobRecord:
        return await self._life.ask(self._life.recorder, RecordCancelled(job_id))

    async def note_retry(self, original_id: str, retry_id: str) -> None:
        await self._life.ask(self._life.recorder, NoteRetry(original_id, retry_id))


def _create_job_dir(
    settings: Settings, job: JobRecord, documents: list[Document]
) -> tuple[Path, RunRequest]:
    from ade.runtime.jobdir import create_job_dir

    return create_job_dir(settings, job, documents)


def _remove_job_dir(path: Path) -> None:
    from ade.runtime.jobdir import remove_job_dir

    remove_job_dir(path)


@contextmanager
def _data_dir_lock(settings: Settings) -> Any:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / _LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise DataDirLocked(
                f"another ADE runtime (pid {holder}) is already using {settings.data_dir}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _remove_unfinished_builds(
    settings: Settings, *, older_than_seconds: float | None = None
) -> list[str]:
    from ade.runtime.jobdir import remove_unfinished_builds

    return remove_unfinished_builds(settings.jobs_dir, older_than_seconds=older_than_seconds)


async def _run_in_scope(scope: trio.CancelScope, task: Any) -> None:
    with scope:
        await task()


def _default_runner() -> JobRunner:
    from ade.runtime.supervisor import supervise_job

    return supervise_job


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    runner: JobRunner | None = None,
    subscriber_buffer: int = DEFAULT_SUBSCRIBER_BUFFER,
    workers: int | None = None,
    api: bool = True,
) -> AsyncIterator[Runtime]:
    """Run the runtime for the duration of the ``async with`` block.

    On entry: lock the data directory, open the store, recover, start the actors. On exit
    (normal, exception or cancellation): :meth:`Runtime.drain`, shielded and bounded by
    ``shutdown_grace_seconds`` plus a margin. ``runner`` replaces the job subprocess runner
    (default: ``ade.runtime.supervisor.supervise_job``). ``workers`` overrides
    ``ADE_MAX_CONCURRENCY`` (0: an API-only node, cluster only); ``api`` False is a node
    without HTTP (``ade worker``), as shown in ``ade nodes list``.

    With ``ADE_DATABASE_URL`` the node joins the cluster instead: no data directory lock
    (every node shares the directory), and only half-built job directories old enough that
    no node can still be building them are removed.
    """
    workers = settings.max_concurrency if workers is None else workers
    if workers < 0 or (workers == 0 and settings.database_url is None):
        raise ValueError(
            "a node without workers needs ADE_DATABASE_URL: on the embedded SQLite store "
            "nothing else would run its jobs"
        )
    clustered = settings.database_url is not None
    with _data_dir_lock(settings) if not clustered else nullcontext():
        settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        leftovers = await trio.to_thread.run_sync(
            partial(
                _remove_unfinished_builds,
                settings,
                older_than_seconds=_SHARED_BUILD_AGE_SECONDS if clustered else None,
            )
        )
        if leftovers:
            logger.warning("removed %d half-built job directories: %s", len(leftovers), leftovers)
        store = await trio.to_thread.run_sync(open_store, settings)
        try:
            member = None
            if clustered:
                from ade.cluster.member import ClusterMember

                member = ClusterMember(settings, store, workers=workers, api=api)
            runtime = Runtime(
                settings,
                store,
                runner=runner if runner is not None else _default_runner(),
                subscriber_buffer=subscriber_buffer,
                member=member,
                workers=workers,
                make_starter=partial(make_starter, settings) if runner is None else None,
            )
            # An exception (or cancellation) of the caller's block is held while the runtime
            # drains and re-raised as it is afterwards, rather than wrapped in the nursery's
            # ExceptionGroup: `async with open_runtime(...)` behaves like any context manager.
            body_error: BaseException | None = None
            try:
                async with trio.open_nursery() as nursery:
                    try:
                        await runtime.lifecycle.start(nursery)
                    except BaseException:
                        # Recovery failed or the host gave up during start-up: nothing was
                        # admitted yet, so stop the actors already started and report it.
                        runtime.lifecycle.force_stop()
                        raise
                    sweep_scope = trio.CancelScope()
                    if settings.retention_days is not None:
                        runtime.sweeper = Sweeper(
                            Retention(store, settings), settings.retention_days
                        )
                        nursery.start_soon(_run_in_scope, sweep_scope, runtime.sweeper.run)
                    try:
                        yield runtime
                    except BaseException as exc:
                        body_error = exc
                    finally:
                        sweep_scope.cancel()
                        with trio.CancelScope(shield=True) as scope:
                            scope.deadline = (
                                trio.current_time()
                                + settings.shutdown_grace_seconds
                                + _DRAIN_MARGIN_SECONDS
                            )
                            await runtime.drain()
                        if scope.cancelled_caught:
                            logger.error("graceful shutdown overran; stopping the actors")
                            runtime.lifecycle.force_stop()
            finally:
                runtime.lifecycle.stop()
            if body_error is not None:
                raise body_error
        finally:
            # Shielded: on a cancelled exit an unshielded await would raise at once and leave
            # the connections to the garbage collector (a ResourceWarning on Python 3.13).
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(store.close)
