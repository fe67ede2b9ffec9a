"""The PostgreSQL store: the same records as the SQLite store, shared by several nodes.

Theory of operation
-------------------
psycopg 3's synchronous API behind a thread-safe ``psycopg_pool.ConnectionPool``; every public
coroutine hands a small synchronous function to ``trio.to_thread.run_sync`` (no asyncio bridge:
trio and psycopg's asyncio flavour do not mix). A call checks a connection out of the pool, runs
inside one transaction (committed when the function returns, rolled back if it raises) and hands
the connection back, exactly like :class:`ade.store.sqlite.SqliteStore` does with its own pool.

Sessions run in UTC so timestamps come back as they went in, and id columns use ``COLLATE "C"``
so ``ORDER BY id`` is creation order as it is in SQLite (:mod:`ade.ids`).

Opening the store connects once directly (so an unreachable server fails with libpq's own reason,
not a pool timeout), applies pending migrations under an advisory lock (several nodes starting at
once apply each migration exactly once; a node whose code is older than the schema refuses to
start, naming both versions), and only then opens the pool.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import psycopg
import psycopg.conninfo
import psycopg.errors
import trio
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from ade.errors import Conflict, LeaseLost, NotFound, StoreUnavailable
from ade.models import ConfigVersion, Document, JobRecord, JobStatus, StoredResponse
from ade.serde import utcnow
from ade.store.deletion import (
    ACTIVE_STATUSES,
    FINISHED_STATUSES,
    ID_TABLES,
    MAX_NAMED,
    in_use,
    not_finished,
)
from ade.store.history import SchemaError, pending_migrations
from ade.store.migrations import Migration
from ade.store.postgres_migrations import POSTGRES_MIGRATIONS
from ade.store.workspace_guard import require_workspace
from ade.telemetry.histogram import FAST_BUCKETS, Histogram

__all__ = [
    "DEFAULT_POOL_SIZE",
    "JOBS_CHANNEL",
    "JOB_SELECT_COLUMNS",
    "LeaseLost",
    "PostgresIdempotencyStore",
    "PostgresStore",
    "SchemaError",
    "StoreUnavailable",
    "connect",
    "describe_url",
    "job_from_row",
    "migrate_postgres",
    "schema_version",
]

T = TypeVar("T")

_MAX_PAGE = 1000
# How long a call waits for a free pooled connection before reporting the store unavailable.
_POOL_TIMEOUT_SECONDS = 30.0
# Connecting to a server that does not answer: fail start-up quickly with the reason.
_CONNECT_TIMEOUT_SECONDS = 10
# pg_advisory_xact_lock key for schema migrations ("ADE" + 1): any constant shared by all nodes.
_MIGRATION_LOCK = 0x414445_01
# How often a request waiting for another node's Idempotency-Key lock looks again.
_KEY_LOCK_POLL_SECONDS = 0.02
# API handlers, the recorder, heartbeats and rescues of one node share the pool; more
# connections than that only add server load (each is a PostgreSQL backend process).
DEFAULT_POOL_SIZE = 10

_JOB_COLUMNS = (
    "id",
    "workspace_id",
    "status",
    "config_version_id",
    "document_ids",
    "runtime_network_access",
    "attempt",
    "retry_of",
    "created_at",
    "started_at",
    "finished_at",
    "error_message",
    "exit_code",
    "exit_signal",
    "limit_name",
    "sandbox_layers",
    "summary",
    "worker_start",
    "submitted_by",
)
JOB_SELECT_COLUMNS = ", ".join(_JOB_COLUMNS)
_JOB_SELECT = f"SELECT {JOB_SELECT_COLUMNS} FROM jobs"
# Channel notified (at commit) when a queued job is inserted: idle nodes claim it at once.
JOBS_CHANNEL = "ade_jobs"
_DOCUMENT_SELECT = "SELECT workspace_id, id, filename, size, sha256, created_at FROM documents"
_CONFIG_SELECT = (
    "SELECT workspace_id, id, title, version, content_hash, created_at, runtime_network_access "
    "FROM config_versions"
)


def describe_url(url: str) -> str:
    """``user@host:port/dbname`` for messages: never the password."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparsable ADE_DATABASE_URL>"
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    user = parts.get("user") or "?"
    return f"{user}@{host}:{port}/{parts.get('dbname') or user}"


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    """One connection outside the pool (migrations, LISTEN); errors name the server."""
    try:
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=_CONNECT_TIMEOUT_SECONDS)
    except psycopg.OperationalError as exc:
        reason = " ".join(line.strip() for line in str(exc).splitlines()) or type(exc).__name__
        raise StoreUnavailable(
            f"cannot connect to PostgreSQL at {describe_url(url)} (ADE_DATABASE_URL): {reason}",
            {"database": describe_url(url)},
        ) from None
    _configure(conn)
    return conn


