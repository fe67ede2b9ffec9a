"""The store contract: CRUD, ordering and pagination, concurrency — one suite, run against the
SQLite store (real files) and the PostgreSQL store (a real server); plus each store's migrations."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
import trio
from support import ensure_workspaces
from support.postgres import create_database, drop_database

from ade.errors import Conflict, NotFound
from ade.ids import new_id
from ade.models import ConfigVersion, Document, JobRecord, JobStatus, StoredResponse
from ade.settings import load_settings
from ade.store import MIGRATIONS, Migration, SchemaError, SqliteStore, migrate, open_store
from ade.store.postgres import (
    PostgresStore,
    StoreUnavailable,
    migrate_postgres,
)
from ade.store.postgres_migrations import POSTGRES_MIGRATIONS

Store = SqliteStore | PostgresStore

T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def make_job(workspace: str = "ws", **changes: object) -> JobRecord:
    job = JobRecord(
        id=new_id(),
        workspace_id=workspace,
        status=JobStatus.QUEUED,
        config_version_id="cfg1",
        document_ids=("d1", "d2"),
        runtime_network_access=False,
        attempt=1,
        created_at=T0,
    )
    return attrs.evolve(job, **changes)


@pytest.fixture(params=["sqlite", "postgresql"])
def open_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Opens a store on this test's database; each call is another connection pool on the same
    data (another process, in production), as ``open_store`` does from the settings."""
    if request.param == "sqlite":
        settings = load_settings({}, data_dir=tmp_path / "data")
    else:
        url = request.getfixturevalue("postgres_url")
        settings = load_settings({}, data_dir=tmp_path / "data", database_url=url)
    return lambda: open_store(settings)


@pytest.fixture
async def store(open_backend: Callable[[], Store]) -> AsyncIterator[Store]:
    """A store with the workspaces the tests use ("default" exists from the migrations)."""
    s = open_backend()
    try:
        await ensure_workspaces(s, "ws", "other")
        yield s
    finally:
        s.close()


def test_open_store_creates_a_wal_database_with_every_migration(tmp_path: Path) -> None:
    settings = load_settings({}, data_dir=tmp_path / "nested" / "data")
    open_store(settings).close()
    conn = sqlite3.connect(settings.db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    versions = conn.execute("SELECT version, name FROM schema_migrations").fetchall()
    assert versions == [(m.version, m.name) for m in MIGRATIONS]
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"jobs", "documents", "config_versions", "schema_migrations"} <= tables
    conn.close()
    # Reopening applies nothing and keeps the data.
    open_store(settings).close()


