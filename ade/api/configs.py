"""``/configs``: publish a config package (validate + prepare), list and describe versions."""

from __future__ import annotations

import trio
from quart import Response, request

from ade.api.context import ApiContext
from ade.api.files import json_response
from ade.api.routing import WORKSPACE_PREFIX, Operation
from ade.api.uploads import receive_file
from ade.api.views import config_view, workspace_path
from ade.telemetry.context import current_request_id

__all__ = ["PREPARE_CONCURRENCY", "config_operations"]

# Preparing copies files and may run pip: two at a time keeps the API responsive on 2 cores.
PREPARE_CONCURRENCY = 2


def config_operations(ctx: ApiContext) -> list[Operation]:
    limiter = trio.CapacityLimiter(PREPARE_CONCURRENCY)

    async def publish(workspace_id: str) -> Response:
        uploads = ctx.settings.data_dir / ".uploads"
        received = await receive_file(
            request, field="package", dest_dir=uploads, max_bytes=ctx.max_upload_bytes
        )
        try:
            config, created = await ctx.catalog.publish_config(
                workspace_id, received.path, limiter=limiter
            )
        finally:
            received.path.unlink(missing_ok=True)
        location = workspace_path(workspace_id, f"/configs/{config.id}")
        return json_response(config_view(config), 201 if created else 200, {"Location": location})

    async def list_configs(workspace_id: str) -> Response:
        configs = await ctx.store.list_configs(workspace_id)
        return json_response({"items": [config_view(c) for c in configs]})

    async def get_config(workspace_id: str, config_id: str) -> Response:
        return json_response(config_view(await ctx.config(workspace_id, config_id)))

    async def delete_config(workspace_id: str, config_id: str) -> Response:
        await ctx.config(workspace_id, config_id)  # 404 in the API's words first
        await ctx.retention.delete_config(workspace_id, config_id, request_id=current_request_id())
        return Response("", status=204)

    base = f"{WORKSPACE_PREFIX}/configs"
    return [
        Operation(
            "POST",
            base,
            "publish_config",
            publish,
            "Publish a config package (.zip, multipart field `package`): validate and prepare",
            {
                200: ("identical content was already published: the existing version", "Config"),
                201: ("validated, prepared and recorded", "Config"),
                400: ("malformed form or missing `package` part", "Error"),
                413: ("larger than ADE_MAX_UPLOAD_MB", "Error"),
                415: ("not multipart/form-data", "Error"),
                422: ("invalid or unsafe package; details list each problem", "Error"),
            },
            request_body=("multipart", "package"),
            tag="configs",
        ),
        Operation(
            "GET",
            base,
            "list_configs",
            list_configs,
            "List the workspace's config versions, oldest first",
            {200: ("config versions", "ConfigList")},
            tag="configs",
        ),
        Operation(
            "GET",
            f"{base}/{{config_id}}",
            "get_config",
            get_config,
            "Describe one config version",
            {200: ("the config version", "Config"), 404: ("unknown config version", "Error")},
            tag="configs",
        ),
        Operation(
            "DELETE",
            f"{base}/{{config_id}}",
            "delete_config",
            delete_config,
            "Delete a config version (its prepared files go once no workspace holds it)",
            {
                204: ("deleted", None),
                404: ("unknown config version", "Error"),
                409: ("a queued or running job uses it", "Error"),
            },
            tag="configs",
        ),
    ]
