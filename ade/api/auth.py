"""The authentication seam: every request's key is read, checked and turned into a
:class:`ade.auth.Principal` (``quart.g.principal``) before any handler runs.

Theory of operation
-------------------
Where the key comes from: ``Authorization: Bearer <key>`` on every request; a browser cannot set
headers on a websocket handshake (nor on a download link), so websockets and GET requests also
accept ``?access_token=<key>`` (RFC 6750, section 2.3).

Revocation must hold at once on every node. On PostgreSQL (several nodes) each request reads the
key's row: a revocation on another node is seen by the next request. On SQLite there is exactly
one node, and every change of keys or workspaces goes through this process's API (``ade keys``
and ``ade workspaces`` are API clients), so verified keys and the workspace list are cached in
memory and the cache is dropped by every such change: it cannot outlive a revocation (a read
that was in flight during the change is not cached either: it may predate it). That cache
is what keeps the check off the request path's worker-thread hop (docs/benchmarks.md, "Auth").

``last_used_at`` is written at most once a minute per key: a write per request would serialise
every read on SQLite's one writer.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs
from quart import g, request, websocket

from ade.auth import ANONYMOUS_ADMIN, Access, ApiKey, Principal, key_id_of, token_matches
from ade.errors import NotFound, Unauthorized
from ade.protocols import AccessStore
from ade.serde import utcnow

__all__ = ["Authenticator", "current_key_id", "current_principal", "token_from"]

_TOUCH_EVERY = timedelta(minutes=1)
QUERY_TOKEN = "access_token"


def token_from(authorization: str | None, query_token: str | None) -> str | None:
    """The key a request carries, or None. A malformed header is a 401, not "no key"."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized(
                "the Authorization header must be 'Bearer <API key>'", {"scheme": "Bearer"}
            )
        return value.strip()
    return query_token or None


@attrs.define
class Authenticator:
    """Keys and workspaces as the API checks them, with the cache described above."""

    access: AccessStore
    enabled: bool
    cacheable: bool
    _keys: dict[str, ApiKey] = attrs.field(factory=dict)
    _workspaces: frozenset[str] | None = None
    _touched: dict[str, datetime] = attrs.field(factory=dict)
    # Counts forget() calls. A read that was in flight while keys or workspaces changed may
    # hold what the change removed: it is used for its own request but never cached.
    _generation: int = 0

    def forget(self) -> None:
        """Drop what is cached: called after every change of keys or workspaces."""
        self._keys.clear()
        self._workspaces = None
        self._generation += 1

    async def _key(self, key_id: str) -> ApiKey | None:
        if self.cacheable and key_id in self._keys:
            return self._keys[key_id]
        generation = self._generation
        key = await self.access.get_key(key_id)
        if (
            self.cacheable
            and key is not None
            and not key.revoked
            and generation == self._generation
        ):
            self._keys[key_id] = key
        return key

    async def principal(self, token: str | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS_ADMIN
        if token is None:
            raise Unauthorized(
                "an API key is required: send 'Authorization: Bearer <key>' "
                "(ade serve printed the first admin key and stored it in ADE_DATA_DIR/admin.key)"
            )
        key_id = key_id_of(token)
        key = None if key_id is None else await self._key(key_id)
        # One message for unknown, malformed and wrong-secret keys: which one it was would help
        # only someone guessing. Never the key itself in it.
        if key is None or not token_matches(token, key.token_hash):
            raise Unauthorized("the API key is not valid")
        if key.revoked:
            raise Unauthorized(f"API key {key.id} was revoked", {"key_id": key.id})
        await self._touch(key.id)
        return Principal(key_id=key.id, role=key.role, workspaces=key.workspaces, name=key.name)

    async def _touch(self, key_id: str) -> None:
        now = utcnow()
        last = self._touched.get(key_id)
        if last is None or now - last >= _TOUCH_EVERY:
            self._touched[key_id] = now
            await self.access.touch_key(key_id, now)

    async def check_workspace(self, workspace_id: str) -> None:
        """404 for a workspace nobody created (workspaces are explicit)."""
        if self.cacheable:
            workspaces = self._workspaces
            if workspaces is None:
                generation = self._generation
                workspaces = frozenset(w.id for w in await self.access.list_workspaces())
                if generation == self._generation:
                    self._workspaces = workspaces
            exists = workspace_id in workspaces
        else:
            exists = await self.access.workspace_exists(workspace_id)
        if not exists:
            raise NotFound(
                f"workspace {workspace_id} not found (ade workspaces list shows them; "
                "an admin creates one with ade workspaces create)",
                {"workspace_id": workspace_id},
            )


def current_principal() -> Principal | None:
    return getattr(g, "principal", None)


def current_key_id() -> str | None:
    principal = current_principal()
    return None if principal is None else principal.key_id


async def authenticate(
    auth: Authenticator, access: Access, *, is_websocket: bool
) -> Principal | None:
    """The caller of the current request (None on a public route); sets ``g.principal``."""
    if access is Access.PUBLIC:
        return None
    req = websocket if is_websocket else request
    query = req.args.get(QUERY_TOKEN) if is_websocket or req.method == "GET" else None
    principal = await auth.principal(token_from(req.headers.get("Authorization"), query))
    g.principal = principal
    return principal
