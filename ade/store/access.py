"""API keys and workspaces in the store: the ``api_keys`` and ``workspaces`` tables on SQLite
(:mod:`ade.store.migrations` version 5) and PostgreSQL (:mod:`ade.store.postgres_migrations`
version 5), behind one class per dialect that implements :class:`ade.protocols.AccessStore`.

Both go through the store's own ``run`` seam (one transaction per write), so they share its
connection pool and its error handling. The SQL differs only in placeholders and in how a list
of workspaces is kept (JSON text on SQLite, ``text[]`` on PostgreSQL); :class:`_Dialect` holds
those differences and everything else is written once.

Workspace ids appear in other tables (jobs, documents, config versions, idempotency keys): a
rename rewrites them in the same transaction, a delete removes the workspace's rows with it.
Both are refused while a job of the workspace is queued or running. Both lock the workspace row
before that check, and every insert of a job, document or config version requires the row in
its own transaction (:mod:`ade.store.workspace_guard`), so no row can land in a workspace that a
concurrent delete or rename has just removed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import attrs

from ade.auth.keys import ApiKey, Workspace
from ade.auth.principal import Role
from ade.errors import Conflict, NotFound
from ade.protocols import AccessStore, Store
from ade.store.workspace_guard import lock_workspace, unknown_workspace

__all__ = ["DEFAULT_WORKSPACE", "SqlAccessStore", "access_store"]

DEFAULT_WORKSPACE = "default"
_KEY_COLUMNS = "id, name, role, workspaces, token_hash, created_at, last_used_at, revoked_at"
_WORKSPACE_TABLES = ("jobs", "documents", "config_versions", "idempotency_keys")


@attrs.frozen
class _Dialect:
    placeholder: str
    dump_list: Callable[[tuple[str, ...]], Any]
    load_list: Callable[[Any], tuple[str, ...]]
    dump_time: Callable[[datetime | None], Any]
    load_time: Callable[[Any], datetime | None]
    postgres: bool


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _from_iso(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


_SQLITE = _Dialect(
    "?",
    lambda items: json.dumps(list(items)),
    lambda raw: tuple(json.loads(raw)),
    _iso,
    _from_iso,
    postgres=False,
)
_POSTGRES = _Dialect("%s", list, tuple, lambda value: value, lambda value: value, postgres=True)


class SqlAccessStore:
    """:class:`ade.protocols.AccessStore` over a SQLite or PostgreSQL :class:`Store`."""

    def __init__(self, store: Store, dialect: _Dialect) -> None:
        self._store = store
        self._d = dialect

    def _sql(self, text: str) -> str:
        return text.replace("?", self._d.placeholder)

    def _key(self, row: Any) -> ApiKey:
        id_, name, role, workspaces, token_hash, created, last_used, revoked = row
        created_at = self._d.load_time(created)
        assert created_at is not None  # NOT NULL column
        return ApiKey(
            id=id_,
            name=name,
            role=Role(role),
            workspaces=self._d.load_list(workspaces),
            created_at=created_at,
            token_hash=token_hash,
            last_used_at=self._d.load_time(last_used),
            revoked_at=self._d.load_time(revoked),
        )

    # -- keys ----------------------------------------------------------------------------------

    async def insert_key(self, key: ApiKey) -> None:
        def insert(conn: Any) -> None:
            conn.execute(
                self._sql(f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                (
                    key.id,
                    key.name,
                    key.role.value,
                    self._d.dump_list(key.workspaces),
                    key.token_hash,
                    self._d.dump_time(key.created_at),
                    self._d.dump_time(key.last_used_at),
                    self._d.dump_time(key.revoked_at),
                ),
            )

        await self._store.run(insert, write=True)

    async def get_key(self, key_id: str) -> ApiKey | None:
        def get(conn: Any) -> ApiKey | None:
            row = conn.execute(
                self._sql(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?"), (key_id,)
            ).fetchone()
            return None if row is None else self._key(row)

        return await self._store.run(get, write=False)

    async def list_keys(self) -> list[ApiKey]:
        def query(conn: Any) -> list[ApiKey]:
            rows = conn.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY id").fetchall()
            return [self._key(row) for row in rows]

        return await self._store.run(query, write=False)

    async def revoke_key(self, key_id: str, at: datetime) -> ApiKey:
        def revoke(conn: Any) -> ApiKey:
            conn.execute(
                self._sql("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"),
                (self._d.dump_time(at), key_id),
            )
            row = conn.execute(
                self._sql(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?"), (key_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no API key {key_id}", {"key_id": key_id})
            return self._key(row)

        return await self._store.run(revoke, write=True)

    async def touch_key(self, key_id: str, at: datetime) -> None:
        def touch(conn: Any) -> None:
            conn.execute(
                self._sql("UPDATE api_keys SET last_used_at = ? WHERE id = ?"),
                (self._d.dump_time(at), key_id),
            )

        await self._store.run(touch, write=True)

    async def has_active_admin(self) -> bool:
        def query(conn: Any) -> bool:
            row = conn.execute(
                "SELECT COUNT(*) FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL"
            ).fetchone()
            return bool(row[0])

        return await self._store.run(query, write=False)

    # -- workspaces ----------------------------------------------------------------------------

    async def list_workspaces(self) -> list[Workspace]:
        def query(conn: Any) -> list[Workspace]:
            rows = conn.execute("SELECT id, created_at FROM workspaces ORDER BY id").fetchall()
            return [Workspace(id_, self._d.load_time(created)) for id_, created in rows]  # type: ignore[arg-type]

        return await self._store.run(query, write=False)

    async def workspace_exists(self, workspace_id: str) -> bool:
        return await self._store.run(lambda conn: self._exists(conn, workspace_id), write=False)

    async def create_workspace(self, workspace: Workspace) -> None:
        def insert(conn: Any) -> None:
            if self._exists(conn, workspace.id):
                raise Conflict(
                    f"workspace {workspace.id} already exists", {"workspace_id": workspace.id}
                )
            conn.execute(
                self._sql("INSERT INTO workspaces (id, created_at) VALUES (?, ?)"),
                (workspace.id, self._d.dump_time(workspace.created_at)),
            )

        await self._store.run(insert, write=True)

    def _exists(self, conn: Any, workspace_id: str) -> bool:
        row = conn.execute(self._sql("SELECT 1 FROM workspaces WHERE id = ?"), (workspace_id,))
        return row.fetchone() is not None

    def _check_idle(self, conn: Any, workspace_id: str, doing: str) -> None:
        if workspace_id == DEFAULT_WORKSPACE:
            raise Conflict(
                f"the default workspace cannot be {doing}: the client commands use it "
                "when no workspace is named",
                {"workspace_id": workspace_id},
            )
        # Locked first: an insert into the workspace still in flight ends before the count
        # below, and none can start until this transaction ends (ade.store.workspace_guard).
        if not lock_workspace(conn, workspace_id, postgres=self._d.postgres):
            raise unknown_workspace(workspace_id)
        busy = conn.execute(
            self._sql(
                "SELECT COUNT(*) FROM jobs WHERE workspace_id = ? "
                "AND status IN ('queued', 'running')"
            ),
            (workspace_id,),
        ).fetchone()[0]
        if busy:
            raise Conflict(
                f"workspace {workspace_id} has {busy} queued or running job(s); "
                f"it cannot be {doing} until they end (or are cancelled)",
                {"workspace_id": workspace_id, "active_jobs": busy},
            )

    def _rewrite_keys(self, conn: Any, old: str, new: str | None) -> None:
        """Replace (or, with ``new`` None, remove) ``old`` in every key's workspace list."""
        for key_id, raw in conn.execute("SELECT id, workspaces FROM api_keys").fetchall():
            workspaces = self._d.load_list(raw)
            if old not in workspaces:
                continue
            changed = tuple(
                w for w in (new if w == old else w for w in workspaces) if w is not None
            )
            conn.execute(
                self._sql("UPDATE api_keys SET workspaces = ? WHERE id = ?"),
                (self._d.dump_list(changed), key_id),
            )

    async def rename_workspace(self, workspace_id: str, new_id: str) -> None:
        def rename(conn: Any) -> None:
            self._check_idle(conn, workspace_id, "renamed")
            if self._exists(conn, new_id):
                raise Conflict(f"workspace {new_id} already exists", {"workspace_id": new_id})
            conn.execute(
                self._sql("UPDATE workspaces SET id = ? WHERE id = ?"), (new_id, workspace_id)
            )
            for table in _WORKSPACE_TABLES:
                conn.execute(
                    self._sql(f"UPDATE {table} SET workspace_id = ? WHERE workspace_id = ?"),
                    (new_id, workspace_id),
                )
            self._rewrite_keys(conn, workspace_id, new_id)

        await self._store.run(rename, write=True)

    async def delete_workspace(self, workspace_id: str) -> list[str]:
        """Delete the workspace and its rows; returns its job ids (their directories go next)."""

        def delete(conn: Any) -> list[str]:
            self._check_idle(conn, workspace_id, "deleted")
            job_ids = [
                row[0]
                for row in conn.execute(
                    self._sql("SELECT id FROM jobs WHERE workspace_id = ?"), (workspace_id,)
                ).fetchall()
            ]
            for table in _WORKSPACE_TABLES:
                conn.execute(
                    self._sql(f"DELETE FROM {table} WHERE workspace_id = ?"), (workspace_id,)
                )
            conn.execute(self._sql("DELETE FROM workspaces WHERE id = ?"), (workspace_id,))
            self._rewrite_keys(conn, workspace_id, None)
            return job_ids

        return await self._store.run(delete, write=True)


def access_store(store: Store) -> AccessStore:
    """The keys and workspaces of ``store`` (either kind)."""
    return SqlAccessStore(store, _SQLITE if store.kind == "sqlite" else _POSTGRES)
