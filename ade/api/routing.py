"""The route table: one list of :class:`Operation` drives both the Quart url map and the OpenAPI
document, so the two cannot drift apart (a test compares them anyway).

Paths are written the OpenAPI way (``{job_id}``); :func:`quart_rule` turns them into Quart rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs

from ade.auth.principal import Access

__all__ = ["API_PREFIX", "WORKSPACE_PREFIX", "Operation", "Param", "quart_rule"]

API_PREFIX = "/api/v1"
WORKSPACE_PREFIX = f"{API_PREFIX}/workspaces/{{workspace_id}}"

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@attrs.frozen
class Param:
    """A query parameter (path parameters are read from the path itself)."""

    name: str
    description: str
    schema: dict[str, Any]
    required: bool = False


@attrs.frozen
class Operation:
    method: str  # GET, POST, or WEBSOCKET
    path: str
    name: str  # Quart endpoint and OpenAPI operationId
    handler: Callable[..., Any]
    summary: str
    # status -> (description, response schema name in components, or a media type, or None)
    responses: dict[int, tuple[str, str | None]]
    query: tuple[Param, ...] = ()
    # ("json", "SubmitJob") or ("multipart", "file") or None
    request_body: tuple[str, str] | None = None
    tag: str = "jobs"
    headers: tuple[Param, ...] = ()
    # What the caller's key must allow (ade.auth.principal); None: read for GET and websocket
    # routes, write for every other method -- so a new route is protected by default.
    access: Access | None = None

    @property
    def required_access(self) -> Access:
        if self.access is not None:
            return self.access
        return Access.READ if self.method in ("GET", "WEBSOCKET") else Access.WRITE

    @property
    def is_websocket(self) -> bool:
        return self.method == "WEBSOCKET"

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(_PLACEHOLDER.findall(self.path))


def quart_rule(path: str) -> str:
    return _PLACEHOLDER.sub(r"<\1>", path)
