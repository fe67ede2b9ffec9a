"""The rule that keeps rows out of deleted workspaces, written once for both stores.

There is no foreign key from jobs, documents or config versions to ``workspaces`` (the tables
are older than explicit workspaces, :mod:`ade.store.migrations` version 5), so the API's
"workspace exists" check is not enough on its own: a submit or an upload that passed it just
before a workspace deletion committed would insert its row afterwards, in a workspace that no
longer exists. So every insert of such a row first calls :func:`require_workspace` inside its
own write transaction, and a deletion (or rename) calls :func:`lock_workspace` before it looks
at what the workspace holds:

- **SQLite** serialises every write transaction (``BEGIN IMMEDIATE`` under one lock), so the
  check and the insert see the same committed state, and a deletion is entirely before or after.
- **PostgreSQL** (read committed) runs transactions side by side, so the check locks the row:
  ``FOR KEY SHARE`` for an insert (the lock a foreign key takes: inserts never block one
  another) and ``FOR UPDATE`` for a deletion or rename (which conflicts with it). Whichever
  transaction locks the row first wins; the other waits for it to end. An insert that waited
  for a deletion finds no row and is refused; a deletion that waited for an insert then sees
  that insert's row (each statement of read committed takes a new snapshot), so it either
  refuses (a queued job: the workspace is not idle) or deletes the new row with the rest.

A refused insert raises :class:`ade.errors.NotFound` with the API guard's words, so the caller
answers 404 and undoes what it prepared (admission removes the job directory and frees the queue
slot; the catalog removes the document file).
"""

from __future__ import annotations

from typing import Any

from ade.errors import NotFound

__all__ = ["lock_workspace", "require_workspace", "unknown_workspace"]


def unknown_workspace(workspace_id: str) -> NotFound:
    return NotFound(f"workspace {workspace_id} not found", {"workspace_id": workspace_id})


def _locked(conn: Any, workspace_id: str, *, postgres: bool, lock: str) -> bool:
    placeholder, suffix = ("%s", f" {lock}") if postgres else ("?", "")
    row = conn.execute(
        f"SELECT 1 FROM workspaces WHERE id = {placeholder}{suffix}", (workspace_id,)
    ).fetchone()
    return row is not None


def require_workspace(conn: Any, workspace_id: str, *, postgres: bool) -> None:
    """In an insert's write transaction: refuse (NotFound) unless the workspace exists, and on
    PostgreSQL hold it against deletion and rename until the transaction ends."""
    if not _locked(conn, workspace_id, postgres=postgres, lock="FOR KEY SHARE"):
        raise unknown_workspace(workspace_id)


def lock_workspace(conn: Any, workspace_id: str, *, postgres: bool) -> bool:
    """In a deletion's or rename's write transaction, before anything of the workspace is read:
    whether it exists; on PostgreSQL it is then locked, after any insert in flight has ended."""
    return _locked(conn, workspace_id, postgres=postgres, lock="FOR UPDATE")
