"""The runtime facade: :class:`Runtime` (what the API calls) and :func:`open_runtime` (its life).

Theory of operation
-------------------
``open_runtime`` opens the store, takes the data directory's lock, and starts in one nursery:
the recorder, then recovery (through the recorder), then the dispatcher and the workers. The
facade's methods are called from other tasks (HTTP handlers); they talk to the actors only
through their bounded inboxes and :class:`~ade.runtime.messages.Reply` slots.

A submission: validate ids (reads) -> ``ReserveSlot`` (QueueFull / ShuttingDown here, nothing
exists yet) -> job directory -> ``AcceptJob`` (the row: the commit point) -> ``EnqueueJob``.
From the reservation on, the caller's cancellation is shielded: a client that hangs up must not
leave a reservation held, a directory without a row, or a row that is never enqueued. Any
failure before the row releases the reservation and removes the directory.

Shutdown (``drain``, also run on leaving ``open_runtime``): stop admitting, let submissions in
flight settle, give running jobs ``shutdown_grace_seconds``, then stop the rest through their
workers' cancel scopes (their process groups are killed, they are recorded as interrupted), and
close the inboxes in dependency order: workers, dispatcher, recorder. Queued jobs stay queued in
the store; the next start re-enqueues them.

Cancellation of the host (Ctrl+C, a timeout around ``open_runtime``) must not cut the actors
off before the drain has recorded every job's end, so each actor (and the drain) runs in its own
shielded scope and stops when its inbox closes. Only two things cancel those scopes: an actor
dying of an exception (the runtime is broken; callers waiting on it get ShuttingDown) and a
drain that overruns its bound. Jobs left ``running`` then are recorded by the next start.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from ade.errors import Conflict, DataDirLocked, NotFound, ShuttingDown
from ade.ids import new_id
from ade.layout import JobLayout
from ade.models import ConfigVersion, Document, JobEvent, JobRecord, JobStatus
from ade.protocols import Store
from ade.runtime.admission import Admission
from ade.runtime.dispatcher import DispatcherState, run_dispatcher
from ade.runtime.events import read_events
from ade.runtime.leftovers import kill_leftover_processes, remove_leftover_cgroup
from ade.runtime.messages import (
    AcceptJob,
    Assign,
    CancelDecision,
    CancelJob,
    EnqueueJob,
    NoteRequeued,
    NoteRetry,
    RecordCancelled,
    RecoverInterrupted,
    RecoverJobs,
    ReleaseReservation,
    Reply,
    ReserveSlot,
    RunJob,
    StopAdmitting,
)
from ade.runtime.recorder import EventHub, RecorderState, Subscription, run_recorder
from ade.runtime.workers import JobRunner, WorkerSlot, run_worker_actor
from ade.serde import utcnow
from ade.settings import Settings
from ade.store import open_store
from ade.worker.protocol import RunRequest

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
    ) -> None:
        self._settings = settings
        self._store = store
        self._runner = runner
        self._hub = EventHub(subscriber_buffer)
        self._dispatcher_state = DispatcherState(
            capacity=settings.queue_size, workers=settings.max_concurrency
        )
        self._recorder_state: RecorderState | None = None
        self._slots = [WorkerSlot(i) for i in range(settings.max_concurrency)]
        self._dispatcher_send, self._dispatcher_receive = trio.open_memory_channel[Any](inbox_size)
        self._recorder_send, self._recorder_receive = trio.open_memory_channel[Any](inbox_size)
        self._worker_channels = [
            trio.open_memory_channel[RunJob](1) for _ in range(settings.max_concurrency)
        ]
        self._pending: set[Reply[Any]] = set()
        # Run requests of admitted jobs until a worker takes them (handed over in memory).
        self._requests: dict[str, RunRequest] = {}
        self._in_flight = 0
        self._settled = trio.lowlevel.ParkingLot()
        self._dispatcher_changed = trio.lowlevel.ParkingLot()
        self._draining = False
        self._broken = False
        self._nursery: trio.Nursery | None = None
        self._scopes: list[trio.CancelScope] = []
        self._drained = trio.Event()
        self._stopped = False
        self._admission = Admission(_AdmissionSteps(self))

    # -- public surface ------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The job store (read it freely; only the runtime writes job state)."""
        return self._store

    @property
    def settings(self) -> Settings:
        return self._settings

    async def submit(
        self,
        *,
        workspace_id: str,
        config_version_id: str,
        document_ids: Sequence[str],
        runtime_network_access: bool = False,
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
        )
        return await self._admit(job)

    async def retry(self, workspace_id: str, job_id: str) -> JobRecord:
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
        with trio.CancelScope(shield=True):
            decision: CancelDecision = await self._ask(self._dispatcher_send, CancelJob(job_id))
            if decision.where == "queue":
                self._requests.pop(job_id, None)
                return await self._ask(self._recorder_send, RecordCancelled(job_id))
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

    def subscribe(self, workspace_id: str, job_id: str | None = None) -> Subscription:
        """Live events of a workspace (or one job). For a replay without gaps, subscribe
        first, then :meth:`read_events`, and skip live events with ``seq`` already seen.
        Once the runtime has stopped, a new subscription ends at once."""
        subscription = self._hub.subscribe(workspace_id, job_id)
        if self._stopped:
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
        dispatcher = self._dispatcher_state.statistics()
        totals = self._recorder_state.totals if self._recorder_state is not None else {}
        return RuntimeStatistics(
            queued=dispatcher.queued,
            reserved=dispatcher.reserved,
            running=dispatcher.running,
            capacity=dispatcher.capacity,
            workers=dispatcher.workers,
            idle_workers=dispatcher.idle_workers,
            accepting=dispatcher.accepting and not self._draining,
            totals=StatusTotals(**{status.value: totals.get(status, 0) for status in JobStatus}),
            recent_mean_duration_seconds=dispatcher.recent_mean_duration_seconds,
            subscribers=self._hub.subscribers,
            dropped_subscribers=self._hub.dropped_total,
        )

    async def drain(self, reason: str = "shutdown") -> None:
        """Graceful shutdown; idempotent, and safe to call from a task that may be cancelled:
        the drain itself runs as a shielded system task and always completes."""
        if not self._draining:
            self._draining = True
            assert self._nursery is not None, "the runtime has not been started"
            self._nursery.start_soon(self._guard, "drain", partial(self._drain_task, reason))
        await self._drained.wait()

    # -- submission ----------------------------------------------------------------------------

    async def _admit(self, job: JobRecord) -> JobRecord:
        if self._draining or self._stopped:
            raise ShuttingDown("the service is shutting down; retry later")
        self._in_flight += 1
        try:
            # Shielded: see Admission (a hung-up client must not leave half a job behind).
            with trio.CancelScope(shield=True):
                return await self._admission.admit(job)
        finally:
            self._in_flight -= 1
            self._settled.unpark_all()

    # -- helpers -------------------------------------------------------------------------------

    async def _ask(self, channel: trio.MemorySendChannel[Any], message: Any) -> Any:
        """Send a request and wait for its answer. If the runtime stops first, the pending
        answer fails with ShuttingDown instead of leaving the caller waiting forever."""
        reply: Reply[Any] = message.reply
        if self._broken:
            raise ShuttingDown("the runtime has stopped")
        self._pending.add(reply)
        try:
            try:
                await channel.send(message)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                raise ShuttingDown("the runtime has stopped") from None
            return await reply.wait()
        finally:
            self._pending.discard(reply)

    async def _wait_ended(self, job_id: str, ended: trio.Event) -> JobRecord:
        while True:
            job = await self._store.get_job(job_id)
            if job is None:
                raise NotFound(f"job {job_id} not found", {"job_id": job_id})
            if job.status.is_terminal:
                return job
            if self._stopped:
                raise ShuttingDown(f"the runtime stopped before job {job_id} finished")
            await ended.wait()
            ended = self._hub.terminal_event(job_id)

    def _check_open(self) -> None:
        # While draining, reads still work and only admission is refused (in _admit).
        if self._stopped:
            raise ShuttingDown("the runtime has stopped")

    @staticmethod
    def _finished_conflict(job: JobRecord) -> Conflict:
        return Conflict(
            f"job {job.id} has already finished ({job.status.value})",
            {"job_id": job.id, "status": job.status.value},
        )

    # -- life cycle ----------------------------------------------------------------------------

    async def _guard(self, name: str, actor: Callable[[], Awaitable[None]]) -> None:
        """Run one actor (or the drain) in its own shielded scope.

        Why shielded: when the host cancels (Ctrl+C, a test's timeout), the actors must keep
        running until the drain has recorded every job's end; they stop when their inboxes
        close. Only :meth:`_force_stop` cancels them. If an actor dies of an exception the
        runtime is broken: everyone waiting on an actor is answered at once (ShuttingDown), the
        other actors are stopped (job runners kill their process groups on cancellation) and
        the exception propagates so the service stops; the next start recovers the jobs.
        """
        with trio.CancelScope(shield=True) as scope:
            self._scopes.append(scope)
            try:
                await actor()
            except Exception:
                if not self._broken:
                    self._broken = True
                    logger.exception("the runtime's %s actor failed", name)
                    self._fail_pending()
                    self._force_stop()
                raise

    def _force_stop(self) -> None:
        for scope in self._scopes:
            scope.cancel()

    async def _drain_task(self, reason: str) -> None:
        try:
            await self._drain(reason)
        finally:
            self._drained.set()

    def _fail_pending(self) -> None:
        for reply in list(self._pending):
            if not reply.done:
                reply.fail(ShuttingDown("the runtime has stopped"))

    def _assign(self, action: Assign) -> None:
        self._slots[action.worker_id].assign(action.job.id)
        send, _ = self._worker_channels[action.worker_id]
        # Never blocks: a worker is only assigned when idle, i.e. waiting on an empty inbox.
        send.send_nowait(RunJob(action.job, self._requests.pop(action.job.id, None)))

    def _cancel_running(self, job_id: str, worker_id: int) -> None:
        self._slots[worker_id].stop(job_id, "user")

    async def _start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        totals = await self._store.count_by_status()
        self._recorder_state = RecorderState(totals=totals)
        nursery.start_soon(
            self._guard,
            "recorder",
            partial(
                run_recorder,
                self._recorder_state,
                self._recorder_receive,
                store=self._store,
                hub=self._hub,
                jobs_dir=self._settings.jobs_dir,
            ),
        )
        queued = await self._recover()
        nursery.start_soon(
            self._guard,
            "dispatcher",
            partial(
                run_dispatcher,
                self._dispatcher_state,
                self._dispatcher_receive,
                assign=self._assign,
                cancel_running=self._cancel_running,
                on_change=self._dispatcher_changed.unpark_all,
            ),
        )
        # Wait for the dispatcher to hold them: statistics() is right from the first call.
        await self._ask(self._dispatcher_send, RecoverJobs(tuple(queued)))
        for slot, (_, receive) in zip(self._slots, self._worker_channels, strict=True):
            nursery.start_soon(
                self._guard,
                "worker",
                partial(
                    run_worker_actor,
                    slot,
                    receive,
                    settings=self._settings,
                    runner=self._runner,
                    dispatcher=self._dispatcher_send.clone(),
                    recorder=self._recorder_send.clone(),
                ),
            )

    async def _recover(self) -> list[JobRecord]:
        """Jobs found running were interrupted by the death of the previous service: kill any
        processes and cgroups they left and mark them error. Queued jobs are returned, oldest
        first."""
        for job in await self._store.jobs_with_status(JobStatus.RUNNING):
            job_dir = self.layout(job.id).root
            killed = await trio.to_thread.run_sync(kill_leftover_processes, job_dir)
            if killed:
                logger.warning("killed %d leftover process(es) of job %s", len(killed), job.id)
            try:
                cgroup = await trio.to_thread.run_sync(remove_leftover_cgroup, job.id)
            except OSError as exc:
                # Not fatal: the job is still recorded; the operator can remove it by hand.
                logger.warning("could not remove the leftover cgroup of job %s: %s", job.id, exc)
            else:
                if cgroup is not None:
                    logger.warning("removed leftover cgroup %s of job %s", cgroup, job.id)
            await self._ask(self._recorder_send, RecoverInterrupted(job.id))
        queued = await self._store.jobs_with_status(JobStatus.QUEUED)
        if queued:
            await self._ask(self._recorder_send, NoteRequeued(tuple(queued)))
        if queued:
            logger.info("re-enqueued %d queued job(s) after a restart", len(queued))
        return queued

    async def _drain(self, reason: str) -> None:
        if self._broken:
            # An actor died and the others are being stopped: the job runners kill their
            # process groups on cancellation; recovery at the next start records the rest.
            return
        await self._ask(self._dispatcher_send, StopAdmitting(reason))
        while self._in_flight:
            await self._settled.park()
        with trio.move_on_after(self._settings.shutdown_grace_seconds):
            while self._dispatcher_state.running_jobs:
                await self._dispatcher_changed.park()
        for job_id, worker_id in self._dispatcher_state.running_jobs.items():
            logger.warning("stopping job %s: shutdown grace period is over", job_id)
            self._slots[worker_id].stop(job_id, "shutdown")
        while self._dispatcher_state.running_jobs:
            await self._dispatcher_changed.park()
        for send, _ in self._worker_channels:
            send.close()
        await self._dispatcher_send.aclose()
        await self._recorder_send.aclose()

    def _stop(self) -> None:
        """After the actors are gone: wake anyone still waiting on them."""
        self._stopped = True
        self._fail_pending()
        self._hub.close_all()


