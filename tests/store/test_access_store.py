"""The keys and workspaces tables (ade.store.access) on both stores: the same assertions against
SQLite and PostgreSQL, including revocation seen at once by another connection pool (another
node), the migration that makes existing workspaces explicit, and the rule that no job, document
or config version ever lands in a deleted workspace (ade.store.workspace_guard) — on PostgreSQL
also with a deletion and an insert really in flight at once on two nodes."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio

from ade.auth import Role, Workspace, issue_key
from ade.errors import Conflict, NotFound
from ade.ids import new_id
from ade.models import ConfigVersion, Document, JobRecord, JobStatus
from ade.protocols import Store
from ade.serde import utcnow
from ade.settings import load_settings
from ade.store import MIGRATIONS, migrate, open_store
from ade.store.access import access_store


@pytest.fixture(params=["sqlite", "postgresql"])
def open_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    if request.param == "sqlite":
        settings = load_settings({}, data_dir=tmp_path / "data")
    else:
        url = request.getfixturevalue("postgres_url")
        settings = load_settings({}, data_dir=tmp_path / "data", database_url=url)
    return lambda: open_store(settings)


@pytest.fixture
def stores(open_backend: Callable[[], Store]) -> Iterator[tuple[Store, Store]]:
    """Two pools on the same data: two nodes."""
    first, second = open_backend(), open_backend()
    yield first, second
    first.close()
    second.close()


async def test_keys_round_trip_and_revocation_is_seen_by_another_node(
    stores: tuple[Store, Store],
) -> None:
    node_a, node_b = (access_store(s) for s in stores)
    now = utcnow().replace(microsecond=0)
    assert not await node_a.has_active_admin()
    admin = issue_key("admin", Role.ADMIN, (), now=now)
    viewer = issue_key("v", Role.VIEWER, ("default",), now=now)
    await node_a.insert_key(admin.key)
    await node_a.insert_key(viewer.key)
    assert await node_b.has_active_admin()
    assert await node_b.get_key(viewer.key.id) == viewer.key
    assert [k.id for k in await node_b.list_keys()] == sorted([admin.key.id, viewer.key.id])
    await node_a.touch_key(viewer.key.id, now + timedelta(seconds=5))
    revoked = await node_a.revoke_key(viewer.key.id, now + timedelta(seconds=9))
    seen = await node_b.get_key(viewer.key.id)
    assert seen is not None and seen == revoked
    assert seen.revoked_at == now + timedelta(seconds=9)
    assert seen.last_used_at == now + timedelta(seconds=5)
    # Revoking again keeps the first time.
    assert (await node_b.revoke_key(viewer.key.id, now + timedelta(hours=1))).revoked_at == (
        now + timedelta(seconds=9)
    )
    with pytest.raises(NotFound):
        await node_b.revoke_key("nope", now)
    await node_a.revoke_key(admin.key.id, now)
    assert not await node_b.has_active_admin()


async def test_workspaces_create_rename_delete(stores: tuple[Store, Store]) -> None:
    store, _ = stores
    access = access_store(store)
    now = utcnow()
    assert [w.id for w in await access.list_workspaces()] == ["default"]
    await access.create_workspace(Workspace("team", now))
    with pytest.raises(Conflict):
        await access.create_workspace(Workspace("team", now))
    member = issue_key("m", Role.MEMBER, ("default", "team"), now=now)
    await access.insert_key(member.key)
    await access.rename_workspace("team", "crew")
    assert await access.workspace_exists("crew") and not await access.workspace_exists("team")
    key = await access.get_key(member.key.id)
    assert key is not None and key.workspaces == ("default", "crew")
    with pytest.raises(Conflict):
        await access.rename_workspace("crew", "default")
    with pytest.raises(Conflict, match="default workspace cannot be deleted"):
        await access.delete_workspace("default")
    with pytest.raises(NotFound):
        await access.delete_workspace("nope")
    assert await access.delete_workspace("crew") == []
    key = await access.get_key(member.key.id)
    assert key is not None and key.workspaces == ("default",)
    assert [w.id for w in await access.list_workspaces()] == ["default"]


def test_the_sqlite_migration_makes_existing_workspaces_explicit(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "old.sqlite", isolation_level=None)) as conn:
        migrate(conn, MIGRATIONS[:4])
        conn.execute(
            "INSERT INTO documents VALUES "
            "('team-a', 'd1', 'a.xlsx', 1, 'x', '2026-01-01T00:00:00+00:00')"
        )
        assert migrate(conn, MIGRATIONS) == [5]
        rows = [r[0] for r in conn.execute("SELECT id FROM workspaces ORDER BY id")]
    assert rows == ["default", "team-a"]


# -- no row in a deleted workspace (ade.store.workspace_guard) ---------------------------------


def _job(workspace_id: str) -> JobRecord:
    return JobRecord(
        id=new_id(),
        workspace_id=workspace_id,
        status=JobStatus.QUEUED,
        config_version_id="cfg1",
        document_ids=("d1",),
        runtime_network_access=False,
        attempt=1,
        created_at=utcnow(),
    )


def _document(workspace_id: str) -> Document:
    return Document(new_id(), workspace_id, "m.xlsx", 10, "0" * 64, utcnow())


def _config(workspace_id: str) -> ConfigVersion:
    return ConfigVersion(new_id(), workspace_id, "T", "1", "h" * 64, utcnow())


async def _rows_in(store: Store, workspace_id: str) -> tuple[int, int, int]:
    return (
        len(await store.list_jobs(workspace_id)),
        len(await store.list_documents(workspace_id)),
        len(await store.list_configs(workspace_id)),
    )


async def test_rows_are_refused_in_a_deleted_renamed_or_unknown_workspace(
    stores: tuple[Store, Store],
) -> None:
    store, other_node = stores
    access = access_store(store)
    await access.create_workspace(Workspace("gone", utcnow()))
    await access.create_workspace(Workspace("old", utcnow()))
    assert await access.delete_workspace("gone") == []
    await access.rename_workspace("old", "new")
    for workspace_id in ("gone", "old", "never"):
        # Another node whose own check still said the workspace existed: its insert is refused.
        for insert in (
            other_node.insert_job(_job(workspace_id)),
            other_node.insert_document(_document(workspace_id)),
            other_node.insert_config(_config(workspace_id)),
        ):
            with pytest.raises(NotFound, match=f"^workspace {workspace_id} not found$") as caught:
                await insert
            assert caught.value.details == {"workspace_id": workspace_id}
        assert await _rows_in(store, workspace_id) == (0, 0, 0)
    # The renamed workspace, and `default`, take rows as before.
    for workspace_id in ("new", "default"):
        await other_node.insert_job(_job(workspace_id))
        await other_node.insert_document(_document(workspace_id))
        await other_node.insert_config(_config(workspace_id))
        assert await _rows_in(store, workspace_id) == (1, 1, 1)


# -- the race on PostgreSQL: two nodes, one transaction held open ------------------------------


def _hold_before_commit(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> tuple[threading.Event, threading.Event]:
    """Make the store's next write hold its transaction open once its work is done: ``inside``
    is set then, and it commits when ``go_on`` is set."""
    inside, go_on = threading.Event(), threading.Event()
    real_run = store.run

    async def run(fn: Callable[[Any], Any], *, write: bool = True) -> Any:
        def held(conn: Any) -> Any:
            result = fn(conn)
            inside.set()
            if not go_on.wait(30):
                raise TimeoutError("the test never let the transaction commit")
            return result

        return await real_run(held, write=write)

    monkeypatch.setattr(store, "run", run)
    return inside, go_on


async def _wait_for_a_lock_waiter(url: str) -> None:
    """Until a backend of this database waits for a row lock (the other transaction's)."""

    def waiting() -> int:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            return 0 if row is None else int(row[0])

    with trio.fail_after(20):
        while not await trio.to_thread.run_sync(waiting):
            await trio.sleep(0.01)


@pytest.fixture
def nodes(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    settings = load_settings({}, data_dir=tmp_path / "data", database_url=postgres_url)
    first, second = open_store(settings), open_store(settings)
    yield first, second
    first.close()
    second.close()


async def test_postgres_an_insert_waits_for_a_delete_in_flight_and_is_refused(
    nodes: tuple[Store, Store], postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    deleter, submitter = nodes
    await access_store(deleter).create_workspace(Workspace("team", utcnow()))
    inside, go_on = _hold_before_commit(deleter, monkeypatch)
    outcomes: dict[str, BaseException | None] = {}

    async def attempt(name: str, insert: Awaitable[None]) -> None:
        try:
            await insert
        except NotFound as exc:
            outcomes[name] = exc
        else:
            outcomes[name] = None

    async with trio.open_nursery() as nursery:
        nursery.start_soon(access_store(deleter).delete_workspace, "team")
        await trio.to_thread.run_sync(inside.wait)  # deleted, not yet committed
        nursery.start_soon(attempt, "job", submitter.insert_job(_job("team")))
        await _wait_for_a_lock_waiter(postgres_url)
        nursery.start_soon(attempt, "document", submitter.insert_document(_document("team")))
        nursery.start_soon(attempt, "config", submitter.insert_config(_config("team")))
        await trio.sleep(0.2)  # the other two reach the lock too (or come after: same result)
        assert outcomes == {}  # nobody got past the delete's lock
        go_on.set()
    assert sorted(outcomes) == ["config", "document", "job"]
    for name, outcome in outcomes.items():
        assert isinstance(outcome, NotFound), name
        assert str(outcome) == "workspace team not found"
    assert not await access_store(submitter).workspace_exists("team")
    assert await _rows_in(submitter, "team") == (0, 0, 0)


async def test_postgres_a_delete_waits_for_an_insert_in_flight_and_then_sees_its_row(
    nodes: tuple[Store, Store], postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    deleter, submitter = nodes
    access = access_store(deleter)
    await access.create_workspace(Workspace("team", utcnow()))
    await access.create_workspace(Workspace("crew", utcnow()))
    job, document = _job("team"), _document("crew")
    outcome: dict[str, object] = {}

    async def delete(workspace_id: str) -> None:
        try:
            outcome[workspace_id] = await access.delete_workspace(workspace_id)
        except Conflict as exc:
            outcome[workspace_id] = exc

    # A queued job inserted while the delete waits: the delete then finds the workspace busy.
    inside, go_on = _hold_before_commit(submitter, monkeypatch)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(submitter.insert_job, job)
        await trio.to_thread.run_sync(inside.wait)  # inserted, not yet committed
        nursery.start_soon(delete, "team")
        await _wait_for_a_lock_waiter(postgres_url)
        assert outcome == {}
        go_on.set()
    refusal = outcome["team"]
    assert isinstance(refusal, Conflict), refusal
    assert refusal.details == {"workspace_id": "team", "active_jobs": 1}
    assert await access.workspace_exists("team")
    assert await deleter.get_job(job.id) == job

    # A document inserted while the delete waits: the delete takes it with the rest.
    monkeypatch.undo()
    inside, go_on = _hold_before_commit(submitter, monkeypatch)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(submitter.insert_document, document)
        await trio.to_thread.run_sync(inside.wait)
        nursery.start_soon(delete, "crew")
        await _wait_for_a_lock_waiter(postgres_url)
        assert outcome == {"team": refusal}
        go_on.set()
    assert outcome["crew"] == []
    assert not await access.workspace_exists("crew")
    assert await deleter.get_document("crew", document.id) is None
    assert await _rows_in(deleter, "crew") == (0, 0, 0)
