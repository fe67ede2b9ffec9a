"""``/api/v1/workspaces``: workspaces are explicit. List (what the caller's key may use),
create, describe, rename, delete; rename and delete are refused (409) while a job of the
workspace is queued or running, and ``default`` can be neither."""

from __future__ import annotations

from typing import Any

import attrs
import trio
from quart import Response, request

from ade.api.auth import current_principal
from ade.api.bodies import (
    WORKSPACE_PATTERN,
    Bounds,
    invalid_body,
    read_json_body,
    structure_body,
)
from ade.api.context import ApiContext
from ade.api.errors import FieldProblem
from ade.api.files import json_response
from ade.api.routing import API_PREFIX, WORKSPACE_PREFIX, Operation
from ade.auth import ANONYMOUS_ADMIN, Access, Workspace
from ade.serde import utcnow

__all__ = ["WorkspaceBody", "workspace_operations"]

WORKSPACES_PATH = f"{API_PREFIX}/workspaces"


@attrs.frozen
class WorkspaceBody:
    """``POST /workspaces`` and ``PATCH /workspaces/{id}`` (the new id)."""

    id: str = attrs.field(metadata=Bounds(min_length=1, max_length=63).metadata())


def _view(workspace: Workspace) -> dict[str, Any]:
    return {
        "id": workspace.id,
        "created_at": workspace.created_at.isoformat(),
        "links": {"self": WORKSPACE_PREFIX.replace("{workspace_id}", workspace.id)},
    }


async def _new_id() -> str:
    body = structure_body(await read_json_body(request, 64 * 1024), WorkspaceBody)
    if not WORKSPACE_PATTERN.match(body.id):
        raise invalid_body(
            [
                FieldProblem(
                    "id",
                    "1-63 characters: lowercase letters, digits, '-' and '_', "
                    "starting with a letter or digit",
                )
            ]
        )
    return body.id


def workspace_operations(ctx: ApiContext) -> list[Operation]:
    async def list_workspaces() -> Response:
        principal = current_principal() or ANONYMOUS_ADMIN
        items = [w for w in await ctx.access.list_workspaces() if principal.sees(w.id)]
        return json_response({"items": [_view(w) for w in items]})

    async def create_workspace() -> Response:
        workspace = Workspace(await _new_id(), utcnow())
        await ctx.access.create_workspace(workspace)
        ctx.auth.forget()
        return json_response(_view(workspace), 201, {"Location": _view(workspace)["links"]["self"]})

    async def get_workspace(workspace_id: str) -> Response:
        found = [w for w in await ctx.access.list_workspaces() if w.id == workspace_id]
        return json_response(_view(found[0]))  # the guard answered 404 for an unknown one

    async def rename_workspace(workspace_id: str) -> Response:
        new_id = await _new_id()
        await ctx.access.rename_workspace(workspace_id, new_id)
        ctx.auth.forget()
        old_dir = ctx.settings.documents_dir / workspace_id
        if old_dir.exists():  # documents are stored per workspace: documents/<id>/<document>
            await trio.to_thread.run_sync(old_dir.rename, ctx.settings.documents_dir / new_id)
        found = [w for w in await ctx.access.list_workspaces() if w.id == new_id]
        return json_response(_view(found[0]))

    async def delete_workspace(workspace_id: str) -> Response:
        # Listed before the rows go: their prepared folders (venvs/<id>) are dropped after,
        # unless another workspace holds the same config (a config published in between is
        # left to the orphan collection, ade gc).
        config_ids = [c.id for c in await ctx.store.list_configs(workspace_id)]
        job_ids = await ctx.access.delete_workspace(workspace_id)
        ctx.auth.forget()
        await ctx.retention.delete_workspace_files(workspace_id, job_ids, config_ids)
        return Response(b"", status=204)

    item = f"{WORKSPACES_PATH}/{{workspace_id}}"
    busy = {409: ("a job of the workspace is queued or running, or it is 'default'", "Error")}
    return [
        Operation(
            "GET",
            WORKSPACES_PATH,
            "list_workspaces",
            list_workspaces,
            "The workspaces the caller's key may use (every one for an admin key)",
            {200: ("the workspaces", "WorkspaceList")},
            tag="workspaces",
            access=Access.ANY_KEY,
        ),
        Operation(
            "POST",
            WORKSPACES_PATH,
            "create_workspace",
            create_workspace,
            "Create a workspace",
            {201: ("created", "Workspace"), 409: ("it exists already", "Error")},
            request_body=("json", "WorkspaceBody"),
            tag="workspaces",
            access=Access.ADMIN,
        ),
        Operation(
            "GET",
            item,
            "get_workspace",
            get_workspace,
            "One workspace",
            {200: ("the workspace", "Workspace"), 404: ("no such workspace", "Error")},
            tag="workspaces",
        ),
        Operation(
            "PATCH",
            item,
            "rename_workspace",
            rename_workspace,
            "Rename a workspace (its jobs, documents, configs and keys follow)",
            {200: ("renamed", "Workspace"), 404: ("no such workspace", "Error"), **busy},
            request_body=("json", "WorkspaceBody"),
            tag="workspaces",
            access=Access.ADMIN,
        ),
        Operation(
            "DELETE",
            item,
            "delete_workspace",
            delete_workspace,
            "Delete a workspace with its jobs, documents and configs",
            {204: ("deleted", None), 404: ("no such workspace", "Error"), **busy},
            tag="workspaces",
            access=Access.ADMIN,
        ),
    ]
