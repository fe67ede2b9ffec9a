"""``GET /api/v1/health``: runtime statistics, store status, sandbox layers."""

from __future__ import annotations

import sqlite3
from typing import Any

import trio
from quart import Response

from ade.api.context import ApiContext
from ade.api.files import json_response
from ade.api.routing import API_PREFIX, Operation
from ade.errors import StoreUnavailable
from ade.sandbox import detect_layers
from ade.serde import converter

__all__ = ["health_operations"]


def _cluster(runtime: Any) -> dict[str, Any] | None:
    """This node and the others as of the last pulse (None on the embedded SQLite store)."""
    member = getattr(runtime, "member", None)
    if member is None:
        return None
    return {
        "node_id": member.node_id,
        "mode": member.info.mode,
        "lease_seconds": member.settings.lease_seconds,
        "nodes": [converter.unstructure(node) for node in member.snapshot.nodes],
    }


def health_operations(ctx: ApiContext) -> list[Operation]:
    async def health() -> Response:
        def ping(conn: Any) -> int:
            # The same statement and cursor API on sqlite3 and psycopg connections.
            return int(conn.execute("SELECT 1").fetchone()[0])

        store: dict[str, Any] = {"kind": ctx.store.kind}
        if ctx.store.kind == "sqlite":
            store["path"] = str(ctx.settings.db_path)
        else:
            store["database"] = ctx.store.location  # user@host:port/db, never the password
        try:
            with trio.fail_after(5):
                store["ok"] = await ctx.store.run(ping, write=False) == 1
        except (sqlite3.Error, StoreUnavailable, trio.TooSlowError) as exc:
            # Reported, not raised: health must answer precisely when something is wrong.
            store["ok"] = False
            store["error"] = type(exc).__name__
        layers = await trio.to_thread.run_sync(detect_layers)  # cached after the first call
        body = {
            "status": "ok" if store["ok"] and not ctx.shutting_down.is_set() else "degraded",
            "shutting_down": ctx.shutting_down.is_set(),
            "runtime": converter.unstructure(ctx.runtime.statistics()),
            "store": store,
            "cluster": _cluster(ctx.runtime),
            "sandbox": {"mode": ctx.settings.sandbox, **converter.unstructure(layers)},
        }
        return json_response(body, 200 if store["ok"] else 503)

    return [
        Operation(
            "GET",
            f"{API_PREFIX}/health",
            "health",
            health,
            "Runtime statistics, store status and sandbox layers",
            {200: ("healthy", "Health"), 503: ("the store does not answer", "Health")},
            tag="service",
        )
    ]