class _AdmissionSteps:
    """Admission's I/O (:class:`~ade.runtime.admission.AdmissionSteps`) over the runtime's
    actors, store and disk."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def reserve(self, job_id: str) -> None:
        await self._runtime._ask(self._runtime._dispatcher_send, ReserveSlot(job_id))

    async def release(self, job_id: str) -> None:
        with suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            # (closed only if the runtime is already broken; nothing to release then)
            await self._runtime._dispatcher_send.send(ReleaseReservation(job_id))

    async def config(self, workspace_id: str, config_id: str) -> ConfigVersion | None:
        return await self._runtime._store.get_config(workspace_id, config_id)

    async def document(self, workspace_id: str, document_id: str) -> Document | None:
        return await self._runtime._store.get_document(workspace_id, document_id)

    async def build(
        self, job: JobRecord, documents: Sequence[Document]
    ) -> tuple[Path, RunRequest]:
        return await trio.to_thread.run_sync(
            _create_job_dir, self._runtime._settings, job, list(documents)
        )

    async def remove(self, job_dir: Path) -> None:
        await trio.to_thread.run_sync(_remove_job_dir, job_dir)

    async def accept(self, job: JobRecord) -> JobRecord:
        return await self._runtime._ask(self._runtime._recorder_send, AcceptJob(job))

    async def enqueue(self, record: JobRecord, request: RunRequest) -> bool:
        runtime = self._runtime
        # Before the dispatcher can assign it: the worker takes the request from here.
        runtime._requests[record.id] = request
        queued: bool = await runtime._ask(runtime._dispatcher_send, EnqueueJob(record))
        if not queued:
            runtime._requests.pop(record.id, None)
        return queued

    async def record_cancelled(self, job_id: str) -> JobRecord:
        return await self._runtime._ask(self._runtime._recorder_send, RecordCancelled(job_id))

    async def note_retry(self, original_id: str, retry_id: str) -> None:
        await self._runtime._ask(self._runtime._recorder_send, NoteRetry(original_id, retry_id))


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


def _remove_unfinished_builds(settings: Settings) -> list[str]:
    from ade.runtime.jobdir import remove_unfinished_builds

    return remove_unfinished_builds(settings.jobs_dir)


def _default_runner() -> JobRunner:
    from ade.runtime.supervisor import supervise_job

    return supervise_job


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    runner: JobRunner | None = None,
    subscriber_buffer: int = DEFAULT_SUBSCRIBER_BUFFER,
) -> AsyncIterator[Runtime]:
    """Run the runtime for the duration of the ``async with`` block.

    On entry: lock the data directory, open the store, recover, start the actors. On exit
    (normal, exception or cancellation): :meth:`Runtime.drain`, shielded and bounded by
    ``shutdown_grace_seconds`` plus a margin. ``runner`` replaces the job subprocess runner
    (default: ``ade.runtime.supervisor.supervise_job``).
    """
    with _data_dir_lock(settings):
        settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        leftovers = await trio.to_thread.run_sync(_remove_unfinished_builds, settings)
        if leftovers:
            logger.warning("removed %d half-built job directories: %s", len(leftovers), leftovers)
        store = await trio.to_thread.run_sync(open_store, settings)
        try:
            runtime = Runtime(
                settings,
                store,
                runner=runner if runner is not None else _default_runner(),
                subscriber_buffer=subscriber_buffer,
            )
            # An exception (or cancellation) of the caller's block is held while the runtime
            # drains and re-raised as it is afterwards, rather than wrapped in the nursery's
            # ExceptionGroup: `async with open_runtime(...)` behaves like any context manager.
            body_error: BaseException | None = None
            try:
                async with trio.open_nursery() as nursery:
                    try:
                        await runtime._start(nursery)
                    except BaseException:
                        # Recovery failed or the host gave up during start-up: nothing was
                        # admitted yet, so stop the actors already started and report it.
                        runtime._force_stop()
                        raise
                    try:
                        yield runtime
                    except BaseException as exc:
                        body_error = exc
                    finally:
                        with trio.CancelScope(shield=True) as scope:
                            scope.deadline = (
                                trio.current_time()
                                + settings.shutdown_grace_seconds
                                + _DRAIN_MARGIN_SECONDS
                            )
                            await runtime.drain()
                        if scope.cancelled_caught:
                            logger.error("graceful shutdown overran; stopping the actors")
                            runtime._force_stop()
            finally:
                runtime._stop()
            if body_error is not None:
                raise body_error
        finally:
            # Shielded: on a cancelled exit an unshielded await would raise at once and leave
            # the connections to the garbage collector (a ResourceWarning on Python 3.13).
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(store.close)
