"""Observation cost: what the outermost ASGI layer (request id, route template, HTTP metrics, one
JSON access log line) adds to every request, next to the same requests without it, in the same
run and process.

    .venv/bin/python benchmarks/observe.py              # 20 rounds of 2,000 requests each way
    .venv/bin/python benchmarks/observe.py --quick      # 5 rounds of 500

No sockets: both sides call a trivial ASGI app directly (it answers 200 at once), so the
difference is the layer alone -- matching the path against ADE's real url map, the
Prometheus counter and histogram, and formatting the log line as JSON (written to /dev/null).
Rounds alternate between the two sides; the figures are medians per request. Over a real socket
a status GET costs about a millisecond (docs/benchmarks.md, "API"), which puts the layer's
cost in proportion.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from typing import Any

import trio

from ade.api.app import create_app, route_templates
from ade.api.observe import ObserveRequests
from ade.settings import load_settings
from ade.telemetry.logs import configure_logging
from ade.telemetry.metrics import ServiceMetrics

PATH = "/api/v1/workspaces/default/jobs/01m8k7q2v3w4x5y6z7a8b9c0d1"


async def _bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    return None


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": PATH,
        "headers": [(b"host", b"ade"), (b"x-request-id", b"bench-1")],
        "client": ("127.0.0.1", 5000),
    }


async def _round(app: Any, requests: int) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        await app(_scope(), _receive, _send)
    return (time.perf_counter() - started) / requests


async def _measure(rounds: int, requests: int) -> tuple[list[float], list[float]]:
    quart_app = create_app(None, load_settings({}), None)  # type: ignore[arg-type]
    observed = ObserveRequests(
        _bare, quart_app.url_map, route_templates(quart_app), ServiceMetrics()
    )
    await _round(observed, requests)  # warm-up: binds the url map, creates the label series
    bare: list[float] = []
    layer: list[float] = []
    for _ in range(rounds):
        bare.append(await _round(_bare, requests))
        layer.append(await _round(observed, requests))
    return bare, layer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="5 rounds of 500 requests")
    args = parser.parse_args(argv)
    rounds, requests = (5, 500) if args.quick else (args.rounds, args.requests)
    with open(os.devnull, "w") as null:
        configure_logging("json", null)
        try:
            bare, layer = trio.run(_measure, rounds, requests)
        finally:
            logging.getLogger().handlers.clear()
    bare_us = statistics.median(bare) * 1e6
    layer_us = statistics.median(layer) * 1e6
    print(f"{rounds} rounds of {requests} requests each way, medians per request:\n")
    print("| | µs per request |")
    print("|---|---|")
    print(f"| trivial ASGI app alone | {bare_us:.1f} |")
    print(
        f"| the same behind ade.api.observe (route, metrics, JSON access line) | {layer_us:.1f} |"
    )
    print(f"| **cost of the layer** | **{layer_us - bare_us:.1f}** |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
