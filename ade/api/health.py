"""``GET /api/v1/health``: runtime statistics, store status, sandbox layers."""

from __future__ import annotations

import sqlite3
from typing import Any

import trio
from quart import Response

from ade.api.context import ApiContext
from ade.api.files import json_response
from ade.api.routing import API_PREFIX, Operation
from ade.api.single_flight import SingleFlight
from ade.errors import StoreUnavailable
from ade.serde import converter

__all__ = ["HEALTH_PATH", "health_operations"]

HEALTH_PATH = f"{API_PREFIX}/health"


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
    def ping(conn: Any) -> int:
        # The same statement and cursor API on sqlite3 and psycopg connections.
        return int(conn.execute("SELECT 1").fetchone()[0])

    async def probe_store() -> dict[str, Any]:
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
        return store

    shared_probe = SingleFlight(probe_store)

    async def health() -> Response:
        store = dict(await shared_probe())
        layers = await ctx.sandbox_layers()
        disk = await ctx.disk_usage()
        draining = ctx.shutting_down.is_set()
        status = "draining" if draining else "ok" if store["ok"] else "degraded"
        body = {
            "status": status,
            "shutting_down": ctx.shutting_down.is_set(),
            "runtime": converter.unstructure(ctx.runtime.statistics()),
            "store": store,
            "cluster": _cluster(ctx.runtime),
            "sandbox": {"mode": ctx.settings.sandbox, **converter.unstructure(layers)},
            # Bytes on disk under ADE_DATA_DIR (hard-linked inputs once) and the room left.
            "disk": disk,
        }
        # 503 while draining too: a load balancer stops sending new work here.
        return json_response(body, 200 if status == "ok" else 503)

    return [
        Operation(
            "GET",
            HEALTH_PATH,
            "health",
            health,
            "Runtime statistics, store status and sandbox layers",
            {
                200: ("healthy", "Health"),
                503: ("the store does not answer, or the service is draining", "Health"),
            },
            tag="service",
        )
    ]
