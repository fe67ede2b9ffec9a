"""``/api/v1/keys``: create (the token is in this one response only), list, revoke. Admin only."""

from __future__ import annotations

from typing import Any

import attrs
from quart import Response, request

from ade.api.bodies import (
    WORKSPACE_PATTERN,
    Bounds,
    check_id,
    invalid_body,
    read_json_body,
    structure_body,
)
from ade.api.context import ApiContext
from ade.api.errors import FieldProblem
from ade.api.files import json_response
from ade.api.routing import API_PREFIX, Operation
from ade.auth import Access, ApiKey, Role, issue_key
from ade.errors import NotFound
from ade.serde import utcnow

__all__ = ["CreateKey", "key_operations", "key_view"]

KEYS_PATH = f"{API_PREFIX}/keys"


@attrs.frozen
class CreateKey:
    """``POST /keys``."""

    name: str = attrs.field(metadata=Bounds(min_length=1, max_length=100).metadata())
    role: str = attrs.field(metadata=Bounds(min_length=1, max_length=16).metadata())
    # Required for member and viewer keys; must be empty for an admin key (it sees all).
    workspaces: tuple[str, ...] = attrs.field(
        default=(),
        metadata=Bounds(
            min_length=1, max_length=63, max_items=100, unique=True, item_name="workspace"
        ).metadata(),
    )


def key_view(key: ApiKey) -> dict[str, Any]:
    """A key as the API shows it: never its hash."""
    return {
        "id": key.id,
        "name": key.name,
        "role": key.role.value,
        "workspaces": list(key.workspaces),
        "created_at": key.created_at.isoformat(),
        "last_used_at": None if key.last_used_at is None else key.last_used_at.isoformat(),
        "revoked_at": None if key.revoked_at is None else key.revoked_at.isoformat(),
    }


def key_operations(ctx: ApiContext) -> list[Operation]:
    async def create_key() -> Response:
        body = structure_body(await read_json_body(request, ctx.max_json_bytes), CreateKey)
        problems = []
        roles = [r.value for r in Role]
        if body.role not in roles:
            problems.append(FieldProblem("role", f"one of {', '.join(roles)}"))
        elif body.role == Role.ADMIN.value and body.workspaces:
            problems.append(FieldProblem("workspaces", "an admin key uses every workspace: omit"))
        elif body.role != Role.ADMIN.value and not body.workspaces:
            problems.append(
                FieldProblem("workspaces", f"a {body.role} key needs at least one workspace")
            )
        for index, workspace_id in enumerate(body.workspaces):
            if not WORKSPACE_PATTERN.match(workspace_id):
                problems.append(FieldProblem(f"workspaces[{index}]", "not a workspace id"))
        if problems:
            raise invalid_body(problems)
        for workspace_id in body.workspaces:
            await ctx.auth.check_workspace(workspace_id)
        issued = issue_key(body.name, Role(body.role), body.workspaces, now=utcnow())
        await ctx.access.insert_key(issued.key)
        ctx.auth.forget()
        return json_response(
            {**key_view(issued.key), "token": issued.token},
            201,
            {"Location": f"{KEYS_PATH}/{issued.key.id}", "Cache-Control": "no-store"},
        )

    async def list_keys() -> Response:
        return json_response({"items": [key_view(k) for k in await ctx.access.list_keys()]})

    async def revoke_key(key_id: str) -> Response:
        if not check_id(key_id):
            raise NotFound(f"no API key {key_id[:40]!r}", {"key_id": key_id[:40]})
        key = await ctx.access.revoke_key(key_id, utcnow())
        ctx.auth.forget()
        return json_response(key_view(key))

    return [
        Operation(
            "POST",
            KEYS_PATH,
            "create_key",
            create_key,
            "Create an API key; its token is shown in this response only",
            {
                201: ("the key, with its token", "KeyCreated"),
                400: ("invalid body (role, workspaces)", "Error"),
                404: ("a listed workspace does not exist", "Error"),
            },
            request_body=("json", "CreateKey"),
            tag="keys",
            access=Access.ADMIN,
        ),
        Operation(
            "GET",
            KEYS_PATH,
            "list_keys",
            list_keys,
            "Every API key (revoked ones too), never a token or hash",
            {200: ("the keys", "KeyList")},
            tag="keys",
            access=Access.ADMIN,
        ),
        Operation(
            "DELETE",
            f"{KEYS_PATH}/{{key_id}}",
            "revoke_key",
            revoke_key,
            "Revoke an API key: refused from the next request on, on every node",
            {200: ("the revoked key", "Key"), 404: ("no such key", "Error")},
            tag="keys",
            access=Access.ADMIN,
        ),
    ]
