"""The outermost ASGI layer: a request id, one access log line and the HTTP metrics per request.

It wraps everything else (the drain refusal, the body deadline, the app), so a 503 while
draining or a 408 is logged and counted like any answer. Routes are labelled by their template
(``/api/v1/workspaces/{workspace_id}/jobs/{job_id}``), found by matching the app's own url map:
never the raw path, which holds ids without end (and whatever a client typed). The key id comes
from ``quart.g.principal`` (set by authentication) through :func:`note_principal`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from quart import g
from werkzeug.exceptions import HTTPException
from werkzeug.routing import MapAdapter, RequestRedirect

from ade.telemetry.context import (
    REQUEST_ID_HEADER,
    RequestInfo,
    accept_request_id,
    current_request,
    request_scope,
)
from ade.telemetry.logs import log_fields
from ade.telemetry.metrics import ServiceMetrics

__all__ = ["UNMATCHED_ROUTE", "ObserveRequests", "note_principal"]

access_log = logging.getLogger("ade.access")

UNMATCHED_ROUTE = "unmatched"
# Methods a label may name; any other token a client sends is "OTHER", so nobody can grow the
# metrics' label space (or the log's vocabulary) by inventing methods.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_HEADER = REQUEST_ID_HEADER.lower().encode()


def note_principal() -> None:
    """Copy the authenticated key's id into the access log's record of this request (a Quart
    after-request hook: ``g`` is gone by the time the ASGI layer logs)."""
    info = current_request()
    principal = getattr(g, "principal", None)
    if info is not None and principal is not None:
        key_id = getattr(principal, "key_id", None)
        if isinstance(key_id, str):
            info.key_id = key_id


class ObserveRequests:
    def __init__(
        self, app: Any, url_map: Any, templates: dict[str, str], metrics: ServiceMetrics | None
    ) -> None:
        self.app = app
        self._url_map = url_map
        self._adapter: MapAdapter | None = None
        self._templates = templates
        self._metrics = metrics

    def route_of(self, scope: dict[str, Any]) -> str:
        """The route template that serves this request, or ``unmatched``."""
        if self._adapter is None:
            self._adapter = self._url_map.bind("ade")
        websocket = scope["type"] == "websocket"
        try:
            endpoint, _ = self._adapter.match(
                scope["path"], method=scope.get("method", "GET"), websocket=websocket
            )
        except (HTTPException, RequestRedirect):
            return UNMATCHED_ROUTE
        return self._templates.get(str(endpoint), UNMATCHED_ROUTE)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == _HEADER:
                incoming = value.decode("latin-1")
                break
        info = RequestInfo(accept_request_id(incoming), self.route_of(scope))
        if scope["type"] == "websocket":
            method = "WEBSOCKET"
        else:
            method = scope.get("method", "GET")
            method = method if method in _METHODS else "OTHER"
        status = 500  # what the client gets if the app raises before answering
        header = (_HEADER, info.request_id.encode())

        async def observing_send(message: dict[str, Any]) -> None:
            nonlocal status
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            elif kind == "websocket.accept":
                status = 101
                message = {**message, "headers": [*message.get("headers", ()), header]}
            elif kind == "websocket.close" and status == 500:
                status = 403  # closed before the handshake was accepted
            await send(message)

        started = time.perf_counter()
        try:
            with request_scope(info):
                await self.app(scope, receive, observing_send)
        finally:
            seconds = time.perf_counter() - started
            if self._metrics is not None:
                self._metrics.observe_request(info.route, method, status, seconds)
            log_fields(
                access_log,
                logging.INFO,
                f"{method} {info.route} {status}",
                method=method,
                route=info.route,
                status=status,
                duration_ms=round(seconds * 1000, 2),
                request_id=info.request_id,
                key_id=info.key_id,
            )
