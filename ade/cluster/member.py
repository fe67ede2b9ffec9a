"""One node's membership in a cluster: identity, notifications, pulse, event announcements.

The runtime (:mod:`ade.runtime.service`) owns a :class:`ClusterMember` when ``ADE_DATABASE_URL``
is set and calls it at a few seams: admission (``reserve``/``release``), the recorder's
``announce`` after it wrote events, cancel of a job running elsewhere, and the background tasks
started by :meth:`run` (LISTEN, the pulse). Everything cluster-specific stays in
:mod:`ade.cluster`; the runtime's actors are the same on one node and on many.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from ade.cluster.dispatcher import ClusterDispatcherState, Kicks
from ade.cluster.listen import Listener
from ade.cluster.node import Pulse, default_node_id, run_pulse
from ade.cluster.queue import (
    CANCEL_CHANNEL,
    EVENTS_CHANNEL,
    JOBS_CHANNEL,
    ClusterQueue,
    ExpiredLease,
    NodeInfo,
    NodeStatus,
)
from ade.cluster.relay import EventPointer, EventRelay, Hub, format_pointer
from ade.errors import AdeError
from ade.ids import new_id
from ade.models import JobStatus
from ade.settings import Settings
from ade.store.postgres import PostgresStore

__all__ = ["ClusterMember", "node_mode"]

logger = logging.getLogger(__name__)


def node_mode(workers: int, api: bool) -> str:
    """``serve`` (API + workers), ``api`` (``--workers 0``) or ``worker`` (``ade worker``)."""
    if not api:
        return "worker"
    return "serve" if workers else "api"


@attrs.define
class ClusterSnapshot:
    """The cluster as the last pulse saw it (statistics() must not wait on the database)."""

    totals: dict[JobStatus, int] = attrs.Factory(dict)
    nodes: list[NodeStatus] = attrs.Factory(list)


class ClusterMember:
    def __init__(
        self,
        settings: Settings,
        store: PostgresStore,
        *,
        workers: int,
        api: bool,
        url: str | None = None,
    ) -> None:
        assert settings.database_url is not None
        self.settings = settings
        self.node_id = settings.node_id or default_node_id()
        self.queue = ClusterQueue(store, self.node_id, lease_seconds=settings.lease_seconds)
        self.pulse = Pulse(settings.lease_seconds)
        self.kicks = Kicks()
        channels = [JOBS_CHANNEL, CANCEL_CHANNEL, EVENTS_CHANNEL]
        self.listener = Listener(settings.database_url, channels)
        self.info = NodeInfo(
            id=self.node_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            mode=node_mode(workers, api),
            workers=workers,
            url=url,
            incarnation=new_id(),
        )
        self.snapshot = ClusterSnapshot()
        self._relay: EventRelay | None = None

    @property
    def poll_seconds(self) -> float:
        """The slow poll behind every notification (claims, cancels, waiting for an end)."""
        return self.pulse.interval

    async def register(self, url: str | None = None) -> None:
        if url is not None:
            self.info = attrs.evolve(self.info, url=url)
        await self.queue.register(self.info)
        await self.refresh(None)
        logger.info(
            "node %s registered (%s, %d worker(s), lease %g s)",
            self.node_id,
            self.info.mode,
            self.info.workers,
            self.settings.lease_seconds,
        )

    async def refresh(self, dispatcher: ClusterDispatcherState | None) -> None:
        """Cluster-wide numbers for statistics() and /health, once per pulse."""
        queued, reserved = await self.queue.waiting()
        if dispatcher is not None:
            dispatcher.cluster_queued = queued
            dispatcher.cluster_reserved = reserved
        self.snapshot = ClusterSnapshot(
            totals=await self.queue.store.count_by_status(), nodes=await self.queue.nodes()
        )

    async def announce(self, plan: Any) -> None:
        """The recorder wrote ``plan``'s events: point the other nodes at them."""
        first, last = plan.events[0], plan.events[-1]
        pointer = EventPointer(self.node_id, first.workspace_id, plan.job_id, first.seq, last.seq)
        await self.queue.store.run(
            lambda conn: conn.execute(
                "SELECT pg_notify(%s, %s)", (EVENTS_CHANNEL, format_pointer(pointer))
            )
        )

    async def run(
        self,
        *,
        hub: Hub,
        jobs_dir: Path,
        dispatcher: ClusterDispatcherState,
        running: Callable[[], set[str]],
        stop_local: Callable[[str, str], None],
        rescue: Callable[[ExpiredLease], Awaitable[None]],
        lost_contact: Callable[[], None],
        task_status: Any = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """LISTEN and the pulse, until cancelled. ``stop_local(job_id, reason)`` stops a job
        running on this node (a cancel request from another node)."""
        self._relay = EventRelay(hub, jobs_dir, self.node_id)

        async def cancel_requested(job_ids: list[str]) -> None:
            for job_id in job_ids:
                stop_local(job_id, "user")

        refreshing = False

        async def refresh() -> None:
            nonlocal refreshing
            try:
                await self.refresh(dispatcher)
            except AdeError as exc:
                logger.warning("could not refresh the cluster's statistics: %s", exc.message)
            finally:
                refreshing = False

        def tick() -> None:
            # The slow poll: claim even if an ade_jobs notification was lost.
            self.kicks.kick()
            nonlocal refreshing
            if not refreshing:
                refreshing = True
                nursery.start_soon(refresh)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.listener.run)
            nursery.start_soon(self._consume, stop_local)
            with trio.move_on_after(10):
                await self.listener.listening.wait()
            nursery.start_soon(
                partial(
                    run_pulse,
                    self.queue,
                    self.pulse,
                    running=running,
                    cancel_requested=cancel_requested,
                    rescue=rescue,
                    lost_contact=lost_contact,
                    lost=lambda job_id: stop_local(job_id, "shutdown"),
                    tick=tick,
                )
            )
            task_status.started()

    async def _consume(self, stop_local: Callable[[str, str], None]) -> None:
        assert self._relay is not None
        async for notification in self.listener.receive:
            if notification.channel == JOBS_CHANNEL:
                self.kicks.kick()
            elif notification.channel == CANCEL_CHANNEL:
                node_id, _, job_id = notification.payload.partition(" ")
                if node_id == self.node_id:
                    stop_local(job_id, "user")
            elif notification.channel == EVENTS_CHANNEL:
                try:
                    await self._relay.handle(notification.payload)
                except OSError as exc:
                    logger.warning("could not relay events (%s): %s", notification.payload, exc)
