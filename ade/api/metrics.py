"""``GET /metrics`` for Prometheus: who may scrape (a token, or loopback only) and what it reads.

With ``ADE_METRICS_TOKEN`` set, a scrape must send ``Authorization: Bearer <token>`` (compared
in constant time); without it, /metrics answers clients on the loopback interface only, so a
service exposed on a network does not publish its workspace names and load to anyone. Both
refusals are the usual error body (401 with ``WWW-Authenticate``, 403).
"""

from __future__ import annotations

import hmac
import ipaddress

from quart import Response, request

from ade.api.context import ApiContext
from ade.api.errors import error_response
from ade.api.routing import Operation
from ade.telemetry.metrics import CONTENT_TYPE, Snapshots

__all__ = ["METRICS_PATH", "metrics_operations", "scrape_refusal"]

METRICS_PATH = "/metrics"


def _is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def scrape_refusal(
    token: str | None, remote_addr: str | None, authorization: str | None
) -> tuple[int, str, str] | None:
    """None when the scrape may go ahead, else (status, code, message). Pure."""
    if token is not None:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return None
        return 401, "unauthorized", "GET /metrics needs Authorization: Bearer <ADE_METRICS_TOKEN>"
    if _is_loopback(remote_addr):
        return None
    return (
        403,
        "forbidden",
        "GET /metrics answers loopback clients only; set ADE_METRICS_TOKEN to scrape it "
        "from elsewhere",
    )


def metrics_operations(ctx: ApiContext) -> list[Operation]:
    async def metrics() -> Response:
        refusal = scrape_refusal(
            ctx.settings.metrics_token, request.remote_addr, request.headers.get("Authorization")
        )
        if refusal is not None:
            status, code, message = refusal
            headers = {"WWW-Authenticate": 'Bearer realm="ade-metrics"'} if status == 401 else None
            return error_response(status, code, message, headers=headers)
        layers = await ctx.sandbox_layers()
        disk = await ctx.disk_usage()
        runtime = ctx.runtime
        telemetry = getattr(runtime, "telemetry", None)
        sweeper = getattr(runtime, "sweeper", None)
        latency = getattr(ctx.store, "latency", None)
        snapshots = Snapshots(
            runtime=runtime.statistics(),
            jobs=None if telemetry is None else telemetry.snapshot(),
            store_kind=ctx.store.kind,
            store_latency=None if latency is None else latency.snapshot(),
            sandbox_layers=tuple((layer.name, layer.available) for layer in layers.layers),
            retention=None if sweeper is None else sweeper.statistics(),
            data_dir_bytes=None if disk is None else disk.get("used_bytes"),
        )
        assert ctx.metrics is not None
        body = ctx.metrics.render(snapshots)
        return Response(body, status=200, content_type=CONTENT_TYPE)

    return [
        Operation(
            "GET",
            METRICS_PATH,
            "metrics",
            metrics,
            "Prometheus metrics (Bearer ADE_METRICS_TOKEN, or loopback clients when unset)",
            {
                200: ("metrics in the Prometheus text format", "text/plain"),
                401: ("ADE_METRICS_TOKEN is set and the request does not carry it", "Error"),
                403: ("no ADE_METRICS_TOKEN and the client is not on loopback", "Error"),
            },
            tag="service",
        )
    ]
