"""``/configs``: publish a config package (validate + prepare), list and describe versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from quart import Response, request

from ade.api.context import ApiContext
from ade.api.files import json_response
from ade.api.packages import MAX_PACKAGE_FILES, MAX_PACKAGE_UNPACKED_BYTES, check_zip
from ade.api.routing import WORKSPACE_PREFIX, Operation
from ade.api.uploads import receive_file
from ade.api.views import config_view, workspace_path
from ade.configs import load_package
from ade.configs.prepare import BuildRecord, prepare_config, snapshot_dir
from ade.errors import Conflict
from ade.models import ConfigVersion
from ade.serde import utcnow

__all__ = ["PREPARE_CONCURRENCY", "config_operations", "publish_config"]

# Preparing copies files and may run pip: two at a time keeps the API responsive on 2 cores.
PREPARE_CONCURRENCY = 2


def _prepare(package: Path, venvs_dir: Path) -> tuple[BuildRecord, str, str, bool]:
    if not package.is_dir():  # a folder is only ever the bundled sample (ade serve)
        check_zip(package)
    record = prepare_config(
        package,
        venvs_dir,
        max_unpacked_bytes=MAX_PACKAGE_UNPACKED_BYTES,
        max_files=MAX_PACKAGE_FILES,
    )
    loaded = load_package(snapshot_dir(venvs_dir, record.config_id))
    return record, loaded.title, loaded.version, loaded.engine.runtime_network_access


async def publish_config(
    store: Any,
    venvs_dir: Path,
    workspace_id: str,
    package: Path,
    *,
    limiter: trio.CapacityLimiter | None = None,
) -> tuple[ConfigVersion, bool]:
    """Validate and prepare the package (.zip, or a folder) and record it in ``workspace_id``.

    Returns (config version, created). Publishing identical content again returns the existing
    version (``created`` False): prepare is idempotent by content hash. Raises
    :class:`ade.errors.PackageInvalid` listing each problem. Also used by ``ade serve`` for the
    bundled sample.
    """
    record, title, version, network = await trio.to_thread.run_sync(
        _prepare, package, venvs_dir, limiter=limiter
    )
    existing = await store.get_config(workspace_id, record.config_id)
    if existing is not None:
        return existing, False
    config = ConfigVersion(
        id=record.config_id,
        workspace_id=workspace_id,
        title=title,
        version=version,
        content_hash=record.content_hash,
        created_at=utcnow(),
        runtime_network_access=network,
    )
    try:
        await store.insert_config(config)
    except Conflict:
        # A concurrent publish of the same content won; its row is the version.
        winner = await store.get_config(workspace_id, record.config_id)
        if winner is None:
            raise
        return winner, False
    return config, True


def config_operations(ctx: ApiContext) -> list[Operation]:
    limiter = trio.CapacityLimiter(PREPARE_CONCURRENCY)

    async def publish(workspace_id: str) -> Response:
        uploads = ctx.settings.data_dir / ".uploads"
        received = await receive_file(
            request, field="package", dest_dir=uploads, max_bytes=ctx.max_upload_bytes
        )
        try:
            config, created = await publish_config(
                ctx.store, ctx.settings.venvs_dir, workspace_id, received.path, limiter=limiter
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
    ]