def test_migrate_applies_only_new_entries_and_refuses_edits_and_downgrades(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    assert migrate(conn, MIGRATIONS) == [m.version for m in MIGRATIONS]
    extra = Migration(len(MIGRATIONS) + 1, "extra table", ("CREATE TABLE extra (x INTEGER)",))
    assert migrate(conn, [*MIGRATIONS, extra]) == [extra.version]
    assert migrate(conn, [*MIGRATIONS, extra]) == []
    conn.execute("INSERT INTO extra VALUES (1)")

    renamed = Migration(extra.version, "something else", extra.statements)
    with pytest.raises(SchemaError, match="must never be edited"):
        migrate(conn, [*MIGRATIONS, renamed])
    with pytest.raises(SchemaError, match="newer than this ADE"):
        migrate(conn, MIGRATIONS)
    with pytest.raises(SchemaError, match="out of order"):
        migrate(conn, [Migration(2, "skip", ())])
    conn.close()


def test_a_failing_migration_is_rolled_back_completely(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    migrate(conn, MIGRATIONS)
    broken = Migration(
        len(MIGRATIONS) + 1, "broken", ("CREATE TABLE half (x INTEGER)", "NOT VALID SQL")
    )
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, [*MIGRATIONS, broken])
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "half" not in tables
    versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations")]
    assert versions == [m.version for m in MIGRATIONS]
    conn.close()


async def test_job_round_trips_every_field(store: Store) -> None:
    job = make_job(
        status=JobStatus.ERROR,
        runtime_network_access=True,
        attempt=3,
        retry_of="01previous",
        started_at=T0 + timedelta(seconds=1),
        finished_at=T0 + timedelta(seconds=2, microseconds=5),
        error_message="timed out after 3 s",
        exit_code=None,
        exit_signal=9,
        limit="timeout",
        sandbox_layers=("rlimits", "pidns", "seccomp"),
        summary={"rows_written": 3, "mapped_fields": ["name"], "required_missing": []},
        worker_start="fork",
    )
    await store.insert_job(job)
    assert await store.get_job(job.id) == job
    assert await store.get_job("missing") is None


async def test_jobs_stored_before_the_summary_column_read_with_an_empty_summary(
    tmp_path: Path,
) -> None:
    settings = load_settings({}, data_dir=tmp_path / "data")
    settings.db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(settings.db_path, isolation_level=None)
    try:
        migrate(conn, [m for m in MIGRATIONS if m.version < 3])
        conn.execute(
            "INSERT INTO jobs (id, workspace_id, status, config_version_id, document_ids, "
            "runtime_network_access, attempt, created_at, sandbox_layers) "
            "VALUES ('old', 'ws', 'success', 'cfg', '[\"d\"]', 0, 1, ?, '[]')",
            (T0.isoformat(),),
        )
    finally:
        conn.close()
    store = open_store(settings)  # applies migration 3
    try:
        old = await store.get_job("old")
        assert old is not None and (old.status, old.summary) == (JobStatus.SUCCESS, {})
    finally:
        store.close()


async def test_insert_duplicate_job_conflicts_and_update_replaces(store: Store) -> None:
    job = make_job()
    await store.insert_job(job)
    with pytest.raises(Conflict, match=job.id):
        await store.insert_job(job)
    running = attrs.evolve(job, status=JobStatus.RUNNING, started_at=T0, sandbox_layers=("a",))
    await store.update_job(running)
    assert await store.get_job(job.id) == running
    with pytest.raises(NotFound, match="not found"):
        await store.update_job(make_job())
    # The workspace is part of the key: a job cannot be moved or touched through another one.
    with pytest.raises(NotFound):
        await store.update_job(attrs.evolve(running, workspace_id="other"))


async def test_list_jobs_is_newest_first_with_cursor_and_status_filter(store: Store) -> None:
    jobs = []
    for i in range(7):
        status = JobStatus.SUCCESS if i % 2 else JobStatus.QUEUED
        job = make_job(status=status)
        jobs.append(job)
        await store.insert_job(job)
        await trio.sleep(0.002)  # distinct millisecond timestamps inside the ids
    await store.insert_job(make_job(workspace="other"))
    newest_first = [j.id for j in reversed(jobs)]

    page1 = await store.list_jobs("ws", limit=3)
    page2 = await store.list_jobs("ws", limit=3, before_id=page1[-1].id)
    page3 = await store.list_jobs("ws", limit=3, before_id=page2[-1].id)
    assert [j.id for j in page1 + page2 + page3] == newest_first
    assert len(page3) == 1
    assert await store.list_jobs("ws", before_id=page3[-1].id) == []

    successes = await store.list_jobs("ws", status=JobStatus.SUCCESS)
    assert [j.id for j in successes] == [j.id for j in reversed(jobs) if j.status == "success"]
    assert [j.workspace_id for j in await store.list_jobs("other")] == ["other"]
    with pytest.raises(ValueError, match="limit"):
        await store.list_jobs("ws", limit=0)


async def test_jobs_with_status_oldest_first_and_counts(store: Store) -> None:
    queued = []
    for _ in range(3):
        job = make_job(workspace=new_id())
        await ensure_workspaces(store, job.workspace_id)
        queued.append(job.id)
        await store.insert_job(job)
        await trio.sleep(0.002)
    await store.insert_job(make_job(status=JobStatus.RUNNING))
    assert [j.id for j in await store.jobs_with_status(JobStatus.QUEUED)] == queued
    counts = await store.count_by_status()
    assert counts == {
        JobStatus.QUEUED: 3,
        JobStatus.RUNNING: 1,
        JobStatus.SUCCESS: 0,
        JobStatus.ERROR: 0,
        JobStatus.CANCELLED: 0,
    }


async def test_documents_and_configs_are_per_workspace(store: Store) -> None:
    doc = Document("doc1", "ws", "../../etc/passwd.xlsx", 10, "ab" * 32, T0)
    doc2 = Document("doc2", "ws", "b.xlsx", 11, "cd" * 32, T0 + timedelta(seconds=1))
    await store.insert_document(doc2)
    await store.insert_document(doc)
    with pytest.raises(Conflict):
        await store.insert_document(doc)
    await store.insert_document(attrs.evolve(doc, workspace_id="other"))
    assert await store.get_document("ws", "doc1") == doc
    assert await store.get_document("nope", "doc1") is None
    assert await store.list_documents("ws") == [doc, doc2]

    cfg = ConfigVersion("c1", "ws", "Title", "1.0", "h" * 64, T0, runtime_network_access=True)
    await store.insert_config(cfg)
    with pytest.raises(Conflict):
        await store.insert_config(cfg)
    assert await store.get_config("ws", "c1") == cfg
    assert await store.get_config("other", "c1") is None
    assert await store.find_config_by_hash("ws", "h" * 64) == cfg
    assert await store.find_config_by_hash("other", "h" * 64) is None
    assert await store.list_configs("ws") == [cfg]


async def test_concurrent_writers_and_readers_from_many_threads(
    open_backend: Callable[[], Store],
) -> None:
    async with open_backend() as store:
        await ensure_workspaces(store, "ws")
        jobs = [make_job() for _ in range(60)]

        async def write_then_read(job: JobRecord) -> None:
            await store.insert_job(job)
            await store.update_job(attrs.evolve(job, status=JobStatus.RUNNING))
            assert (await store.get_job(job.id)).status == JobStatus.RUNNING  # type: ignore[union-attr]
            await store.list_jobs("ws", limit=5)

        async with trio.open_nursery() as nursery:
            for job in jobs:
                nursery.start_soon(write_then_read, job)
        assert (await store.count_by_status())[JobStatus.RUNNING] == 60
    # A second store on the same data (another process, in production) sees the committed rows.
    other = open_backend()
    try:
        assert len(await other.list_jobs("ws", limit=100)) == 60
    finally:
        other.close()


async def test_run_is_the_seam_for_extra_tables_and_rolls_back_on_error(
    store: Store,
) -> None:
    def create(conn: Any) -> None:
        conn.execute("CREATE TABLE scratch (x INTEGER)")
        conn.execute("INSERT INTO scratch VALUES (1)")

    await store.run(create, write=True)

    def fail(conn: Any) -> None:
        conn.execute("INSERT INTO scratch VALUES (2)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await store.run(fail, write=True)
    rows = await store.run(lambda c: c.execute("SELECT x FROM scratch").fetchall(), write=False)
    assert rows == [(1,)]


async def test_closed_store_refuses_calls(open_backend: Callable[[], Store]) -> None:
    store = open_backend()
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        await store.get_job("x")


async def test_idempotency_keys_remember_replace_and_expire(store: Store) -> None:
    keys = store.idempotency_keys
    now = datetime.now(UTC)
    first = StoredResponse(202, '{"id": "j1"}', "/api/v1/jobs/j1", "a" * 64, now)
    assert await keys.lookup("ws", "k1") is None
    await keys.remember("ws", "k1", first, expire_before=now - timedelta(days=1))
    assert await keys.lookup("ws", "k1") == first
    assert await keys.lookup("other", "k1") is None
    # Same key again (an expired entry being replaced): the newer response wins.
    second = attrs.evolve(first, body='{"id": "j2"}', location=None, request_hash="b" * 64)
    await keys.remember("ws", "k1", second, expire_before=now - timedelta(days=1))
    assert await keys.lookup("ws", "k1") == second
    # Entries older than the cut-off (the API's TTL) are purged by later writes.
    old = attrs.evolve(first, created_at=now - timedelta(days=2))
    await keys.remember("ws", "old", old, expire_before=now - timedelta(days=3))
    assert await keys.lookup("ws", "old") == old
    await keys.remember("ws", "k2", first, expire_before=now - timedelta(days=1))
    assert await keys.lookup("ws", "old") is None


# -- PostgreSQL migrations (each test on a database of its own: they change the schema) --------


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    url = create_database("ade_test_schema")
    yield url
    drop_database(url)


def test_postgres_migrations_apply_once_and_refuse_edits_and_downgrades(
    empty_postgres: str,
) -> None:
    with psycopg.connect(empty_postgres) as conn:
        assert migrate_postgres(conn) == [m.version for m in POSTGRES_MIGRATIONS]
        assert migrate_postgres(conn) == []
        extra = Migration(
            len(POSTGRES_MIGRATIONS) + 1, "extra table", ("CREATE TABLE extra (x INTEGER)",)
        )
        assert migrate_postgres(conn, [*POSTGRES_MIGRATIONS, extra]) == [extra.version]
        renamed = Migration(extra.version, "something else", extra.statements)
        with pytest.raises(SchemaError, match="must never be edited"):
            migrate_postgres(conn, [*POSTGRES_MIGRATIONS, renamed])
        with pytest.raises(SchemaError, match="out of order"):
            migrate_postgres(conn, [Migration(2, "skip", ())])
        broken = Migration(extra.version + 1, "broken", ("CREATE TABLE half (x INT)", "NOT SQL"))
        with pytest.raises(psycopg.errors.SyntaxError):
            migrate_postgres(conn, [*POSTGRES_MIGRATIONS, extra, broken])
        assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        assert versions == [*range(1, extra.version + 1)]
    # A node whose code is older than the database refuses to start, naming both versions.
    with pytest.raises(SchemaError) as excinfo:
        open_store(load_settings({}, database_url=empty_postgres))
    assert str(excinfo.value) == (
        f"PostgreSQL schema version {extra.version} ('extra table') is newer than this ADE "
        f"(which knows up to version {len(POSTGRES_MIGRATIONS)}); upgrade ADE on this node, "
        "or point it at another database"
    )


async def test_nodes_starting_together_apply_each_migration_once(empty_postgres: str) -> None:
    settings = load_settings({}, database_url=empty_postgres)
    stores: list[Store] = []

    async def start() -> None:
        stores.append(await trio.to_thread.run_sync(open_store, settings))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(start)
    for opened in stores:
        opened.close()
    with psycopg.connect(empty_postgres) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY 1").fetchall()
    assert rows == [(m.version, m.name) for m in POSTGRES_MIGRATIONS]


def test_an_unreachable_postgres_is_a_one_line_error_naming_the_server() -> None:
    # Port 9 (discard) has no PostgreSQL; the password never appears in the message.
    url = "postgresql://ade:secret@127.0.0.1:9/ade"
    with pytest.raises(StoreUnavailable) as excinfo:
        open_store(load_settings({}, database_url=url))
    message = str(excinfo.value)
    assert message.startswith(
        "cannot connect to PostgreSQL at ade@127.0.0.1:9/ade (ADE_DATABASE_URL): "
    )
    assert "secret" not in message


async def test_update_with_expected_status_is_a_compare_and_set(store: Store) -> None:
    job = make_job()
    await store.insert_job(job)
    running = attrs.evolve(job, status=JobStatus.RUNNING, started_at=T0)
    await store.update_job(running, expected=JobStatus.QUEUED)
    cancelled = attrs.evolve(job, status=JobStatus.CANCELLED, finished_at=T0)
    with pytest.raises(Conflict, match=f"job {job.id} is running, not queued"):
        await store.update_job(cancelled, expected=JobStatus.QUEUED)
    assert await store.get_job(job.id) == running
    with pytest.raises(NotFound):
        await store.update_job(make_job(), expected=JobStatus.QUEUED)


# -- retention: deletions refused while something active needs the row ---------------------------


def _document(workspace: str, id_: str) -> Document:
    return Document(id_, workspace, "m.xlsx", 10, "0" * 64, T0)


def _config(workspace: str, id_: str) -> ConfigVersion:
    return ConfigVersion(id_, workspace, "T", "1", "h" * 64, T0)


async def test_delete_job_only_when_finished(store: Store) -> None:
    queued = make_job()
    done = make_job(status=JobStatus.SUCCESS, started_at=T0, finished_at=T0)
    await store.insert_job(queued)
    await store.insert_job(done)
    with pytest.raises(Conflict) as refused:
        await store.delete_job(queued.id)
    assert refused.value.details == {"job_id": queued.id, "status": "queued"}
    assert await store.get_job(queued.id) == queued
    assert await store.delete_job(done.id) == done
    assert await store.get_job(done.id) is None
    assert await store.delete_job(done.id) is None
    counts = await store.count_by_status()
    assert (counts[JobStatus.QUEUED], counts[JobStatus.SUCCESS]) == (1, 0)


async def test_delete_document_refused_while_an_active_job_of_its_workspace_lists_it(
    store: Store,
) -> None:
    await store.insert_document(_document("ws", "d1"))
    await store.insert_document(_document("ws", "d9"))
    await store.insert_document(_document("other", "d1"))
    running = make_job(status=JobStatus.RUNNING, document_ids=("d0", "d1"))
    await store.insert_job(running)
    await store.insert_job(make_job(status=JobStatus.ERROR, document_ids=("d9",)))
    with pytest.raises(Conflict) as refused:
        await store.delete_document("ws", "d1")
    assert refused.value.details == {"document_id": "d1", "job_ids": [running.id]}
    assert await store.get_document("ws", "d1") is not None
    # Another workspace's document of the same id is not held by this workspace's job.
    assert await store.delete_document("other", "d1") == _document("other", "d1")
    # A finished job does not hold its documents.
    assert await store.delete_document("ws", "d9") == _document("ws", "d9")
    assert await store.delete_document("ws", "d9") is None
    assert [d.id for d in await store.list_documents("ws")] == ["d1"]


async def test_delete_config_refused_while_used_and_in_use_across_workspaces(
    store: Store,
) -> None:
    await store.insert_config(_config("ws", "cfg1"))
    await store.insert_config(_config("other", "cfg1"))
    queued = make_job()  # uses cfg1 in ws
    await store.insert_job(queued)
    with pytest.raises(Conflict) as refused:
        await store.delete_config("ws", "cfg1")
    assert refused.value.details == {"config_version_id": "cfg1", "job_ids": [queued.id]}
    assert await store.delete_config("other", "cfg1") == _config("other", "cfg1")
    assert await store.config_in_use("cfg1") is True  # ws still holds it
    await store.update_job(
        attrs.evolve(queued, status=JobStatus.CANCELLED, finished_at=T0),
        expected=JobStatus.QUEUED,
    )
    assert await store.delete_config("ws", "cfg1") == _config("ws", "cfg1")
    assert await store.config_in_use("cfg1") is False
    assert await store.delete_config("ws", "cfg1") is None


async def test_finished_jobs_before_a_cutoff_oldest_first_and_existing_ids(store: Store) -> None:
    jobs = [
        make_job(status=JobStatus.SUCCESS, started_at=T0, finished_at=T0 + timedelta(days=d))
        for d in (3, 1, 2, 10)
    ]
    still_running = make_job(status=JobStatus.RUNNING, started_at=T0)
    for job in [*jobs, still_running]:
        await store.insert_job(job)
    found = await store.finished_jobs_before(T0 + timedelta(days=5), limit=10)
    assert [j.id for j in found] == [jobs[1].id, jobs[2].id, jobs[0].id]
    assert len(await store.finished_jobs_before(T0 + timedelta(days=5), limit=2)) == 2
    await store.insert_document(_document("ws", "d1"))
    await store.insert_config(_config("ws", "cfg1"))
    assert await store.existing_ids("job", [jobs[0].id, "nope"]) == {jobs[0].id}
    assert await store.existing_ids("document", ["d1", "d2"]) == {"d1"}
    assert await store.existing_ids("config", ["cfg1", "cfg2"]) == {"cfg1"}


async def test_every_call_is_timed(store: Store) -> None:
    before = store.latency.snapshot().count
    await store.get_job("nope")
    await store.count_by_status()
    after = store.latency.snapshot()
    assert after.count == before + 2
    assert after.total > 0


# -- SQLite point reads on the event loop ----------------------------------------------------


async def test_sqlite_point_reads_stay_on_the_loop_thread_unless_sqlite_would_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(tmp_path / "ade.db")
    hops: list[str] = []
    real_run_sync = trio.to_thread.run_sync

    async def counting_run_sync(fn: Callable[[], Any], **kw: Any) -> Any:
        hops.append(getattr(fn, "__qualname__", "?"))
        return await real_run_sync(fn, **kw)

    try:
        await ensure_workspaces(store, "ws")
        job = make_job()
        await store.insert_job(job)
        monkeypatch.setattr(trio.to_thread, "run_sync", counting_run_sync)
        assert await store.get_job(job.id) == job
        assert await store.get_job(new_id()) is None
        assert await store.get_document("ws", "nope") is None
        assert await store.get_config("ws", "nope") is None
        assert await store.idempotency_keys.lookup("ws", "key") is None
        assert hops == []

        # Should SQLite make the loop's reader wait ("database is locked" at busy_timeout 0:
        # WAL recovery by another process, say), the read is redone in a worker thread.
        import threading

        loop_thread = threading.get_ident()

        def read(conn: sqlite3.Connection) -> int:
            if threading.get_ident() == loop_thread:
                raise sqlite3.OperationalError("database is locked")
            return conn.execute("SELECT attempt FROM jobs WHERE id = ?", (job.id,)).fetchone()[0]

        assert await store.read_point(read) == 1
        assert len(hops) == 1
        # Any other failure is the caller's to see.
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await store.read_point(lambda conn: conn.execute("SELECT * FROM nope").fetchall())
        assert len(hops) == 1

        # Any other thread than the loop's goes through the pool.
        assert await real_run_sync(store._loop_connection) is None
    finally:
        await store.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await store.get_job(job.id)
