"""Assemble the quart-trio application from the route table."""

from __future__ import annotations

from typing import Any

from quart import Response, request, websocket
from quart_trio import QuartTrio

from ade.api.bodies import check_workspace_id
from ade.api.configs import config_operations
from ade.api.context import ApiContext
from ade.api.documents import document_operations
from ade.api.errors import install_error_handlers
from ade.api.files import json_response
from ade.api.health import HEALTH_PATH, health_operations
from ade.api.idempotency import key_locks_for
from ade.api.jobs import job_operations
from ade.api.metrics import metrics_operations
from ade.api.observe import note_principal
from ade.api.openapi import build_openapi
from ade.api.routing import API_PREFIX, Operation, quart_rule
from ade.api.streams import stream_operations
from ade.api.ui import ui_operations
from ade.api.uploads import MULTIPART_OVERHEAD
from ade.protocols import JobService, Store
from ade.settings import Settings

__all__ = [
    "HEALTH_PATH",
    "OPENAPI_PATH",
    "api_context",
    "create_app",
    "operations",
    "route_templates",
]

OPENAPI_PATH = f"{API_PREFIX}/openapi.json"
_EXTENSION = "ade"
_TEMPLATES = "ade.routes"


def operations(ctx: ApiContext) -> list[Operation]:
    """Every route of the API, in documentation order (the OpenAPI route included)."""
    ops = [
        *ui_operations(),
        *health_operations(ctx),
        *document_operations(ctx),
        *config_operations(ctx),
        *job_operations(ctx),
        *stream_operations(ctx),
        *metrics_operations(ctx),
    ]
    document: dict[str, Any] = {}

    async def openapi() -> Response:
        return json_response(document)

    ops.append(
        Operation(
            "GET",
            OPENAPI_PATH,
            "openapi",
            openapi,
            "This OpenAPI document",
            {200: ("the OpenAPI 3.1 document", "OpenApi")},
            tag="service",
        )
    )
    document.update(build_openapi(ops))
    return ops


def create_app(runtime: JobService, settings: Settings, store: Store) -> QuartTrio:
    """The API over ``runtime`` and ``store`` (jobs, documents, configs, idempotency keys;
    SQLite or PostgreSQL): both typed by their seams in :mod:`ade.protocols`."""
    ctx = ApiContext(
        runtime=runtime, settings=settings, store=store, key_locks=key_locks_for(store)
    )
    app = QuartTrio("ade.api", static_folder=None)
    # Bodies declaring more than this are refused before they are read; uploads also count
    # their bytes as they stream (ade.api.uploads), whatever the header said.
    app.config["MAX_CONTENT_LENGTH"] = ctx.max_upload_bytes + MULTIPART_OVERHEAD
    app.config["JSON_SORT_KEYS"] = False
    app.extensions[_EXTENSION] = ctx
    install_error_handlers(app)

    # Hooks, not a url_value_preprocessor: Quart 0.22 runs those with `request` even for a
    # websocket, where it is unbound.
    @app.before_request
    async def _check_request_workspace() -> None:
        _check_workspace(request.view_args)

    @app.before_websocket
    async def _check_websocket_workspace() -> None:
        _check_workspace(websocket.view_args)

    # The access log's key id (ade.api.observe): read from quart.g while it still exists.
    @app.after_request
    async def _note_principal(response: Response) -> Response:
        note_principal()
        return response

    @app.after_websocket
    async def _note_websocket_principal(response: Response | None) -> Response | None:
        note_principal()
        return response

    ops = operations(ctx)
    # endpoint -> route template, for the access log and the metrics' route label.
    app.extensions[_TEMPLATES] = {op.name: op.path for op in ops}
    for op in ops:
        rule = quart_rule(op.path)
        if op.is_websocket:
            app.add_websocket(rule, op.name, op.handler)
        else:
            app.add_url_rule(rule, op.name, op.handler, methods=[op.method])
    return app


def _check_workspace(values: dict[str, Any] | None) -> None:
    if values and "workspace_id" in values:
        check_workspace_id(values["workspace_id"])


def route_templates(app: QuartTrio) -> dict[str, str]:
    """Endpoint name -> the route's OpenAPI path template (``{job_id}``)."""
    templates: dict[str, str] = app.extensions[_TEMPLATES]
    return templates


def api_context(app: QuartTrio) -> ApiContext:
    """The shared context of an app made by :func:`create_app` (``ade serve`` uses its
    ``shutting_down`` event to close websocket streams first)."""
    ctx: ApiContext = app.extensions[_EXTENSION]
    return ctx
