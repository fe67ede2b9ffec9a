"""The cluster's shared state in PostgreSQL: nodes, admission, the queue, leases.

Theory of operation
-------------------
Every statement here is one short transaction through :class:`ade.store.postgres.PostgresStore`
(so it runs in a worker thread and maps connection failures to ``StoreUnavailable``).

- **Admission** (``reserve``): under a transaction-level advisory lock, count the queued jobs of
  the whole cluster plus the reservations in flight; below ``capacity`` a reservation row is
  inserted, otherwise :class:`QueueFull` is raised and nothing is written. The reservation is
  deleted in the same transaction that inserts the job row (``PostgresStore.insert_job``), or by
  ``release`` if the submission fails, or by ``rescue`` if its node dies mid-submission. The
  queue is bounded by ``capacity`` (the number of queued rows never exceeds it) because the
  count, the check and the insert are one critical section across all nodes.
- **Claiming** (``claim``): the oldest queued job (ids sort by creation time) is taken with
  ``FOR UPDATE SKIP LOCKED`` and marked running for this node with a fresh lease token from a
  sequence and a lease deadline. Two nodes never get the same job; a locked row is skipped, not
  waited for.
- **Leases and fencing**: the lease deadline of a node's running jobs is pushed forward by its
  heartbeat. ``expired`` lists running jobs whose deadline passed (their node stopped
  heartbeating); the rescuer marks them with a compare-and-set on (status, lease token), so a
  node that comes back late finds its token gone and its writes refused
  (:class:`ade.store.postgres.LeaseLost`).
- Wake-ups: inserting a queued job notifies channel ``ade_jobs`` (at commit); a cancel request
  for a job running elsewhere notifies ``ade_cancel``. Listeners treat notifications as hints
  and poll slowly as a fallback, so a lost notification only delays, never loses, work.

Times come from the database's clock (``now()``), never a node's: nodes on several machines
then agree on which leases have expired whatever their own clocks say.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs
import psycopg

from ade.errors import QueueFull
from ade.models import JobRecord
from ade.store.postgres import JOB_SELECT_COLUMNS, JOBS_CHANNEL, PostgresStore, job_from_row

__all__ = [
    "ADMISSION_LOCK",
    "CANCEL_CHANNEL",
    "EVENTS_CHANNEL",
    "JOBS_CHANNEL",
    "Claim",
    "ClusterQueue",
    "ExpiredLease",
    "Heartbeat",
    "NodeIdInUse",
    "NodeInfo",
    "NodeStatus",
    "retry_after_seconds",
]

CANCEL_CHANNEL = "ade_cancel"
EVENTS_CHANNEL = "ade_events"
# pg_advisory_xact_lock key serialising admission across nodes ("ADE" + 2).
ADMISSION_LOCK = 0x414445_02
# How many recent job durations the retry-after hint averages (as on one node).
DURATION_WINDOW = 20
DEFAULT_DURATION_SECONDS = 1.0
MAX_RETRY_AFTER_SECONDS = 3600


@attrs.frozen
class NodeInfo:
    """What a node says about itself when it registers."""

    id: str
    host: str
    pid: int
    mode: str  # "serve" (API + workers), "api" (--workers 0), "worker" (ade worker)
    workers: int
    url: str | None
    incarnation: str


@attrs.frozen
class NodeStatus:
    id: str
    host: str
    pid: int
    mode: str
    workers: int
    running: int
    url: str | None
    started_at: datetime
    last_heartbeat: datetime
    seconds_since_heartbeat: float
    stopped_at: datetime | None
    alive: bool


@attrs.frozen
class Claim:
    job: JobRecord
    lease_token: int


@attrs.frozen
class Heartbeat:
    renewed: frozenset[str]
    cancel_requested: list[str]


@attrs.frozen
class ExpiredLease:
    job_id: str
    node_id: str
    lease_token: int


def retry_after_seconds(durations: Sequence[float], workers: int) -> int:
    """How long until a slot is expected to free up: one job leaves the queue each time any
    worker of the cluster finishes, so about mean recent duration / live workers."""
    mean = sum(durations) / len(durations) if durations else DEFAULT_DURATION_SECONDS
    per_slot = mean / max(1, workers)
    return max(1, min(MAX_RETRY_AFTER_SECONDS, math.ceil(per_slot)))


_NODE_COLUMNS = (
    "id, host, pid, mode, workers, running, url, started_at, last_heartbeat, "
    "EXTRACT(EPOCH FROM now() - last_heartbeat), stopped_at"
)


class ClusterQueue:
    """The cluster operations of one node (``node_id``) over the shared PostgreSQL store."""

    def __init__(self, store: PostgresStore, node_id: str, *, lease_seconds: float) -> None:
        self.store = store
        self.node_id = node_id
        self.lease_seconds = lease_seconds

    # -- nodes ---------------------------------------------------------------------------------

    async def register(self, info: NodeInfo) -> None:
        """Insert or take over this node's row. Refused (RuntimeError) while another live
        process holds the same id: two nodes with one id would fence each other's jobs."""

        def upsert(conn: psycopg.Connection[Any]) -> None:
            row = conn.execute(
                "SELECT incarnation, stopped_at IS NULL AND "
                "last_heartbeat > now() - make_interval(secs => %s), "
                "EXTRACT(EPOCH FROM now() - last_heartbeat) FROM nodes WHERE id = %s FOR UPDATE",
                (self.lease_seconds, info.id),
            ).fetchone()
            if row is not None and row[1] and row[0] != info.incarnation:
                raise NodeIdInUse(
                    f"node id {info.id!r} is in use by a live node (last heartbeat "
                    f"{float(row[2]):.1f} s ago); choose another ADE_NODE_ID or wait "
                    f"{self.lease_seconds:g} s (ADE_LEASE_SECONDS) after that node stopped"
                )
            conn.execute(
                "INSERT INTO nodes (id, host, pid, mode, workers, running, url, incarnation, "
                "started_at, last_heartbeat, stopped_at) "
                "VALUES (%s, %s, %s, %s, %s, 0, %s, %s, now(), now(), NULL) "
                "ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, "
                "mode = EXCLUDED.mode, workers = EXCLUDED.workers, running = 0, "
                "url = EXCLUDED.url, incarnation = EXCLUDED.incarnation, "
                "started_at = now(), last_heartbeat = now(), stopped_at = NULL",
                (info.id, info.host, info.pid, info.mode, info.workers, info.url, info.incarnation),
            )

        await self.store.run(upsert)

    async def set_url(self, url: str) -> None:
        await self.store.run(
            lambda conn: conn.execute(
                "UPDATE nodes SET url = %s WHERE id = %s", (url, self.node_id)
            )
        )

    async def heartbeat(self, running: int) -> Heartbeat:
        """Renew this node's heartbeat and the leases of its running jobs (those it still
        holds: a job fenced by another node is not renewed); returns them and the ones
        someone asked to cancel (the fallback for a lost notification)."""

        def beat(conn: psycopg.Connection[Any]) -> Heartbeat:
            conn.execute(
                "UPDATE nodes SET last_heartbeat = now(), running = %s WHERE id = %s",
                (running, self.node_id),
            )
            rows = conn.execute(
                "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => %s) "
                "WHERE status = 'running' AND node_id = %s AND lease_token = ANY(%s) "
                "RETURNING id, cancel_requested",
                (self.lease_seconds, self.node_id, list(self.store.leases().values())),
            ).fetchall()
            return Heartbeat(
                renewed=frozenset(job_id for job_id, _ in rows),
                cancel_requested=[job_id for job_id, cancel in rows if cancel],
            )

        return await self.store.run(beat)

    async def stop(self) -> None:
        """A graceful exit: the node shows as stopped at once instead of after its lease."""

        def stopped(conn: psycopg.Connection[Any]) -> None:
            conn.execute(
                "UPDATE nodes SET stopped_at = now(), running = 0 WHERE id = %s", (self.node_id,)
            )

        await self.store.run(stopped)

    async def nodes(self) -> list[NodeStatus]:
        return await self.store.run(lambda conn: list_nodes(conn, self.lease_seconds), write=False)

    # -- admission -----------------------------------------------------------------------------

    async def reserve(self, job_id: str, capacity: int) -> None:
        """Hold a queue slot for ``job_id`` or raise QueueFull (nothing written then)."""

        def take(conn: psycopg.Connection[Any]) -> None:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADMISSION_LOCK,))
            row = conn.execute(
                "SELECT (SELECT COUNT(*) FROM jobs WHERE status = 'queued'), "
                "(SELECT COUNT(*) FROM reservations)"
            ).fetchone()
            assert row is not None
            waiting = int(row[0]) + int(row[1])
            if waiting >= capacity:
                raise QueueFull(waiting, capacity, self._retry_after(conn))
            conn.execute(
                "INSERT INTO reservations (job_id, node_id, created_at) VALUES (%s, %s, now())",
                (job_id, self.node_id),
            )

        await self.store.run(take)

    async def release(self, job_id: str) -> None:
        await self.store.run(
            lambda conn: conn.execute("DELETE FROM reservations WHERE job_id = %s", (job_id,))
        )

    async def waiting(self) -> tuple[int, int]:
        """(queued jobs, reservations in flight) across the cluster."""

        def count(conn: psycopg.Connection[Any]) -> tuple[int, int]:
            row = conn.execute(
                "SELECT (SELECT COUNT(*) FROM jobs WHERE status = 'queued'), "
                "(SELECT COUNT(*) FROM reservations)"
            ).fetchone()
            assert row is not None
            return int(row[0]), int(row[1])

        return await self.store.run(count, write=False)

    def _retry_after(self, conn: psycopg.Connection[Any]) -> int:
        durations = _recent_durations(conn)
        row = conn.execute(
            "SELECT COALESCE(SUM(workers), 0) FROM nodes WHERE stopped_at IS NULL "
            "AND last_heartbeat > now() - make_interval(secs => %s)",
            (self.lease_seconds,),
        ).fetchone()
        return retry_after_seconds(durations, int(row[0]) if row else 0)

    async def recent_durations(self) -> list[float]:
        """The last jobs' run times across the cluster, newest first."""
        return await self.store.run(_recent_durations, write=False)

    # -- the queue -----------------------------------------------------------------------------

    async def claim(self) -> Claim | None:
        """Take the oldest queued job for this node, or None if the queue is empty."""

        def take(conn: psycopg.Connection[Any]) -> Claim | None:
            row = conn.execute(
                f"UPDATE jobs SET status = 'running', started_at = now(), node_id = %s, "
                f"lease_token = nextval('job_lease_tokens'), cancel_requested = false, "
                f"lease_expires_at = now() + make_interval(secs => %s) "
                f"WHERE id = (SELECT id FROM jobs WHERE status = 'queued' ORDER BY id "
                f"LIMIT 1 FOR UPDATE SKIP LOCKED) "
                f"RETURNING {JOB_SELECT_COLUMNS}, lease_token",
                (self.node_id, self.lease_seconds),
            ).fetchone()
            if row is None:
                return None
            return Claim(job_from_row(row), int(row[-1]))

        claim = await self.store.run(take)
        if claim is not None:
            self.store.hold_lease(claim.job.id, claim.lease_token)
        return claim

    async def expired(self) -> list[ExpiredLease]:
        """Running jobs whose lease has run out (their node stopped heartbeating)."""

        def query(conn: psycopg.Connection[Any]) -> list[ExpiredLease]:
            rows = conn.execute(
                "SELECT id, node_id, lease_token FROM jobs WHERE status = 'running' "
                "AND lease_expires_at < now() ORDER BY id"
            ).fetchall()
            return [ExpiredLease(job_id, node, int(token)) for job_id, node, token in rows]

        return await self.store.run(query, write=False)

    async def take_over(self, lease: ExpiredLease) -> bool:
        """Fence an expired lease: the job gets a new token held by this node, so its old node
        can never write it again, and this node may record its end. False if the lease was
        renewed or the job ended meanwhile (nothing to rescue)."""
        return await self._fence(
            lease.job_id, "lease_token = %s AND lease_expires_at < now()", lease.lease_token
        )

    async def take_over_own(self, job_id: str) -> bool:
        """At start-up: fence a job the previous process under this node id left running (it
        is dead: this process holds the node id), whatever its lease says."""
        return await self._fence(job_id, "node_id = %s", self.node_id)

    async def _fence(self, job_id: str, condition: str, value: Any) -> bool:
        def steal(conn: psycopg.Connection[Any]) -> int | None:
            row = conn.execute(
                "UPDATE jobs SET lease_token = nextval('job_lease_tokens') "
                f"WHERE id = %s AND status = 'running' AND {condition} RETURNING lease_token",
                (job_id, value),
            ).fetchone()
            return None if row is None else int(row[0])

        token = await self.store.run(steal)
        if token is None:
            return False
        self.store.hold_lease(job_id, token)
        return True

    async def own_running(self) -> list[str]:
        """Jobs the store says this node runs: at start-up, the previous process's."""

        def query(conn: psycopg.Connection[Any]) -> list[str]:
            rows = conn.execute(
                "SELECT id FROM jobs WHERE status = 'running' AND node_id = %s ORDER BY id",
                (self.node_id,),
            ).fetchall()
            return [row[0] for row in rows]

        return await self.store.run(query, write=False)

    async def forget_dead_reservations(self) -> int:
        """Reservations of nodes that stopped heartbeating: their submissions never got a 202
        and never will, so their slots are freed."""

        def delete(conn: psycopg.Connection[Any]) -> int:
            cursor = conn.execute(
                "DELETE FROM reservations r WHERE NOT EXISTS (SELECT 1 FROM nodes n "
                "WHERE n.id = r.node_id AND n.stopped_at IS NULL "
                "AND n.last_heartbeat > now() - make_interval(secs => %s))",
                (self.lease_seconds,),
            )
            return cursor.rowcount

        return await self.store.run(delete)

    async def request_cancel(self, job_id: str) -> str | None:
        """Flag a job running on another node for cancellation and wake that node; returns the
        node id, or None if the job is not running (any more)."""

        def flag(conn: psycopg.Connection[Any]) -> str | None:
            row = conn.execute(
                "UPDATE jobs SET cancel_requested = true WHERE id = %s AND status = 'running' "
                "RETURNING node_id",
                (job_id,),
            ).fetchone()
            if row is None:
                return None
            conn.execute("SELECT pg_notify(%s, %s)", (CANCEL_CHANNEL, f"{row[0]} {job_id}"))
            return str(row[0])

        return await self.store.run(flag)


