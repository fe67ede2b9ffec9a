"""API keys, roles and the decision who may do what (docs/security.md, "API keys").

Pure: tokens and hashes (:mod:`ade.auth.keys`), roles and principals (:mod:`ade.auth.principal`).
Where keys and workspaces are stored is :mod:`ade.store.access`; the HTTP seam that reads the
``Authorization`` header is :mod:`ade.api.auth`.
"""

from __future__ import annotations

from ade.auth.keys import (
    KEY_PREFIX,
    ApiKey,
    IssuedKey,
    Workspace,
    hash_token,
    issue_key,
    key_id_of,
    token_matches,
)
from ade.auth.principal import ANONYMOUS_ADMIN, Access, Principal, Role, authorize

__all__ = [
    "ANONYMOUS_ADMIN",
    "KEY_PREFIX",
    "Access",
    "ApiKey",
    "IssuedKey",
    "Principal",
    "Role",
    "Workspace",
    "authorize",
    "hash_token",
    "issue_key",
    "key_id_of",
    "token_matches",
]
