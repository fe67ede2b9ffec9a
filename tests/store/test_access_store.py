"""The keys and workspaces tables (ade.store.access) on both stores: the same assertions against
SQLite and PostgreSQL, including revocation seen at once by another connection pool (another
node) and the migration that makes existing workspaces explicit."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest

from ade.auth import Role, Workspace, issue_key
from ade.errors import Conflict, NotFound
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