def _recent_durations(conn: psycopg.Connection[Any]) -> list[float]:
    rows = conn.execute(
        "SELECT EXTRACT(EPOCH FROM finished_at - started_at) FROM jobs "
        "WHERE started_at IS NOT NULL AND finished_at IS NOT NULL "
        "ORDER BY finished_at DESC LIMIT %s",
        (DURATION_WINDOW,),
    ).fetchall()
    return [float(row[0]) for row in rows]


class NodeIdInUse(RuntimeError):
    """Another live process registered the same node id."""


def list_nodes(conn: psycopg.Connection[Any], lease_seconds: float) -> list[NodeStatus]:
    statuses = []
    for row in conn.execute(f"SELECT {_NODE_COLUMNS} FROM nodes ORDER BY id").fetchall():
        id_, host, pid, mode, workers, running, url, started_at, last_heartbeat, age, stopped = row
        statuses.append(
            NodeStatus(
                id=id_,
                host=host,
                pid=pid,
                mode=mode,
                workers=workers,
                running=running,
                url=url,
                started_at=started_at,
                last_heartbeat=last_heartbeat,
                seconds_since_heartbeat=round(float(age), 3),
                stopped_at=stopped,
                alive=stopped is None and float(age) < lease_seconds,
            )
        )
    return statuses