def _configure(conn: psycopg.Connection[Any]) -> None:
    # UTC sessions: timestamps round-trip with the offset they had (+00:00).
    with conn.transaction():
        conn.execute("SET TIME ZONE 'UTC'")


def migrate_postgres(
    conn: psycopg.Connection[Any], migrations: Sequence[Migration] = POSTGRES_MIGRATIONS
) -> list[int]:
    """Bring the schema up to date in one transaction; returns the versions applied now.

    The advisory lock serialises nodes starting at the same moment: the second one waits,
    then finds nothing left to do. Refusals are :class:`SchemaError` naming the versions.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
        )
        applied = dict(conn.execute("SELECT version, name FROM schema_migrations").fetchall())
        pending = pending_migrations(applied, migrations, where="PostgreSQL")
        for migration in pending:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                (migration.version, migration.name, utcnow()),
            )
    return [m.version for m in pending]


def _job_params(job: JobRecord) -> tuple[Any, ...]:
    return (
        job.id,
        job.workspace_id,
        job.status.value,
        job.config_version_id,
        list(job.document_ids),
        job.runtime_network_access,
        job.attempt,
        job.retry_of,
        job.created_at,
        job.started_at,
        job.finished_at,
        job.error_message,
        job.exit_code,
        job.exit_signal,
        job.limit,
        list(job.sandbox_layers),
        Jsonb(job.summary),
        job.worker_start,
        job.submitted_by,
    )


def job_from_row(row: Sequence[Any]) -> JobRecord:
    (
        id_,
        workspace_id,
        status,
        config_version_id,
        document_ids,
        network,
        attempt,
        retry_of,
        created_at,
        started_at,
        finished_at,
        error_message,
        exit_code,
        exit_signal,
        limit_name,
        sandbox_layers,
        summary,
        worker_start,
        submitted_by,
    ) = row[: len(_JOB_COLUMNS)]
    return JobRecord(
        id=id_,
        workspace_id=workspace_id,
        status=JobStatus(status),
        config_version_id=config_version_id,
        document_ids=tuple(document_ids),
        runtime_network_access=network,
        attempt=attempt,
        created_at=created_at,
        retry_of=retry_of,
        started_at=started_at,
        finished_at=finished_at,
        error_message=error_message,
        exit_code=exit_code,
        exit_signal=exit_signal,
        limit=limit_name,
        sandbox_layers=tuple(sandbox_layers),
        summary=summary,
        worker_start=worker_start,
        submitted_by=submitted_by,
    )


def _document_from_row(row: Sequence[Any]) -> Document:
    workspace_id, id_, filename, size, sha256, created_at = row
    return Document(id_, workspace_id, filename, size, sha256, created_at)


def _config_from_row(row: Sequence[Any]) -> ConfigVersion:
    workspace_id, id_, title, version, content_hash, created_at, network = row
    return ConfigVersion(
        id=id_,
        workspace_id=workspace_id,
        title=title,
        version=version,
        content_hash=content_hash,
        created_at=created_at,
        runtime_network_access=network,
    )


class PostgresStore:
    """:class:`ade.protocols.JobStore` + :class:`ade.protocols.CatalogStore` on PostgreSQL.

    Create it with :func:`ade.store.open_store` (``ADE_DATABASE_URL`` set) or directly with a
    URL; close it with :meth:`close` (or ``async with``).
    """

    kind = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        migrations: Sequence[Migration] = POSTGRES_MIGRATIONS,
    ) -> None:
        self.url = url
        self.location = describe_url(url)
        self.idempotency_keys = PostgresIdempotencyStore(self)
        # Every call's time, pool wait and transaction included (/metrics).
        self.latency = Histogram(FAST_BUCKETS)
        with connect(url) as conn:
            migrate_postgres(conn, migrations)
        self._pool: ConnectionPool[Any] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=_POOL_TIMEOUT_SECONDS,
            configure=_configure,
            name="ade",
        )
        self._pool.open(wait=True, timeout=_CONNECT_TIMEOUT_SECONDS)
        self._closed = False
        # job id -> lease token of the jobs this process claimed (ade.cluster.queue): their
        # updates are fenced by the token, so a node that lost a lease cannot write the job.
        self._leases: dict[str, int] = {}

    def hold_lease(self, job_id: str, token: int) -> None:
        self._leases[job_id] = token

    def leases(self) -> dict[str, int]:
        """A copy of the leases this process holds (job id -> token)."""
        return dict(self._leases)

    def drop_lease(self, job_id: str) -> None:
        self._leases.pop(job_id, None)

    async def check_lease(self, job_id: str) -> None:
        """Raise LeaseLost unless this process still holds the lease of a job it claimed
        (a no-op for jobs it holds no lease on). The recorder asks before appending events
        that change no row, so a node that lost a job writes nothing more to its log."""
        token = self._leases.get(job_id)
        if token is None:
            return

        def check(conn: psycopg.Connection[Any]) -> bool:
            row = conn.execute(
                "SELECT 1 FROM jobs WHERE id = %s AND status = 'running' AND lease_token = %s",
                (job_id, token),
            ).fetchone()
            return row is not None

        if not await self.run(check, write=False):
            # The token stays: the job's final write must meet LeaseLost too, not a plain
            # status conflict (that write is what drops it).
            raise LeaseLost(
                f"job {job_id} is no longer leased to this node; its events were not recorded",
                {"job_id": job_id},
            )

    # -- connection handling -------------------------------------------------------------------

    def run_sync(self, fn: Callable[[psycopg.Connection[Any]], T], *, write: bool = True) -> T:
        """Run ``fn(conn)`` in one transaction on a pooled connection, in the calling thread.

        ``write`` is accepted for symmetry with the SQLite store (which serialises writers);
        PostgreSQL needs no such distinction. Connection failures become StoreUnavailable.
        """
        del write
        if self._closed:
            raise RuntimeError("the store is closed")
        started = time.perf_counter()
        try:
            with self._pool.connection() as conn:
                return fn(conn)
        except PoolTimeout:
            raise StoreUnavailable(
                f"no free connection to PostgreSQL at {self.location} within "
                f"{_POOL_TIMEOUT_SECONDS:.0f} s; the database is overloaded or unreachable"
            ) from None
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(
                f"PostgreSQL at {self.location} failed: {str(exc).strip() or type(exc).__name__}"
            ) from None
        finally:
            self.latency.observe(time.perf_counter() - started)

    async def run(self, fn: Callable[[psycopg.Connection[Any]], T], *, write: bool = True) -> T:
        """:meth:`run_sync` in a worker thread; the way coroutines touch the database."""
        return await trio.to_thread.run_sync(lambda: self.run_sync(fn, write=write))

    @asynccontextmanager
    async def key_lock(self, name: str) -> AsyncIterator[None]:
        """A cluster-wide mutex named ``name``: a PostgreSQL session advisory lock held on a
        pooled connection for the duration of the block (polled with ``pg_try_advisory_lock``
        so waiting never blocks a worker thread). Should the connection die, the server drops
        the lock with the session."""
        conn = await trio.to_thread.run_sync(self._pool.getconn)
        try:

            def try_lock() -> bool:
                row = conn.execute(
                    "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (name,)
                ).fetchone()
                conn.commit()
                return bool(row and row[0])

            while not await trio.to_thread.run_sync(try_lock):
                await trio.sleep(_KEY_LOCK_POLL_SECONDS)
            try:
                yield
            finally:

                def unlock() -> None:
                    conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (name,))
                    conn.commit()

                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(unlock)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._pool.putconn, conn)

    async def ping(self) -> bool:
        """True when the server answers a trivial query."""

        def query(conn: psycopg.Connection[Any]) -> bool:
            row = conn.execute("SELECT 1").fetchone()
            return row is not None and row[0] == 1

        return await self.run(query, write=False)

    def close(self) -> None:
        """Close every connection. Later calls raise RuntimeError."""
        if not self._closed:
            self._closed = True
            self._pool.close()

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self.close)

    async def __aenter__(self) -> PostgresStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- JobStore ------------------------------------------------------------------------------

    async def insert_job(self, job: JobRecord) -> None:
        """Insert the row; for a queued job also free its admission reservation (the same
        transaction: the cluster-wide count never sees it twice or not at all) and wake the
        nodes waiting for work (the notification is delivered at commit). Refused (NotFound)
        when the workspace does not exist (:mod:`ade.store.workspace_guard`): then the
        reservation is left to the caller's release."""

        def insert(conn: psycopg.Connection[Any]) -> None:
            require_workspace(conn, job.workspace_id, postgres=True)
            try:
                conn.execute(
                    f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) "
                    f"VALUES ({', '.join(['%s'] * len(_JOB_COLUMNS))})",
                    _job_params(job),
                )
            except psycopg.errors.UniqueViolation:
                raise Conflict(f"job {job.id} already exists") from None
            conn.execute("DELETE FROM reservations WHERE job_id = %s", (job.id,))
            if job.status is JobStatus.QUEUED:
                conn.execute("SELECT pg_notify(%s, %s)", (JOBS_CHANNEL, job.id))

        await self.run(insert)

    async def update_job(self, job: JobRecord, *, expected: JobStatus | None = None) -> None:
        """Replace every field of an existing job (ids and workspace are the key).

        ``expected`` makes it a compare-and-set on the current status (Conflict if another
        node changed it first). A job this process claimed is also fenced by its lease token:
        :class:`LeaseLost` if the lease was taken away.
        """
        params = _job_params(job)
        assignments = ", ".join(f"{column} = %s" for column in _JOB_COLUMNS[2:])
        clauses = ["id = %s", "workspace_id = %s"]
        keys: list[Any] = [job.id, job.workspace_id]
        if expected is not None:
            clauses.append("status = %s")
            keys.append(JobStatus(expected).value)
        token = self._leases.get(job.id)
        if token is not None:
            clauses.append("lease_token = %s")
            keys.append(token)

        def update(conn: psycopg.Connection[Any]) -> None:
            cursor = conn.execute(
                f"UPDATE jobs SET {assignments} WHERE {' AND '.join(clauses)}",
                (*params[2:], *keys),
            )
            if cursor.rowcount == 1:
                return
            current = conn.execute(
                "SELECT status, node_id FROM jobs WHERE id = %s AND workspace_id = %s",
                (job.id, job.workspace_id),
            ).fetchone()
            if current is None:
                raise NotFound(f"job {job.id} not found in workspace {job.workspace_id}")
            if token is not None:
                raise LeaseLost(
                    f"job {job.id} is no longer leased to this node (it is {current[0]}); "
                    "its result was not recorded",
                    {"job_id": job.id, "status": current[0]},
                )
            raise Conflict(
                f"job {job.id} is {current[0]}, not {JobStatus(expected or job.status).value}",
                {"job_id": job.id, "status": current[0]},
            )

        try:
            await self.run(update)
        finally:
            if job.status.is_terminal:
                self._leases.pop(job.id, None)  # the job's last write, done or refused

    async def get_job(self, job_id: str) -> JobRecord | None:
        def get(conn: psycopg.Connection[Any]) -> JobRecord | None:
            row = conn.execute(f"{_JOB_SELECT} WHERE id = %s", (job_id,)).fetchone()
            return None if row is None else job_from_row(row)

        return await self.run(get, write=False)

    async def list_jobs(
        self,
        workspace_id: str,
        *,
        status: JobStatus | None = None,
        limit: int = 50,
        before_id: str | None = None,
    ) -> list[JobRecord]:
        """Newest first; ``before_id`` is the cursor (the last id of the previous page)."""
        if not 1 <= limit <= _MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {_MAX_PAGE}, got {limit}")
        clauses = ["workspace_id = %s"]
        params: list[Any] = [workspace_id]
        if status is not None:
            clauses.append("status = %s")
            params.append(JobStatus(status).value)
        if before_id is not None:
            clauses.append("id < %s")
            params.append(before_id)
        sql = f"{_JOB_SELECT} WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT %s"
        params.append(limit)

        def query(conn: psycopg.Connection[Any]) -> list[JobRecord]:
            return [job_from_row(row) for row in conn.execute(sql, params).fetchall()]

        return await self.run(query, write=False)

    async def jobs_with_status(self, status: JobStatus) -> list[JobRecord]:
        def query(conn: psycopg.Connection[Any]) -> list[JobRecord]:
            rows = conn.execute(
                f"{_JOB_SELECT} WHERE status = %s ORDER BY id ASC",
                (JobStatus(status).value,),
            ).fetchall()
            return [job_from_row(row) for row in rows]

        return await self.run(query, write=False)

    async def count_by_status(self) -> dict[JobStatus, int]:
        def query(conn: psycopg.Connection[Any]) -> dict[JobStatus, int]:
            counts = dict.fromkeys(JobStatus, 0)
            # Kept by a trigger (migration 2): constant time whatever the history.
            for status, count in conn.execute("SELECT status, count FROM job_totals").fetchall():
                counts[JobStatus(status)] = count
            return counts

        return await self.run(query, write=False)

    # -- CatalogStore --------------------------------------------------------------------------

    async def insert_document(self, document: Document) -> None:
        def insert(conn: psycopg.Connection[Any]) -> None:
            require_workspace(conn, document.workspace_id, postgres=True)
            try:
                conn.execute(
                    "INSERT INTO documents (workspace_id, id, filename, size, sha256, created_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    (
                        document.workspace_id,
                        document.id,
                        document.filename,
                        document.size,
                        document.sha256,
                        document.created_at,
                    ),
                )
            except psycopg.errors.UniqueViolation:
                raise Conflict(
                    f"document {document.id} already exists in workspace {document.workspace_id}"
                ) from None

        await self.run(insert)

    async def get_document(self, workspace_id: str, document_id: str) -> Document | None:
        def get(conn: psycopg.Connection[Any]) -> Document | None:
            row = conn.execute(
                f"{_DOCUMENT_SELECT} WHERE workspace_id = %s AND id = %s",
                (workspace_id, document_id),
            ).fetchone()
            return None if row is None else _document_from_row(row)

        return await self.run(get, write=False)

    async def list_documents(self, workspace_id: str) -> list[Document]:
        """Oldest first (upload order)."""

        def query(conn: psycopg.Connection[Any]) -> list[Document]:
            rows = conn.execute(
                f"{_DOCUMENT_SELECT} WHERE workspace_id = %s ORDER BY created_at ASC, id ASC",
                (workspace_id,),
            ).fetchall()
            return [_document_from_row(row) for row in rows]

        return await self.run(query, write=False)

    async def insert_config(self, config: ConfigVersion) -> None:
        def insert(conn: psycopg.Connection[Any]) -> None:
            require_workspace(conn, config.workspace_id, postgres=True)
            try:
                conn.execute(
                    "INSERT INTO config_versions (workspace_id, id, title, version, "
                    "content_hash, created_at, runtime_network_access) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (
                        config.workspace_id,
                        config.id,
                        config.title,
                        config.version,
                        config.content_hash,
                        config.created_at,
                        config.runtime_network_access,
                    ),
                )
            except psycopg.errors.UniqueViolation:
                raise Conflict(
                    f"config version {config.id} already exists in workspace {config.workspace_id}"
                ) from None

        await self.run(insert)

    async def get_config(self, workspace_id: str, config_id: str) -> ConfigVersion | None:
        def get(conn: psycopg.Connection[Any]) -> ConfigVersion | None:
            row = conn.execute(
                f"{_CONFIG_SELECT} WHERE workspace_id = %s AND id = %s",
                (workspace_id, config_id),
            ).fetchone()
            return None if row is None else _config_from_row(row)

        return await self.run(get, write=False)

    async def find_config_by_hash(
        self, workspace_id: str, content_hash: str
    ) -> ConfigVersion | None:
        """The config version of ``workspace_id`` with this content hash (re-uploads dedupe)."""

        def get(conn: psycopg.Connection[Any]) -> ConfigVersion | None:
            row = conn.execute(
                f"{_CONFIG_SELECT} WHERE workspace_id = %s AND content_hash = %s "
                "ORDER BY created_at ASC LIMIT 1",
                (workspace_id, content_hash),
            ).fetchone()
            return None if row is None else _config_from_row(row)

        return await self.run(get, write=False)

    async def list_configs(self, workspace_id: str) -> list[ConfigVersion]:
        """Oldest first (publication order)."""

        def query(conn: psycopg.Connection[Any]) -> list[ConfigVersion]:
            rows = conn.execute(
                f"{_CONFIG_SELECT} WHERE workspace_id = %s ORDER BY created_at ASC, id ASC",
                (workspace_id,),
            ).fetchall()
            return [_config_from_row(row) for row in rows]

        return await self.run(query, write=False)

    # -- RetentionStore: deletions and the sweep's queries -----------------------------------

    async def delete_job(self, job_id: str) -> JobRecord | None:
        def delete(conn: psycopg.Connection[Any]) -> JobRecord | None:
            # FOR UPDATE: a node finishing or claiming the job waits for this transaction.
            row = conn.execute(f"{_JOB_SELECT} WHERE id = %s FOR UPDATE", (job_id,)).fetchone()
            if row is None:
                return None
            job = job_from_row(row)
            if not job.status.is_terminal:
                raise not_finished(job)
            conn.execute("DELETE FROM jobs WHERE id = %s", (job_id,))
            return job

        return await self.run(delete)

    async def delete_document(self, workspace_id: str, document_id: str) -> Document | None:
        def delete(conn: psycopg.Connection[Any]) -> Document | None:
            row = conn.execute(
                f"{_DOCUMENT_SELECT} WHERE workspace_id = %s AND id = %s FOR UPDATE",
                (workspace_id, document_id),
            ).fetchone()
            if row is None:
                return None
            users = conn.execute(
                "SELECT id FROM jobs WHERE workspace_id = %s AND status = ANY(%s) "
                f"AND %s = ANY(document_ids) ORDER BY id LIMIT {MAX_NAMED}",
                (workspace_id, list(ACTIVE_STATUSES), document_id),
            ).fetchall()
            if users:
                raise in_use("document", document_id, [u[0] for u in users])
            conn.execute(
                "DELETE FROM documents WHERE workspace_id = %s AND id = %s",
                (workspace_id, document_id),
            )
            return _document_from_row(row)

        return await self.run(delete)

    async def delete_config(self, workspace_id: str, config_id: str) -> ConfigVersion | None:
        def delete(conn: psycopg.Connection[Any]) -> ConfigVersion | None:
            row = conn.execute(
                f"{_CONFIG_SELECT} WHERE workspace_id = %s AND id = %s FOR UPDATE",
                (workspace_id, config_id),
            ).fetchone()
            if row is None:
                return None
            users = conn.execute(
                "SELECT id FROM jobs WHERE workspace_id = %s AND config_version_id = %s "
                f"AND status = ANY(%s) ORDER BY id LIMIT {MAX_NAMED}",
                (workspace_id, config_id, list(ACTIVE_STATUSES)),
            ).fetchall()
            if users:
                raise in_use("config", config_id, [u[0] for u in users])
            conn.execute(
                "DELETE FROM config_versions WHERE workspace_id = %s AND id = %s",
                (workspace_id, config_id),
            )
            return _config_from_row(row)

        return await self.run(delete)

    async def config_in_use(self, config_id: str) -> bool:
        def query(conn: psycopg.Connection[Any]) -> bool:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM config_versions WHERE id = %s) OR EXISTS "
                "(SELECT 1 FROM jobs WHERE config_version_id = %s AND status = ANY(%s))",
                (config_id, config_id, list(ACTIVE_STATUSES)),
            ).fetchone()
            return bool(row and row[0])

        return await self.run(query, write=False)

    async def finished_jobs_before(self, cutoff: datetime, *, limit: int) -> list[JobRecord]:
        def query(conn: psycopg.Connection[Any]) -> list[JobRecord]:
            rows = conn.execute(
                f"{_JOB_SELECT} WHERE status = ANY(%s) AND finished_at < %s "
                "ORDER BY finished_at ASC, id ASC LIMIT %s",
                (list(FINISHED_STATUSES), cutoff, limit),
            ).fetchall()
            return [job_from_row(row) for row in rows]

        return await self.run(query, write=False)

    async def existing_ids(self, kind: str, ids: list[str]) -> set[str]:
        table = ID_TABLES[kind]

        def query(conn: psycopg.Connection[Any]) -> set[str]:
            rows = conn.execute(
                f"SELECT DISTINCT id FROM {table} WHERE id = ANY(%s)", (ids,)
            ).fetchall()
            return {row[0] for row in rows}

        return await self.run(query, write=False)


