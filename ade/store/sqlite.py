"""The embedded store: SQLite in WAL mode, every blocking call in a worker thread.

Theory of operation
-------------------
SQLite calls block, so each public coroutine hands a small synchronous function to
``trio.to_thread.run_sync``. A ``sqlite3.Connection`` must never be used by two threads at once,
and trio's worker threads are recycled, so connections are not tied to threads: each call checks
one out of a pool, uses it only on that thread for the duration of the call, and returns it.
That is why connections are opened with ``check_same_thread=False``: ownership moves, use never
overlaps.

WAL mode lets readers run concurrently with the one writer. Writers are serialised by a
``threading.Lock`` (and every write is a ``BEGIN IMMEDIATE`` transaction) so two writers in this
process never race for SQLite's write lock and never see ``SQLITE_BUSY``; ``busy_timeout`` covers
another process (an operator's ``sqlite3`` shell, a second ``ade`` command) holding it briefly.

Point reads in the event loop. A read of one row by its key (a job's status, a document, a
config version) takes tens of microseconds; handing it to a worker thread costs more than the
read — under 100 clients polling job status, the hops (thread wake-ups, result delivery back
to the loop, GIL hand-offs between dozens of threads) were most of the server's CPU
(``docs/benchmarks.md``, "API"). So :meth:`SqliteStore.read_point` runs such reads on the
event loop's own thread, on a connection only that thread uses. This is safe because a WAL
reader never waits for the writer; the connection has ``busy_timeout = 0``, so the rare case
where SQLite would make a reader wait (WAL recovery after a crash of another process) raises
at once instead of blocking the loop, and the read is redone in a worker thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import trio

from ade.errors import Conflict, NotFound
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
from ade.store.migrations import MIGRATIONS, Migration
from ade.store.workspace_guard import require_workspace
from ade.telemetry.histogram import FAST_BUCKETS, Histogram

__all__ = ["SchemaError", "SqliteIdempotencyKeys", "SqliteStore", "migrate"]

T = TypeVar("T")

_BUSY_TIMEOUT_MS = 10_000
_MAX_PAGE = 1000

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
_JOB_SELECT = f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs"


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so the sqlite3 module never opens
    # implicit transactions behind our back.
    conn = sqlite3.connect(
        str(path),
        timeout=_BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
    )
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    # NORMAL is durable across application crashes in WAL mode; only an OS crash / power loss can
    # lose the last transactions, which recovery then treats like any interrupted job.
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def migrate(conn: sqlite3.Connection, migrations: list[Migration] = MIGRATIONS) -> list[int]:
    """Bring the schema up to date; returns the versions applied now (empty if current).

    Refuses a database whose recorded history disagrees with ``migrations`` (an edited entry)
    or that is newer than this code (a downgrade), naming the version.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        applied = dict(conn.execute("SELECT version, name FROM schema_migrations").fetchall())
        pending = pending_migrations(applied, migrations)
        done: list[int] = []
        for migration in pending:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, utcnow().isoformat()),
            )
            done.append(migration.version)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return done


def _dt(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _job_params(job: JobRecord) -> tuple[Any, ...]:
    return (
        job.id,
        job.workspace_id,
        job.status.value,
        job.config_version_id,
        json.dumps(list(job.document_ids)),
        int(job.runtime_network_access),
        job.attempt,
        job.retry_of,
        _dt(job.created_at),
        _dt(job.started_at),
        _dt(job.finished_at),
        job.error_message,
        job.exit_code,
        job.exit_signal,
        job.limit,
        json.dumps(list(job.sandbox_layers)),
        json.dumps(job.summary, separators=(",", ":")),
        job.worker_start,
        job.submitted_by,
    )


def _job_from_row(row: tuple[Any, ...]) -> JobRecord:
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
    ) = row
    created = _parse_dt(created_at)
    assert created is not None  # NOT NULL column
    return JobRecord(
        id=id_,
        workspace_id=workspace_id,
        status=JobStatus(status),
        config_version_id=config_version_id,
        document_ids=tuple(json.loads(document_ids)),
        runtime_network_access=bool(network),
        attempt=attempt,
        created_at=created,
        retry_of=retry_of,
        started_at=_parse_dt(started_at),
        finished_at=_parse_dt(finished_at),
        error_message=error_message,
        exit_code=exit_code,
        exit_signal=exit_signal,
        limit=limit_name,
        sandbox_layers=tuple(json.loads(sandbox_layers)),
        summary=json.loads(summary),
        worker_start=worker_start,
        submitted_by=submitted_by,
    )


