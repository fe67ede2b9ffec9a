"""How an idle node learns of queued work, on a real PostgreSQL: the `ade_jobs` notification
wakes it at once, and when a notification is lost the pulse's slow poll still claims the job
(docs/operations.md, "Claiming"). One node's real ClusterMember (LISTEN + pulse) drives the
real cluster dispatcher; only the worker side is a list of assignments."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import attrs
import trio
from support import ensure_workspaces

from ade.cluster.dispatcher import (
    ClusterDispatcherMessage,
    ClusterDispatcherState,
    run_cluster_dispatcher,
)
from ade.cluster.member import ClusterMember
from ade.cluster.queue import ExpiredLease
from ade.ids import new_id
from ade.models import JobEvent, JobRecord, JobStatus
from ade.runtime.messages import Assign, WorkerIdle
from ade.serde import utcnow
from ade.settings import load_settings
from ade.store.postgres import PostgresStore


class NoSubscribers:
    """The node's event hub: nobody here follows another node's job."""

    def wants(self, workspace_id: str, job_id: str) -> bool:
        return False

    def publish(self, event: JobEvent) -> None:
        raise AssertionError(f"nothing should be relayed here: {event}")


@attrs.define
class IdleNode:
    member: ClusterMember
    store: PostgresStore
    assigned: list[Assign]


@asynccontextmanager
async def idle_node(
    tmp_path: Path, postgres_url: str, lease_seconds: float
) -> AsyncIterator[IdleNode]:
    """A registered node with one idle worker whose first pulse round (heartbeat, rescue, the
    poll's claim) is over: from here on only a notification or the next poll can wake it."""
    settings = load_settings(
        {},
        data_dir=tmp_path / "data",
        database_url=postgres_url,
        lease_seconds=lease_seconds,
        node_id="idle",
    )
    store = PostgresStore(postgres_url, pool_size=4)
    await ensure_workspaces(store, "ws")  # the workspace of queued_job()
    member = ClusterMember(settings, store, workers=1, api=False)
    state = ClusterDispatcherState(capacity=10, workers=1)
    send, inbox = trio.open_memory_channel[ClusterDispatcherMessage](10)
    node = IdleNode(member, store, [])

    async def rescue(lease: ExpiredLease) -> None:
        raise AssertionError(f"no node died here: {lease}")

    def unexpected(*args: object) -> None:
        raise AssertionError(f"unexpected call: {args}")

    try:
        await member.register()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                partial(
                    run_cluster_dispatcher,
                    state,
                    inbox,
                    queue=member.queue,
                    kicks=member.kicks,
                    assign=node.assigned.append,
                    cancel_running=unexpected,
                )
            )
            await nursery.start(
                partial(
                    member.run,
                    hub=NoSubscribers(),
                    jobs_dir=settings.jobs_dir,
                    dispatcher=state,
                    running=lambda: set(state.running_jobs),
                    stop_local=unexpected,
                    rescue=rescue,
                    lost_contact=unexpected,
                )
            )
            await send.send(WorkerIdle(0))
            with trio.fail_after(10):
                while member.pulse.last_contact is None:
                    await trio.sleep(0.01)
            # The first round's rescue query and claim take milliseconds; a second leaves it
            # well behind before the test queues anything.
            await trio.sleep(1.0)
            assert node.assigned == []
            yield node
            nursery.cancel_scope.cancel()
    finally:
        store.close()


def queued_job() -> JobRecord:
    return JobRecord(new_id(), "ws", JobStatus.QUEUED, "cfg", ("d1",), False, 1, utcnow())


async def wait_assigned(node: IdleNode, seconds: float) -> list[str]:
    with trio.fail_after(seconds):
        while not node.assigned:
            await trio.sleep(0.01)
    return [assign.job.id for assign in node.assigned]


async def test_a_notification_wakes_an_idle_node_long_before_its_poll(
    tmp_path: Path, postgres_url: str
) -> None:
    # Lease 60 s: the next poll is 20 s away, so a claim within 10 s was the notification's.
    async with idle_node(tmp_path, postgres_url, lease_seconds=60.0) as node:
        job = queued_job()
        await node.store.insert_job(job)  # NOTIFY ade_jobs at commit
        assert await wait_assigned(node, 10.0) == [job.id]


async def test_a_job_whose_notification_was_lost_is_claimed_by_the_poll(
    tmp_path: Path, postgres_url: str
) -> None:
    # Lease 1.5 s: a poll every 0.5 s. The job becomes queued without any notification (a
    # cancelled row flipped back by hand, as if the NOTIFY had been lost), and no worker event
    # follows: only the poll can make the node claim it.
    async with idle_node(tmp_path, postgres_url, lease_seconds=1.5) as node:
        job = attrs.evolve(queued_job(), status=JobStatus.CANCELLED)
        await node.store.insert_job(job)  # no notification for a row that is not queued
        await node.store.run(
            lambda conn: conn.execute("UPDATE jobs SET status = 'queued' WHERE id = %s", (job.id,))
        )
        assert await wait_assigned(node, 10.0) == [job.id]
        [row] = await node.store.jobs_with_status(JobStatus.RUNNING)
        assert row.id == job.id