class PostgresIdempotencyStore:
    """The ``idempotency_keys`` table on PostgreSQL (:class:`ade.protocols.IdempotencyKeys`),
    shared by every node (a key replayed on another node finds the first node's response)."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def lookup(self, workspace_id: str, key: str) -> StoredResponse | None:
        def get(conn: psycopg.Connection[Any]) -> StoredResponse | None:
            row = conn.execute(
                "SELECT status, body, location, request_hash, created_at FROM idempotency_keys "
                "WHERE workspace_id = %s AND key = %s",
                (workspace_id, key),
            ).fetchone()
            if row is None:
                return None
            status, body, location, request_hash, created_at = row
            return StoredResponse(status, body, location, request_hash, created_at)

        return await self._store.run(get, write=False)

    async def remember(
        self, workspace_id: str, key: str, response: StoredResponse, *, expire_before: datetime
    ) -> None:
        def put(conn: psycopg.Connection[Any]) -> None:
            conn.execute("DELETE FROM idempotency_keys WHERE created_at < %s", (expire_before,))
            # An expired entry for the same key gives way to the new first response.
            conn.execute(
                "INSERT INTO idempotency_keys "
                "(workspace_id, key, request_hash, status, body, location, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (workspace_id, key) DO UPDATE SET "
                "request_hash = EXCLUDED.request_hash, "
                "status = EXCLUDED.status, body = EXCLUDED.body, location = EXCLUDED.location, "
                "created_at = EXCLUDED.created_at",
                (
                    workspace_id,
                    key,
                    response.request_hash,
                    response.status,
                    response.body,
                    response.location,
                    response.created_at,
                ),
            )

        await self._store.run(put)


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The highest applied migration (0 for an empty database)."""
    row = conn.execute(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
        if _has_history(conn)
        else "SELECT 0"
    ).fetchone()
    return int(row[0]) if row is not None else 0


def _has_history(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    return bool(row and row[0])
