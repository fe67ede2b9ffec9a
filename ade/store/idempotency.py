"""``Idempotency-Key``: the first response to a key is remembered and replayed.

Contract (docs/api.md):

- A request carrying ``Idempotency-Key: K`` whose (method, path, body) fingerprint matches the
  first request with K in the same workspace gets that first response back (status, body and
  ``Location``), marked ``Idempotent-Replayed: true``; no second job is created.
- Same K with a *different* request: 422 ``idempotency_key_reused``. It is a client bug (a key
  reused for another operation), not a state conflict, so it is not a 409.
- Only successful responses (2xx) are remembered. A 429 or 400 is not: the client must be able
  to retry the same request with the same key once the queue has room.
- Keys live for :data:`KEY_TTL_SECONDS`; expired ones are ignored and purged on later writes.

Concurrent requests with the same key are serialised by the caller (``KeyLocks``), so the second
one replays the first instead of racing it. The decision itself is :func:`decide`, a plain
function over the stored entry and the new fingerprint.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import attrs
import trio

from ade.errors import AdeError
from ade.serde import utcnow
from ade.store.sqlite import SqliteStore

__all__ = [
    "KEY_PATTERN",
    "KEY_TTL_SECONDS",
    "IdempotencyKeyReused",
    "IdempotencyStore",
    "KeyLocks",
    "Proceed",
    "Replay",
    "StoredResponse",
    "decide",
    "fingerprint",
]

KEY_TTL_SECONDS = 24 * 3600
# Printable ASCII without spaces, as UUIDs, ULIDs and most client libraries produce.
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")


class IdempotencyKeyReused(AdeError):
    """The key was first used with a different request."""

    code = "idempotency_key_reused"


@attrs.frozen
class StoredResponse:
    status: int
    body: str
    location: str | None
    request_hash: str
    created_at: datetime


@attrs.frozen
class Replay:
    response: StoredResponse


@attrs.frozen
class Proceed:
    """No usable entry: handle the request, then remember its response if it succeeded."""


def fingerprint(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    digest.update(f"{method.upper()} {path}\0".encode())
    digest.update(body)
    return digest.hexdigest()


def decide(
    entry: StoredResponse | None, request_hash: str, key: str, now: datetime
) -> Replay | Proceed:
    if entry is None or now - entry.created_at > timedelta(seconds=KEY_TTL_SECONDS):
        return Proceed()
    if entry.request_hash != request_hash:
        raise IdempotencyKeyReused(
            f"Idempotency-Key {key!r} was already used for a different request; "
            "use a new key for a new request",
            {"idempotency_key": key},
        )
    return Replay(entry)


class IdempotencyStore:
    """The ``idempotency_keys`` table (migration 2 in :mod:`ade.store.migrations`)."""

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

        return await self._store.run(get, write=False)

    async def remember(self, workspace_id: str, key: str, response: StoredResponse) -> None:
        cutoff = (utcnow() - timedelta(seconds=KEY_TTL_SECONDS)).isoformat()

        def put(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (cutoff,))
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


class KeyLocks:
    """One trio lock per (workspace, key) while in use, so concurrent duplicates queue up."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[trio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, workspace_id: str, key: str) -> AsyncIterator[None]:
        ident = (workspace_id, key)
        lock, users = self._locks.get(ident, (trio.Lock(), 0))
        self._locks[ident] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[ident]
            if users == 1:
                del self._locks[ident]
            else:
                self._locks[ident] = (lock, users - 1)
