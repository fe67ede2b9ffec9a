"""The cluster's shared state on a real PostgreSQL: admission bound under concurrent nodes,
Retry-After from the cluster's durations, FIFO claims without double claims, leases, fencing,
notifications, node registry."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import timedelta

import attrs
import pytest
import trio
from support import ensure_workspaces

from ade.auth import Workspace
from ade.cluster.listen import Listener
from ade.cluster.queue import (
    JOBS_CHANNEL,
    ClusterQueue,
    NodeIdInUse,
    NodeInfo,
    retry_after_seconds,
)
from ade.errors import Conflict, LeaseLost, NotFound, QueueFull
from ade.ids import new_id
from ade.models import JobRecord, JobStatus
from ade.serde import utcnow
from ade.store.access import access_store
from ade.store.postgres import PostgresStore


def queued_job(**changes: object) -> JobRecord:
    job = JobRecord(
        id=new_id(),
        workspace_id="ws",
        status=JobStatus.QUEUED,
        config_version_id="cfg",
        document_ids=("d1",),
        runtime_network_access=False,
        attempt=1,
        created_at=utcnow(),
    )
    return attrs.evolve(job, **changes)


@pytest.fixture
async def stores(postgres_url: str) -> AsyncIterator[list[PostgresStore]]:
    """Three stores on one database: three nodes' connection pools (and the workspace the
    jobs are in)."""
    opened = [PostgresStore(postgres_url, pool_size=4) for _ in range(3)]
    try:
        await ensure_workspaces(opened[0], "ws")
        yield opened
    finally:
        for store in opened:
            store.close()


def node(store: PostgresStore, name: str, lease: float = 30.0) -> ClusterQueue:
    return ClusterQueue(store, name, lease_seconds=lease)


async def register(queue: ClusterQueue, workers: int = 2) -> None:
    await queue.register(
        NodeInfo(queue.node_id, "host", os.getpid(), "serve", workers, None, new_id())
    )


async def test_concurrent_reservations_on_three_nodes_never_exceed_the_bound(
    stores: list[PostgresStore],
) -> None:
    queues = [node(store, f"n{i}") for i, store in enumerate(stores)]
    for queue in queues:
        await register(queue)
    # Two jobs already queued count against the bound of 5.
    for _ in range(2):
        job = queued_job()
        await queues[0].reserve(job.id, 5)
        await stores[0].insert_job(job)
    granted: list[str] = []
    refused: list[QueueFull] = []

    async def submit(queue: ClusterQueue) -> None:
        job_id = new_id()
        try:
            await queue.reserve(job_id, 5)
        except QueueFull as exc:
            refused.append(exc)
        else:
            granted.append(job_id)

    async with trio.open_nursery() as nursery:
        for i in range(30):
            nursery.start_soon(submit, queues[i % 3])
    assert len(granted) == 3
    assert len(refused) == 27
    assert {(e.queued, e.capacity) for e in refused} == {(5, 5)}
    # No finished job yet: 1 s default / 6 live workers, rounded up to the 1 s floor.
    assert {e.retry_after_seconds for e in refused} == {1}
    assert await queues[1].waiting() == (2, 3)
    # Inserting a reserved job's row frees its reservation in the same transaction.
    await stores[2].insert_job(queued_job(id=granted[0]))
    assert await queues[1].waiting() == (3, 2)
    await queues[0].release(granted[1])
    assert await queues[1].waiting() == (3, 1)


async def test_a_refusal_s_retry_after_comes_from_the_cluster_s_durations_and_live_workers(
    stores: list[PostgresStore],
) -> None:
    a, b, c = (node(store, name) for store, name in zip(stores, "abc", strict=True))
    await register(a, workers=3)
    await register(b, workers=1)
    await register(c, workers=50)
    await c.stop()  # a stopped node's workers free no slot
    # Jobs that ran on A and on B, 30 s and 50 s; a job that never started has no duration.
    started = utcnow()
    for store, seconds in ((stores[0], 30), (stores[1], 50)):
        await store.insert_job(
            queued_job(
                status=JobStatus.SUCCESS,
                started_at=started,
                finished_at=started + timedelta(seconds=seconds),
            )
        )
    await stores[0].insert_job(queued_job(status=JobStatus.CANCELLED, finished_at=started))
    assert sorted(await c.recent_durations()) == [30.0, 50.0]
    await stores[0].insert_job(queued_job())
    # Refused on C, which ran nothing: mean 40 s over the 4 live workers of A and B.
    with pytest.raises(QueueFull) as refused:
        await c.reserve(new_id(), 1)
    assert (refused.value.queued, refused.value.capacity) == (1, 1)
    assert refused.value.retry_after_seconds == 10
    assert await a.waiting() == (1, 0)  # the refusal wrote nothing


def test_retry_after_uses_the_cluster_workers() -> None:
    assert retry_after_seconds([], 0) == 1
    assert retry_after_seconds([30.0, 50.0], 4) == 10
    assert retry_after_seconds([30.0], 0) == 30
    assert retry_after_seconds([1e9], 1) == 3600


async def test_claims_are_fifo_and_no_job_is_claimed_twice(
    stores: list[PostgresStore],
) -> None:
    jobs = []
    for _ in range(40):
        job = queued_job()
        jobs.append(job.id)
        await stores[0].insert_job(job)
        await trio.sleep(0.001)
    claimed: dict[str, list[str]] = {}

    async def drain(queue: ClusterQueue) -> None:
        mine = claimed.setdefault(queue.node_id, [])
        while (claim := await queue.claim()) is not None:
            assert claim.job.status is JobStatus.RUNNING
            assert claim.job.started_at is not None
            mine.append(claim.job.id)

    async with trio.open_nursery() as nursery:
        for i, store in enumerate(stores):
            nursery.start_soon(drain, node(store, f"n{i}"))
    every = [job_id for ids in claimed.values() for job_id in ids]
    assert sorted(every) == sorted(jobs)
    assert len(set(every)) == len(jobs)
    for ids in claimed.values():
        assert ids == sorted(ids)  # each node took the oldest job left every time
    assert all(claimed.values()), claimed  # every node got work


async def test_an_expired_lease_is_fenced_and_the_late_node_cannot_write(
    stores: list[PostgresStore],
) -> None:
    late, rescuer = node(stores[0], "late", lease=1.0), node(stores[1], "rescuer", lease=1.0)
    await register(late)
    await register(rescuer)
    job = queued_job()
    await stores[0].insert_job(job)
    claim = await late.claim()
    assert claim is not None and claim.job.id == job.id
    assert await rescuer.expired() == []
    await trio.sleep(0.6)
    await late.heartbeat(running=1)  # renews the lease
    await trio.sleep(0.6)
    assert await rescuer.expired() == []
    await trio.sleep(1.1)
    [expired] = await rescuer.expired()
    assert (expired.job_id, expired.node_id) == (job.id, "late")
    assert await rescuer.take_over(expired) is True
    assert await rescuer.take_over(expired) is False  # the token moved on
    # The late node comes back: its heartbeat renews nothing it can use, its result is refused.
    await late.heartbeat(running=1)
    finished = attrs.evolve(claim.job, status=JobStatus.SUCCESS, finished_at=utcnow())
    with pytest.raises(LeaseLost, match="no longer leased to this node"):
        await stores[0].update_job(finished, expected=JobStatus.RUNNING)
    interrupted = attrs.evolve(
        claim.job, status=JobStatus.ERROR, error_message="interrupted: node late stopped"
    )
    await stores[1].update_job(interrupted, expected=JobStatus.RUNNING)
    assert await stores[2].get_job(job.id) == interrupted
    # A compare-and-set on status from a node that holds no lease.
    with pytest.raises(Conflict, match="is error, not queued"):
        await stores[2].update_job(
            attrs.evolve(interrupted, status=JobStatus.CANCELLED), expected=JobStatus.QUEUED
        )


async def test_nodes_register_heartbeat_and_refuse_a_duplicate_live_id(
    stores: list[PostgresStore],
) -> None:
    a = node(stores[0], "a", lease=1.0)
    await register(a, workers=3)
    with pytest.raises(NodeIdInUse, match="node id 'a' is in use by a live node"):
        await register(node(stores[1], "a", lease=1.0))
    await a.heartbeat(running=2)
    [status] = await a.nodes()
    assert (status.id, status.workers, status.running, status.alive) == ("a", 3, 2, True)
    await a.stop()
    [status] = await a.nodes()
    assert status.alive is False and status.stopped_at is not None
    # Stopped: the id may be taken again at once (a restart under the same id).
    await register(node(stores[1], "a", lease=1.0))
    # A reservation of a node that stopped heartbeating is freed.
    b = node(stores[2], "b", lease=1.0)
    await register(b)
    await b.reserve(new_id(), 10)
    assert await a.forget_dead_reservations() == 0
    await trio.sleep(1.2)
    assert await a.forget_dead_reservations() == 1


async def test_a_queued_insert_notifies_listeners(
    stores: list[PostgresStore], postgres_url: str
) -> None:
    listener = Listener(postgres_url, [JOBS_CHANNEL])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(listener.run)
        with trio.fail_after(10):
            await listener.listening.wait()
            job = queued_job()
            await stores[0].insert_job(job)
            notification = await listener.receive.receive()
        assert (notification.channel, notification.payload) == (JOBS_CHANNEL, job.id)
        nursery.cancel_scope.cancel()


async def test_the_idempotency_lock_serialises_two_nodes(stores: list[PostgresStore]) -> None:
    # Two nodes' locks on the same key: the second waits until the first is released; a
    # different key does not wait.
    from ade.api.idempotency import ClusterKeyLocks

    first, second = ClusterKeyLocks(stores[0].key_lock), ClusterKeyLocks(stores[1].key_lock)
    order: list[str] = []

    async def hold(locks: ClusterKeyLocks, name: str, key: str, seconds: float) -> None:
        async with locks.hold("ws", key):
            order.append(f"{name} in")
            await trio.sleep(seconds)
            order.append(f"{name} out")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold, first, "a", "k", 0.3)
        await trio.sleep(0.1)
        nursery.start_soon(hold, second, "b", "k", 0.0)
        nursery.start_soon(hold, second, "c", "other", 0.0)
    assert order.index("c in") < order.index("a out")
    assert order.index("b in") > order.index("a out")


async def test_a_job_refused_for_its_deleted_workspace_keeps_its_slot_until_admission_frees_it(
    stores: list[PostgresStore],
) -> None:
    # The workspace was deleted after admission reserved the slot and validated the job: the
    # insert is refused and rolls back whole (the reservation it would have freed included),
    # so the slot is held until admission's release, and the job is in no count.
    queue = node(stores[0], "n0")
    await register(queue)
    job = queued_job(workspace_id="gone")
    await access_store(stores[1]).create_workspace(Workspace("gone", utcnow()))
    await queue.reserve(job.id, 5)
    assert await access_store(stores[1]).delete_workspace("gone") == []
    with pytest.raises(NotFound, match=r"^workspace gone not found$"):
        await stores[0].insert_job(job)
    assert await queue.waiting() == (0, 1)
    await queue.release(job.id)
    assert await queue.waiting() == (0, 0)
    assert await stores[2].get_job(job.id) is None