def _document_from_row(row: tuple[Any, ...]) -> Document:
    workspace_id, id_, filename, size, sha256, created_at = row
    created = _parse_dt(created_at)
    assert created is not None
    return Document(
        id=id_,
        workspace_id=workspace_id,
        filename=filename,
        size=size,
        sha256=sha256,
        created_at=created,
    )


def _config_from_row(row: tuple[Any, ...]) -> ConfigVersion:
    workspace_id, id_, title, version, content_hash, created_at, network = row
    created = _parse_dt(created_at)
    assert created is not None
    return ConfigVersion(
        id=id_,
        workspace_id=workspace_id,
        title=title,
        version=version,
        content_hash=content_hash,
        created_at=created,
        runtime_network_access=bool(network),
    )


_DOCUMENT_SELECT = "SELECT workspace_id, id, filename, size, sha256, created_at FROM documents"
_CONFIG_SELECT = (
    "SELECT workspace_id, id, title, version, content_hash, created_at, runtime_network_access "
    "FROM config_versions"
)


_ACTIVE = f"status IN {ACTIVE_STATUSES!r}"
_FINISHED = f"status IN {FINISHED_STATUSES!r}"


class SqliteStore:
    """:class:`ade.protocols.JobStore` + :class:`ade.protocols.CatalogStore` over one SQLite file.

    Create it with :func:`ade.store.open_store`; close it with :meth:`close` (or ``async with``).
    """

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        self.idempotency_keys = SqliteIdempotencyKeys(self)
        # Every call's time, connection wait and transaction included (/metrics).
        self.latency = Histogram(FAST_BUCKETS)
        self._pool: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        # read_point's connection and the (event loop's) thread that alone uses it.
        self._loop_conn: sqlite3.Connection | None = None
        self._loop_thread: int | None = None
        conn = self._checkout()
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise SchemaError(f"{path}: SQLite refused WAL mode (got {mode!r})")
            with self._write_lock:
                migrate(conn)
        except BaseException:
            # Nobody gets a store to close: close the connection here, not at garbage
            # collection (Python 3.13 warns about a connection left to the collector).
            conn.close()
            raise
        self._checkin(conn)

    # -- connection handling -------------------------------------------------------------------

    def _checkout(self) -> sqlite3.Connection:
        with self._pool_lock:
            if self._closed:
                raise RuntimeError("the store is closed")
            if self._pool:
                return self._pool.pop()
        return _connect(self.path)

    def _checkin(self, conn: sqlite3.Connection) -> None:
        with self._pool_lock:
            if self._closed:
                conn.close()
            else:
                self._pool.append(conn)

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        conn = self._checkout()
        try:
            yield conn
        finally:
            self._checkin(conn)

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        conn = self._checkout()
        try:
            with self._write_lock:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
        finally:
            self._checkin(conn)

    def run_sync(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """Run ``fn(conn)`` on a pooled connection in the calling thread.

        ``write=True`` wraps it in one serialised ``BEGIN IMMEDIATE`` transaction (rolled back if
        ``fn`` raises). This is the seam for modules that add tables (the idempotency keys).
        """
        started = time.perf_counter()
        try:
            with self._writing() if write else self._reading() as conn:
                return fn(conn)
        finally:
            self.latency.observe(time.perf_counter() - started)

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """:meth:`run_sync` in a worker thread; the way coroutines touch the database."""
        return await trio.to_thread.run_sync(lambda: self.run_sync(fn, write=write))

    async def read_point(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(conn)``, a read of a few rows by key, on the calling (event loop) thread; in a
        worker thread should SQLite want it to wait (see the theory of operation)."""
        conn = self._loop_connection()
        if conn is not None:
            started = time.perf_counter()
            try:
                result = fn(conn)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            else:
                self.latency.observe(time.perf_counter() - started)
                await trio.lowlevel.checkpoint()
                return result
        return await self.run(fn, write=False)

    def _loop_connection(self) -> sqlite3.Connection | None:
        """read_point's connection, if the caller is the thread it belongs to (the first
        thread to ask); None for any other thread, which then goes through the pool."""
        thread = threading.get_ident()
        with self._pool_lock:
            if self._closed:
                raise RuntimeError("the store is closed")
            if self._loop_thread is None:
                conn = _connect(self.path)
                conn.execute("PRAGMA busy_timeout = 0")
                self._loop_conn, self._loop_thread = conn, thread
            return self._loop_conn if self._loop_thread == thread else None

    def close(self) -> None:
        """Close every connection. Calls in flight finish; later calls raise RuntimeError."""
        with self._pool_lock:
            self._closed = True
            idle, self._pool = self._pool, []
            if self._loop_conn is not None:
                idle.append(self._loop_conn)
                self._loop_conn = None
        for conn in idle:
            conn.close()

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self.close)

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- JobStore ------------------------------------------------------------------------------

    async def insert_job(self, job: JobRecord) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            require_workspace(conn, job.workspace_id, postgres=False)
            try:
                conn.execute(
                    f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(_JOB_COLUMNS))})",
                    _job_params(job),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"job {job.id} already exists") from None

        await self.run(insert, write=True)

    async def update_job(self, job: JobRecord, *, expected: JobStatus | None = None) -> None:
        """Replace every field of an existing job (ids and workspace are the key);
        ``expected`` makes it a compare-and-set on the current status (Conflict otherwise)."""

        def update(conn: sqlite3.Connection) -> None:
            params = _job_params(job)
            assignments = ", ".join(f"{column} = ?" for column in _JOB_COLUMNS[2:])
            cursor = conn.execute(
                f"UPDATE jobs SET {assignments} WHERE id = ? AND workspace_id = ? "
                "AND status = COALESCE(?, status)",
                (
                    *params[2:],
                    job.id,
                    job.workspace_id,
                    None if expected is None else expected.value,
                ),
            )
            if cursor.rowcount == 1:
                return
            row = conn.execute(
                "SELECT status FROM jobs WHERE id = ? AND workspace_id = ?",
                (job.id, job.workspace_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"job {job.id} not found in workspace {job.workspace_id}")
            raise Conflict(
                f"job {job.id} is {row[0]}, not {JobStatus(expected or job.status).value}",
                {"job_id": job.id, "status": row[0]},
            )

        await self.run(update, write=True)

    async def get_job(self, job_id: str) -> JobRecord | None:
        def get(conn: sqlite3.Connection) -> JobRecord | None:
            row = conn.execute(f"{_JOB_SELECT} WHERE id = ?", (job_id,)).fetchone()
            return None if row is None else _job_from_row(row)

        return await self.read_point(get)

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
        clauses = ["workspace_id = ?"]
        params: list[Any] = [workspace_id]
        if status is not None:
            clauses.append("status = ?")
            params.append(JobStatus(status).value)
        if before_id is not None:
            clauses.append("id < ?")
            params.append(before_id)
        sql = f"{_JOB_SELECT} WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT ?"
        params.append(limit)

        def query(conn: sqlite3.Connection) -> list[JobRecord]:
            return [_job_from_row(row) for row in conn.execute(sql, params).fetchall()]

        return await self.run(query, write=False)

    async def jobs_with_status(self, status: JobStatus) -> list[JobRecord]:
        def query(conn: sqlite3.Connection) -> list[JobRecord]:
            rows = conn.execute(
                f"{_JOB_SELECT} WHERE status = ? ORDER BY id ASC", (JobStatus(status).value,)
            ).fetchall()
            return [_job_from_row(row) for row in rows]

        return await self.run(query, write=False)

    async def count_by_status(self) -> dict[JobStatus, int]:
        def query(conn: sqlite3.Connection) -> dict[JobStatus, int]:
            counts = dict.fromkeys(JobStatus, 0)
            for status, count in conn.execute(
                "SELECT status, COUNT(*) FROM jobs GROUP BY status"
            ).fetchall():
                counts[JobStatus(status)] = count
            return counts

        return await self.run(query, write=False)

    # -- CatalogStore --------------------------------------------------------------------------

    async def insert_document(self, document: Document) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            require_workspace(conn, document.workspace_id, postgres=False)
            try:
                conn.execute(
                    "INSERT INTO documents (workspace_id, id, filename, size, sha256, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        document.workspace_id,
                        document.id,
                        document.filename,
                        document.size,
                        document.sha256,
                        _dt(document.created_at),
                    ),
                )
            except sqlite3.IntegrityError:
                raise Conflict(
                    f"document {document.id} already exists in workspace {document.workspace_id}"
                ) from None

        await self.run(insert, write=True)

    async def get_document(self, workspace_id: str, document_id: str) -> Document | None:
        def get(conn: sqlite3.Connection) -> Document | None:
            row = conn.execute(
                f"{_DOCUMENT_SELECT} WHERE workspace_id = ? AND id = ?",
                (workspace_id, document_id),
            ).fetchone()
            return None if row is None else _document_from_row(row)

        return await self.read_point(get)

    async def list_documents(self, workspace_id: str) -> list[Document]:
        """Oldest first (upload order)."""

        def query(conn: sqlite3.Connection) -> list[Document]:
            rows = conn.execute(
                f"{_DOCUMENT_SELECT} WHERE workspace_id = ? ORDER BY created_at ASC, id ASC",
                (workspace_id,),
            ).fetchall()
            return [_document_from_row(row) for row in rows]

        return await self.run(query, write=False)

    async def insert_config(self, config: ConfigVersion) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            require_workspace(conn, config.workspace_id, postgres=False)
            try:
                conn.execute(
                    "INSERT INTO config_versions (workspace_id, id, title, version, "
                    "content_hash, created_at, runtime_network_access) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        config.workspace_id,
                        config.id,
                        config.title,
                        config.version,
                        config.content_hash,
                        _dt(config.created_at),
                        int(config.runtime_network_access),
                    ),
                )
            except sqlite3.IntegrityError:
                raise Conflict(
                    f"config version {config.id} already exists in workspace {config.workspace_id}"
                ) from None

        await self.run(insert, write=True)

    async def get_config(self, workspace_id: str, config_id: str) -> ConfigVersion | None:
        def get(conn: sqlite3.Connection) -> ConfigVersion | None:
            row = conn.execute(
                f"{_CONFIG_SELECT} WHERE workspace_id = ? AND id = ?", (workspace_id, config_id)
            ).fetchone()
            return None if row is None else _config_from_row(row)

        return await self.read_point(get)

    async def find_config_by_hash(
        self, workspace_id: str, content_hash: str
    ) -> ConfigVersion | None:
        """The config version of ``workspace_id`` with this content hash (re-uploads dedupe)."""

        def get(conn: sqlite3.Connection) -> ConfigVersion | None:
            row = conn.execute(
                f"{_CONFIG_SELECT} WHERE workspace_id = ? AND content_hash = ? "
                "ORDER BY created_at ASC LIMIT 1",
                (workspace_id, content_hash),
            ).fetchone()
            return None if row is None else _config_from_row(row)

        return await self.run(get, write=False)

    async def list_configs(self, workspace_id: str) -> list[ConfigVersion]:
        """Oldest first (publication order)."""

        def query(conn: sqlite3.Connection) -> list[ConfigVersion]:
            rows = conn.execute(
                f"{_CONFIG_SELECT} WHERE workspace_id = ? ORDER BY created_at ASC, id ASC",
                (workspace_id,),
            ).fetchall()
            return [_config_from_row(row) for row in rows]

        return await self.run(query, write=False)

    # -- RetentionStore: deletions and the sweep's queries -----------------------------------

    async def delete_job(self, job_id: str) -> JobRecord | None:
        def delete(conn: sqlite3.Connection) -> JobRecord | None:
            row = conn.execute(f"{_JOB_SELECT} WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            job = _job_from_row(row)
            if not job.status.is_terminal:
                raise not_finished(job)
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            return job

        return await self.run(delete, write=True)

    async def delete_document(self, workspace_id: str, document_id: str) -> Document | None:
        def delete(conn: sqlite3.Connection) -> Document | None:
            row = conn.execute(
                f"{_DOCUMENT_SELECT} WHERE workspace_id = ? AND id = ?", (workspace_id, document_id)
            ).fetchone()
            if row is None:
                return None
            users = conn.execute(
                f"SELECT jobs.id FROM jobs, json_each(jobs.document_ids) AS d "
                f"WHERE jobs.workspace_id = ? AND jobs.{_ACTIVE} AND d.value = ? "
                f"ORDER BY jobs.id LIMIT {MAX_NAMED}",
                (workspace_id, document_id),
            ).fetchall()
            if users:
                raise in_use("document", document_id, [u[0] for u in users])
            conn.execute(
                "DELETE FROM documents WHERE workspace_id = ? AND id = ?",
                (workspace_id, document_id),
            )
            return _document_from_row(row)

        return await self.run(delete, write=True)

    async def delete_config(self, workspace_id: str, config_id: str) -> ConfigVersion | None:
        def delete(conn: sqlite3.Connection) -> ConfigVersion | None:
            row = conn.execute(
                f"{_CONFIG_SELECT} WHERE workspace_id = ? AND id = ?", (workspace_id, config_id)
            ).fetchone()
            if row is None:
                return None
            users = conn.execute(
                f"SELECT id FROM jobs WHERE workspace_id = ? AND config_version_id = ? "
                f"AND {_ACTIVE} ORDER BY id LIMIT {MAX_NAMED}",
                (workspace_id, config_id),
            ).fetchall()
            if users:
                raise in_use("config", config_id, [u[0] for u in users])
            conn.execute(
                "DELETE FROM config_versions WHERE workspace_id = ? AND id = ?",
                (workspace_id, config_id),
            )
            return _config_from_row(row)

        return await self.run(delete, write=True)

    async def config_in_use(self, config_id: str) -> bool:
        def query(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM config_versions WHERE id = ?) "
                f"OR EXISTS (SELECT 1 FROM jobs WHERE config_version_id = ? AND {_ACTIVE})",
                (config_id, config_id),
            ).fetchone()
            return bool(row[0])

        return await self.run(query, write=False)

    async def finished_jobs_before(self, cutoff: datetime, *, limit: int) -> list[JobRecord]:
        def query(conn: sqlite3.Connection) -> list[JobRecord]:
            rows = conn.execute(
                f"{_JOB_SELECT} WHERE {_FINISHED} AND finished_at < ? "
                "ORDER BY finished_at ASC, id ASC LIMIT ?",
                (cutoff.isoformat(), limit),
            ).fetchall()
            return [_job_from_row(row) for row in rows]

        return await self.run(query, write=False)

    async def existing_ids(self, kind: str, ids: list[str]) -> set[str]:
        table = ID_TABLES[kind]

        def query(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                found.update(
                    r[0]
                    for r in conn.execute(
                        f"SELECT DISTINCT id FROM {table} WHERE id IN ({marks})", chunk
                    ).fetchall()
                )
            return found

        return await self.run(query, write=False)


class SqliteIdempotencyKeys:
    """The ``idempotency_keys`` table (migration 2 in :mod:`ade.store.migrations`); implements
    :class:`ade.protocols.IdempotencyKeys`."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def lookup(self, workspace_id: str, key: str) -> StoredResponse | None:
        def get(conn: sqlite3.Connection) -> StoredResponse | None:
            row = conn.execute(
                "SELECT status, body, location, request_hash, created_at FROM idempotency_keys "
                "WHERE workspace_id = ? AND key = ?",
                (workspace_id, key),
            ).fetchone()
            if row is None:
                return None
            status, body, location, request_hash, created_at = row
            return StoredResponse(
                status, body, location, request_hash, datetime.fromisoformat(created_at)
            )

        return await self._store.read_point(get)

    async def remember(
        self, workspace_id: str, key: str, response: StoredResponse, *, expire_before: datetime
    ) -> None:
        def put(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM idempotency_keys WHERE created_at < ?", (expire_before.isoformat(),)
            )
            # REPLACE: an expired entry for the same key gives way to the new first response.
            conn.execute(
                "INSERT OR REPLACE INTO idempotency_keys "
                "(workspace_id, key, request_hash, status, body, location, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    workspace_id,
                    key,
                    response.request_hash,
                    response.status,
                    response.body,
                    response.location,
                    response.created_at.isoformat(),
                ),
            )

        await self._store.run(put, write=True)
