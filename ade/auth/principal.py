"""Who is asking (a :class:`Principal`) and what a route needs (an :class:`Access`): the whole
authorisation decision, without I/O, so tests drive it directly.

- ``admin``: every workspace, plus keys and workspaces themselves.
- ``member``: read and write inside its workspaces.
- ``viewer``: read only, inside its workspaces.
"""

from __future__ import annotations

from enum import StrEnum

import attrs

from ade.errors import Forbidden

__all__ = ["ANONYMOUS_ADMIN", "Access", "Principal", "Role", "authorize"]


class Role(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class Access(StrEnum):
    """What a route needs from its caller."""

    PUBLIC = "public"  # no key at all (health, the web page's static files)
    ANY_KEY = "any_key"  # any valid key (list the workspaces it may use, who am I)
    READ = "read"  # read inside the route's workspace
    WRITE = "write"  # change inside the route's workspace
    ADMIN = "admin"  # keys and workspaces


@attrs.frozen
class Principal:
    """The caller after authentication; ``quart.g.principal`` during a request (the access
    log reads ``key_id``). ``key_id`` is None only when ADE_AUTH=disabled."""

    key_id: str | None
    role: Role
    workspaces: tuple[str, ...] = ()
    name: str = ""

    def sees(self, workspace_id: str) -> bool:
        return self.role is Role.ADMIN or workspace_id in self.workspaces


# Every request when ADE_AUTH=disabled: local experiments behave as before keys existed.
ANONYMOUS_ADMIN = Principal(key_id=None, role=Role.ADMIN, name="anonymous (ADE_AUTH=disabled)")


def authorize(principal: Principal, access: Access, workspace_id: str | None) -> None:
    """Return when ``principal`` may make a request needing ``access`` (in ``workspace_id``,
    for a workspace route); raise :class:`Forbidden` saying what is missing otherwise."""
    if access in (Access.PUBLIC, Access.ANY_KEY):
        return
    if access is Access.ADMIN:
        if principal.role is not Role.ADMIN:
            raise Forbidden(
                f"this route needs an admin key; key {principal.key_id} is {principal.role.value}",
                {"required_role": "admin", "role": principal.role.value},
            )
        return
    if workspace_id is not None and not principal.sees(workspace_id):
        raise Forbidden(
            f"key {principal.key_id} may not use workspace {workspace_id}",
            {"workspace_id": workspace_id, "key_workspaces": list(principal.workspaces)},
        )
    if access is Access.WRITE and principal.role is Role.VIEWER:
        raise Forbidden(
            f"key {principal.key_id} is a viewer key: read only",
            {"required_role": "member", "role": principal.role.value},
        )
