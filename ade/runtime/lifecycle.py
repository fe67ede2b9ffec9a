"""The runtime's actors and their life: start (with recovery), guard, drain, stop.

Theory of operation
-------------------
:class:`Lifecycle` owns the actors' wiring — their bounded inboxes, the dispatcher's and the
recorder's state, the worker slots, the event hub — and runs them. :meth:`Lifecycle.start`
starts, in one nursery, the recorder, then recovery (through the recorder), then the dispatcher
and the workers. Anyone else talks to the actors only through :meth:`Lifecycle.ask` (a message
and its :class:`~ade.runtime.messages.Reply`).

Shutdown (:meth:`Lifecycle.drain`): stop admitting, let submissions in flight settle, give
running jobs ``shutdown_grace_seconds``, then stop the rest through their workers' cancel scopes
(their process groups are killed, they are recorded as interrupted), and close the inboxes in
dependency order: workers, dispatcher, recorder. Queued jobs stay queued in the store; the next
start re-enqueues them.

Cancellation of the host (Ctrl+C, a timeout around ``open_runtime``) must not cut the actors
off before the drain has recorded every job's end, so each actor (and the drain) runs in its own
shielded scope and stops when its inbox closes. Only two things cancel those scopes: an actor
dying of an exception (the runtime is broken; callers waiting on it get ShuttingDown) and a
drain that overruns its bound (:meth:`Lifecycle.force_stop`). Jobs left ``running`` then are
recorded by the next start.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from ade.errors import AdeError, ShuttingDown
from ade.layout import JobLayout
from ade.models import JobRecord, JobStatus
from ade.protocols import Store
from ade.runtime.dispatcher import DispatcherState, run_dispatcher
from ade.runtime.leftovers import kill_leftover_processes, remove_leftover_cgroup
from ade.runtime.messages import (
    Assign,
    NoteRequeued,
    RecordNodeLost,
    RecoverInterrupted,
    RecoverJobs,
    Reply,
    RunJob,
    StopAdmitting,
)
from ade.runtime.recorder import EventHub, RecorderState, run_recorder
from ade.runtime.starters import JobStarter
from ade.runtime.workers import JobRunner, WorkerSlot, run_worker_actor
from ade.settings import Settings
from ade.telemetry.jobs import JobTelemetry
from ade.telemetry.logs import log_fields
from ade.worker.protocol import RunRequest

if TYPE_CHECKING:
    # The cluster's modules (and psycopg) load only when ADE_DATABASE_URL is set.
    from ade.cluster.dispatcher import ClusterDispatcherState
    from ade.cluster.member import ClusterMember
    from ade.cluster.queue import ExpiredLease

__all__ = ["Lifecycle"]

logger = logging.getLogger(__name__)
# One line per job lifecycle step (ade.telemetry.jobs decides what it says).
_job_log = logging.getLogger("ade.jobs")


class Lifecycle:
    """The actors of one runtime, from start to stop. Created by the runtime facade; driven by
    :func:`ade.runtime.open_runtime`."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        runner: JobRunner,
        subscriber_buffer: int,
        inbox_size: int,
        member: ClusterMember | None = None,
        workers: int | None = None,
        make_starter: Callable[[], JobStarter] | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._runner = runner
        # The default runner: each worker actor gets its own starter (fork template or spawn
        # standby, ade.runtime.starters), alive as long as the actor. None: a runner given by
        # the caller (tests, benchmarks) that starts processes its own way.
        self._make_starter = make_starter
        self.starters: list[JobStarter] = []
        self.hub = EventHub(subscriber_buffer)
        # In a cluster (ADE_DATABASE_URL) the queue and admission live in PostgreSQL and this
        # node claims jobs from it (ade.cluster); on one node they live in the dispatcher.
        self.member = member
        workers = settings.max_concurrency if workers is None else workers
        self.dispatcher_state: DispatcherState | ClusterDispatcherState
        if member is not None:
            from ade.cluster.dispatcher import ClusterDispatcherState

            self.dispatcher_state = ClusterDispatcherState(
                capacity=settings.queue_size, workers=workers
            )
        else:
            self.dispatcher_state = DispatcherState(capacity=settings.queue_size, workers=workers)
        self.recorder_state: RecorderState | None = None
        self._slots = [WorkerSlot(i) for i in range(workers)]
        # Counts and log lines of every job step the recorder carries out (/metrics, logs).
        self.telemetry = JobTelemetry()
        self.dispatcher, self._dispatcher_receive = trio.open_memory_channel[Any](inbox_size)
        self.recorder, self._recorder_receive = trio.open_memory_channel[Any](inbox_size)
        self._worker_channels = [trio.open_memory_channel[RunJob](1) for _ in range(workers)]
        # The cluster's background work (LISTEN, heartbeats, rescue), cancelled by the drain.
        self._cluster_scope = trio.CancelScope()
        self._pending: set[Reply[Any]] = set()
        # Run requests of admitted jobs until a worker takes them (handed over in memory).
        self.requests: dict[str, RunRequest] = {}
        self._in_flight = 0
        self._settled = trio.lowlevel.ParkingLot()
        self._dispatcher_changed = trio.lowlevel.ParkingLot()
        self.draining = False
        self._broken = False
        self._nursery: trio.Nursery | None = None
        self._scopes: list[trio.CancelScope] = []
        self._drained = trio.Event()
        self.stopped = False

    @property
    def custom_runner(self) -> bool:
        """Jobs run through a runner the caller gave, not through this runtime's starters."""
        return self._make_starter is None

    @property
    def worker_restarts(self) -> int:
        return sum(slot.restarts for slot in self._slots)

    def _observe(self, plan: Any) -> None:
        for line in self.telemetry.observe(plan):
            log_fields(_job_log, logging.INFO, line.message, **line.fields)

    # -- talking to the actors -----------------------------------------------------------------

    async def ask(self, channel: trio.MemorySendChannel[Any], message: Any) -> Any:
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

    @contextmanager
    def submission(self) -> Iterator[None]:
        """Count a submission in flight: the drain waits for it to settle."""
        if self.draining or self.stopped:
            raise ShuttingDown("the service is shutting down; retry later")
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            self._settled.unpark_all()

    # -- start, recovery -----------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> None:
        """Start the recorder, recover through it, then start the dispatcher and the workers."""
        self._nursery = nursery
        totals = await self._store.count_by_status()
        member = self.member
        self.recorder_state = RecorderState(totals=totals, cluster=member is not None)
        nursery.start_soon(
            self._guard,
            "recorder",
            partial(
                run_recorder,
                self.recorder_state,
                self._recorder_receive,
                store=self._store,
                hub=self.hub,
                jobs_dir=self._settings.jobs_dir,
                announce=None if member is None else member.announce,
                node_id=None if member is None else member.node_id,
                fence=None if member is None else member.queue.store.check_lease,
                observe=self._observe,
            ),
        )
        if member is not None:
            await self._start_cluster(nursery, member)
            return
        queued = await self.recover()
        nursery.start_soon(
            self._guard,
            "dispatcher",
            partial(
                run_dispatcher,
                self.dispatcher_state,
                self._dispatcher_receive,
                assign=self._assign,
                cancel_running=self._cancel_running,
                on_change=self._dispatcher_changed.unpark_all,
            ),
        )
        # Wait for the dispatcher to hold them: statistics() is right from the first call.
        await self.ask(self.dispatcher, RecoverJobs(tuple(queued)))
        self._start_workers(nursery)

    def _start_workers(self, nursery: trio.Nursery) -> None:
        for slot, (_, receive) in zip(self._slots, self._worker_channels, strict=True):
            nursery.start_soon(self._guard, "worker", partial(self._run_worker, slot, receive))

    async def _run_worker(
        self, slot: WorkerSlot, receive: trio.MemoryReceiveChannel[RunJob]
    ) -> None:
        """One worker actor, with its starter's background work (template, standby) running
        beside it for exactly as long as the actor does."""
        actor = partial(
            run_worker_actor,
            slot,
            receive,
            settings=self._settings,
            dispatcher=self.dispatcher.clone(),
            recorder=self.recorder.clone(),
        )
        if self._make_starter is None:
            await actor(runner=self._runner)
            return
        starter = self._make_starter()
        self.starters.append(starter)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(starter.run)
            await actor(runner=partial(self._runner, starter=starter), worker_start=starter.mode)
            nursery.cancel_scope.cancel()

    async def _start_cluster(self, nursery: trio.Nursery, member: ClusterMember) -> None:
        """Register, record the jobs a previous process under this node id left running,
        then claim, heartbeat, rescue and listen."""
        await member.register()
        for job_id in await member.queue.own_running():
            if await member.queue.take_over_own(job_id):
                await self._record_interrupted(job_id, RecoverInterrupted(job_id))
        from ade.cluster.dispatcher import ClusterDispatcherState, run_cluster_dispatcher

        state = self.dispatcher_state
        assert isinstance(state, ClusterDispatcherState)
        nursery.start_soon(
            self._guard,
            "dispatcher",
            partial(
                run_cluster_dispatcher,
                state,
                self._dispatcher_receive,
                queue=member.queue,
                kicks=member.kicks,
                assign=self._assign,
                cancel_running=self._cancel_running,
                on_change=self._dispatcher_changed.unpark_all,
            ),
        )
        self._start_workers(nursery)

        async def rescue(lease: ExpiredLease) -> None:
            try:
                # Its processes are gone with their node, unless that node was on this
                # machine (nodes sharing one host): then they are killed here.
                await self._record_interrupted(
                    lease.job_id, RecordNodeLost(lease.job_id, lease.node_id)
                )
            except (AdeError, OSError) as exc:
                # Fenced but not recorded (the store failed, or this node is stopping): the
                # job stays running with an expired lease and the next pulse, here or on
                # another node, tries again once the new lease has run out.
                logger.warning("could not record job %s interrupted: %s", lease.job_id, exc)

        def stop_local(job_id: str, reason: str) -> None:
            worker_id = state.running_on(job_id)
            if worker_id is not None:
                self._slots[worker_id].stop(job_id, reason)

        def lost_contact() -> None:
            for job_id, worker_id in state.running_jobs.items():
                self._slots[worker_id].stop(job_id, "shutdown")

        # Not an actor behind _guard: it has no inbox to drain; the drain cancels it once this
        # node's jobs are recorded (heartbeats keep their leases until then). A database
        # outage is logged and retried inside, never fatal.
        async def membership(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            with self._cluster_scope:
                await member.run(
                    hub=self.hub,
                    jobs_dir=self._settings.jobs_dir,
                    dispatcher=state,
                    running=lambda: set(state.running_jobs),
                    stop_local=stop_local,
                    rescue=rescue,
                    lost_contact=lost_contact,
                    task_status=task_status,
                )

        await nursery.start(membership)

    async def _record_interrupted(
        self, job_id: str, message: RecoverInterrupted | RecordNodeLost
    ) -> None:
        """Kill what the job left on this machine, then record its end (``message``)."""
        job_dir = JobLayout.of(self._settings.jobs_dir, job_id).root
        killed = await trio.to_thread.run_sync(kill_leftover_processes, job_dir)
        if killed:
            logger.warning("killed %d leftover process(es) of job %s", len(killed), job_id)
        try:
            cgroup = await trio.to_thread.run_sync(remove_leftover_cgroup, job_id)
        except OSError as exc:
            # Not fatal: the job is still recorded; the operator can remove it by hand.
            logger.warning("could not remove the leftover cgroup of job %s: %s", job_id, exc)
        else:
            if cgroup is not None:
                logger.warning("removed leftover cgroup %s of job %s", cgroup, job_id)
        await self.ask(self.recorder, message)

    async def recover(self) -> list[JobRecord]:
        """Jobs found running were interrupted by the death of the previous service: kill any
        processes and cgroups they left and mark them error. Queued jobs are returned, oldest
        first."""
        for job in await self._store.jobs_with_status(JobStatus.RUNNING):
            await self._record_interrupted(job.id, RecoverInterrupted(job.id))
        queued = await self._store.jobs_with_status(JobStatus.QUEUED)
        if queued:
            await self.ask(self.recorder, NoteRequeued(tuple(queued)))
        if queued:
            logger.info("re-enqueued %d queued job(s) after a restart", len(queued))
        return queued

    # -- guard, drain, stop ---------------------------------------------------------------------

    async def _guard(self, name: str, actor: Callable[[], Awaitable[None]]) -> None:
        """Run one actor (or the drain) in its own shielded scope.

        Why shielded: when the host cancels (Ctrl+C, a test's timeout), the actors must keep
        running until the drain has recorded every job's end; they stop when their inboxes
        close. Only :meth:`force_stop` cancels them. If an actor dies of an exception the
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
                    self.force_stop()
                raise

    def force_stop(self) -> None:
        """Cancel every actor's scope (an overrun drain, a failed start)."""
        for scope in self._scopes:
            scope.cancel()

    def _fail_pending(self) -> None:
        for reply in list(self._pending):
            if not reply.done:
                reply.fail(ShuttingDown("the runtime has stopped"))

    def _assign(self, action: Assign) -> None:
        self._slots[action.worker_id].assign(action.job.id)
        send, _ = self._worker_channels[action.worker_id]
        # Never blocks: a worker is only assigned when idle, i.e. waiting on an empty inbox.
        send.send_nowait(RunJob(action.job, self.requests.pop(action.job.id, None)))

    def _cancel_running(self, job_id: str, worker_id: int) -> None:
        self._slots[worker_id].stop(job_id, "user")

    async def drain(self, reason: str = "shutdown") -> None:
        """Graceful shutdown; idempotent, and safe to call from a task that may be cancelled:
        the drain itself runs as a shielded system task and always completes."""
        if not self.draining:
            self.draining = True
            assert self._nursery is not None, "the runtime has not been started"
            self._nursery.start_soon(self._guard, "drain", partial(self._drain_task, reason))
        await self._drained.wait()

    async def _drain_task(self, reason: str) -> None:
        try:
            await self._drain(reason)
        finally:
            self._drained.set()

    async def _drain(self, reason: str) -> None:
        if self._broken:
            # An actor died and the others are being stopped: the job runners kill their
            # process groups on cancellation; recovery at the next start records the rest.
            return
        await self.ask(self.dispatcher, StopAdmitting(reason))
        while self._in_flight:
            await self._settled.park()
        with trio.move_on_after(self._settings.shutdown_grace_seconds):
            while self.dispatcher_state.running_jobs:
                await self._dispatcher_changed.park()
        for job_id, worker_id in self.dispatcher_state.running_jobs.items():
            logger.warning("stopping job %s: shutdown grace period is over", job_id)
            self._slots[worker_id].stop(job_id, "shutdown")
        while self.dispatcher_state.running_jobs:
            await self._dispatcher_changed.park()
        self._cluster_scope.cancel()
        for send, _ in self._worker_channels:
            send.close()
        await self.dispatcher.aclose()
        await self.recorder.aclose()
        if self.member is not None:
            try:
                await self.member.queue.stop()
            except AdeError as exc:
                logger.warning("could not mark node %s stopped: %s", self.member.node_id, exc)

    def stop(self) -> None:
        """After the actors are gone: wake anyone still waiting on them."""
        self.stopped = True
        self._fail_pending()
        self.hub.close_all()
