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

This is HTTP policy, so it lives in the API; the store only keeps a small key table behind
:class:`ade.protocols.IdempotencyKeys`. Concurrent requests with the same key are serialised
here (``KeyLocks``), so the second one replays the first instead of racing it. The decision
itself is :func:`decide`, a plain function over the stored entry and the new fingerprint.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta

import attrs
import trio
from quart import Response, request

from ade.errors import BadRequest, FieldProblem, IdempotencyKeyReused
from ade.models import StoredResponse
from ade.protocols import IdempotencyKeys, Store
from ade.serde import utcnow

__all__ = [
    "KEY_PATTERN",
    "KEY_TTL_SECONDS",
    "ClusterKeyLocks",
    "KeyLocks",
    "Proceed",
    "Replay",
    "decide",
    "fingerprint",
    "idempotent",
    "key_locks_for",
]

KEY_TTL_SECONDS = 24 * 3600
# Printable ASCII without spaces, as UUIDs, ULIDs and most client libraries produce.
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")


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


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not KEY_PATTERN.match(key):
        raise BadRequest(
            "invalid Idempotency-Key header",
            [FieldProblem("Idempotency-Key", "1-255 printable ASCII characters, no spaces")],
        )
    return key


def _replayed(stored: StoredResponse) -> Response:
    headers = {"Idempotent-Replayed": "true"}
    if stored.location:
        headers["Location"] = stored.location
    return Response(
        stored.body, status=stored.status, content_type="application/json", headers=headers
    )


async def idempotent(
    keys: IdempotencyKeys,
    locks: KeyLocks,
    workspace_id: str,
    canonical: bytes,
    create: Callable[[], Awaitable[Response]],
) -> Response:
    """Run ``create`` once per Idempotency-Key (if the request carries one)."""
    key = _idempotency_key()
    if key is None:
        return await create()
    request_hash = fingerprint(request.method, request.path, canonical)
    async with locks.hold(workspace_id, key):
        entry = await keys.lookup(workspace_id, key)
        decision = decide(entry, request_hash, key, utcnow())
        if isinstance(decision, Replay):
            return _replayed(decision.response)
        response = await create()
        if 200 <= response.status_code < 300:
            # Shielded: the job exists now. Were the request cancelled here (the client hung
            # up) the key would be forgotten, and the client's retry with it would create a
            # second job -- exactly what the key is for.
            with trio.CancelScope(shield=True):
                body = (await response.get_data(as_text=True)) or ""
                now = utcnow()
                await keys.remember(
                    workspace_id,
                    key,
                    StoredResponse(
                        status=response.status_code,
                        body=body,
                        location=response.headers.get("Location"),
                        request_hash=request_hash,
                        created_at=now,
                    ),
                    expire_before=now - timedelta(seconds=KEY_TTL_SECONDS),
                )
        return response


class ClusterKeyLocks(KeyLocks):
    """:class:`KeyLocks` across the nodes of a cluster: duplicates within this process queue on
    the local lock (without holding a database connection each), then the holder takes the
    store's cluster-wide lock for the key, so two nodes handling the same key at once serialise
    and the second replays the first's response."""

    def __init__(self, cluster_lock: Callable[[str], AbstractAsyncContextManager[None]]) -> None:
        super().__init__()
        self._cluster_lock = cluster_lock

    @asynccontextmanager
    async def hold(self, workspace_id: str, key: str) -> AsyncIterator[None]:
        async with super().hold(workspace_id, key):
            # Keys are printable ASCII without spaces, workspace ids too: a space separates.
            async with self._cluster_lock(f"idempotency {workspace_id} {key}"):
                yield


def key_locks_for(store: Store) -> KeyLocks:
    """Per process on SQLite (one node); cluster-wide when the store offers ``key_lock``
    (PostgreSQL)."""
    cluster_lock = getattr(store, "key_lock", None)
    return KeyLocks() if cluster_lock is None else ClusterKeyLocks(cluster_lock)
