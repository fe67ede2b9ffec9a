"""API key tokens: how they look, how they are stored, how they are compared.

A token is ``ade_<key id>_<secret>``: the prefix makes a leaked key recognisable to secret
scanners and to people; the key id (26 characters, :func:`ade.ids.new_id`) lets the server fetch
the one row by primary key instead of searching by hash; the secret is 32 random bytes
(``secrets.token_urlsafe``), 256 bits.

Only ``sha256(token)`` is stored. Why a plain hash and not bcrypt/scrypt/argon2: those slow down
guessing a *low-entropy* password; a 256-bit random secret cannot be guessed whatever the hash
costs, so a slow hash would only add tens of milliseconds to every request for no protection.
The comparison is :func:`hmac.compare_digest`, so how long it takes says nothing about how many
leading bytes matched.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

import attrs

from ade.auth.principal import Role
from ade.ids import new_id

__all__ = [
    "KEY_PREFIX",
    "ApiKey",
    "IssuedKey",
    "Workspace",
    "hash_token",
    "issue_key",
    "key_id_of",
    "token_matches",
]

KEY_PREFIX = "ade_"
_KEY_ID_CHARS = 26  # ade.ids.new_id
_SECRET_BYTES = 32


@attrs.frozen
class ApiKey:
    """A key as stored: never the token itself, only its hash."""

    id: str
    name: str
    role: Role
    # The workspaces a member or viewer key may use; empty for an admin key (it may use all).
    workspaces: tuple[str, ...]
    created_at: datetime
    token_hash: str = attrs.field(repr=False)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@attrs.frozen
class IssuedKey:
    """A new key and its token: the only moment the token exists outside the client."""

    key: ApiKey
    token: str = attrs.field(repr=False)


@attrs.frozen
class Workspace:
    id: str
    created_at: datetime


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Constant-time: the time taken does not depend on where the hashes differ."""
    return hmac.compare_digest(hash_token(token).encode(), stored_hash.encode())


def key_id_of(token: str) -> str | None:
    """The key id inside a well-formed token, else None (nothing to look up)."""
    if not token.startswith(KEY_PREFIX):
        return None
    rest = token[len(KEY_PREFIX) :]
    key_id, sep, secret = (
        rest[:_KEY_ID_CHARS],
        rest[_KEY_ID_CHARS : _KEY_ID_CHARS + 1],
        rest[_KEY_ID_CHARS + 1 :],
    )
    if sep != "_" or len(key_id) != _KEY_ID_CHARS or not key_id.isalnum() or not secret:
        return None
    return key_id


def issue_key(name: str, role: Role, workspaces: tuple[str, ...], *, now: datetime) -> IssuedKey:
    key_id = new_id()
    token = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    key = ApiKey(
        id=key_id,
        name=name,
        role=role,
        workspaces=() if role is Role.ADMIN else workspaces,
        created_at=now,
        token_hash=hash_token(token),
    )
    return IssuedKey(key, token)
