"""Serve the API with hypercorn's trio worker inside the caller's nursery."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config

from ade.api.app import HEALTH_PATH, api_context, create_app, route_templates
from ade.api.asgi import BodyDeadline, CloseUnreadBodies, FinishResponses, RefuseWhileDraining
from ade.api.connections import connection_cap, serve_http
from ade.api.metrics import METRICS_PATH
from ade.api.observe import ObserveRequests
from ade.protocols import JobService, Store
from ade.settings import Settings

__all__ = ["GRACEFUL_TIMEOUT_SECONDS", "hypercorn_config", "run_service", "serve_api"]

log = logging.getLogger("ade.api")

# How long in-flight requests may finish once shutdown begins (websocket streams are told to
# close at once; see ApiContext.shutting_down).
GRACEFUL_TIMEOUT_SECONDS = 5.0


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    host = settings.host
    config.bind = [f"[{host}]:{settings.port}" if ":" in host else f"{host}:{settings.port}"]
    config.graceful_timeout = GRACEFUL_TIMEOUT_SECONDS
    # Idle keep-alive connections close after this; hypercorn runs the same timer from the
    # moment a connection opens until its request headers are complete, so it bounds a client
    # that trickles its headers too.
    config.keep_alive_timeout = settings.keep_alive_seconds
    # hypercorn's default listen backlog of 100 overflowed under a burst of 1,000 connects:
    # the kernel completed handshakes the server never saw, so they were never answered nor
    # closed. Room for the connection cap (the kernel clamps it to net.core.somaxconn).
    config.backlog = min(settings.max_connections, 4096)
    config.accesslog = None
    config.errorlog = None  # ADE's own messages say what matters; hypercorn's banner would repeat
    return config


async def serve_api(
    settings: Settings,
    runtime: JobService,
    store: Store,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    drain: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown_trigger`` returns; ``task_status.started(url)`` once listening.

    On shutdown the websocket streams close first (1001); while ``drain()`` runs (the
    runtime's drain) the API keeps listening and answers every new request but the health
    check with 503 ``shutting_down`` + Retry-After (health says ``draining``); then the server
    stops accepting and gives in-flight requests :data:`GRACEFUL_TIMEOUT_SECONDS`.
    """
    app = create_app(runtime, settings, store)
    ctx = api_context(app)
    cap = connection_cap(settings.max_connections)
    if cap < settings.max_connections:
        log.warning(
            "ADE_MAX_CONNECTIONS lowered from %d to %d to fit the open-file limit",
            settings.max_connections,
            cap,
        )

    async def trigger() -> None:
        await shutdown_trigger()
        ctx.shutting_down.set()
        if drain is not None:
            await drain()

    guarded = RefuseWhileDraining(
        BodyDeadline(CloseUnreadBodies(FinishResponses(app)), settings.body_timeout_seconds),
        ctx.shutting_down,
        # A draining node still answers its health check and its scrape.
        frozenset({HEALTH_PATH, METRICS_PATH}),
    )
    # Outermost: every answer, the layers' own included, gets a request id, a log line and
    # its place in the HTTP metrics.
    observed = ObserveRequests(guarded, app.url_map, route_templates(app), ctx.metrics)
    async with trio.open_nursery() as nursery:
        # The data directory's usage for /health and /metrics, refreshed in the background
        # for as long as the server serves.
        watcher = trio.CancelScope()

        async def watch_disk() -> None:
            with watcher:
                await ctx.watch_disk_usage()

        async def serve(task_status: trio.TaskStatus[list[str]]) -> None:
            try:
                await serve_http(
                    observed,
                    hypercorn_config(settings),
                    max_connections=cap,
                    shutdown_trigger=trigger,
                    task_status=task_status,
                )
            finally:
                watcher.cancel()

        nursery.start_soon(watch_disk)
        binds: list[str] = await nursery.start(serve)
        task_status.started(binds[0])


async def run_service(
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    before_serving: Callable[[Any], Awaitable[None]] | None = None,
    workers: int | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The whole service in the caller's nursery: the runtime's actors and the API.

    ``task_status.started(url)`` once the API listens. When ``shutdown_trigger`` returns the
    runtime drains (running jobs get ``shutdown_grace_seconds``, queued jobs stay queued for the
    next start) while the API answers new requests with 503; then the API stops.
    ``before_serving(runtime)`` runs before the API accepts requests (``ade serve`` prepares the
    bundled sample config there). ``workers`` overrides ``ADE_MAX_CONCURRENCY`` (0: an
    API-only node of a cluster).
    """
    from ade.runtime import open_runtime

    async with open_runtime(settings, workers=workers) as runtime:
        if before_serving is not None:
            await before_serving(runtime)
        async with trio.open_nursery() as nursery:
            url = await nursery.start(
                partial(
                    serve_api,
                    settings,
                    runtime,
                    runtime.store,
                    shutdown_trigger=shutdown_trigger,
                    drain=runtime.drain,
                )
            )
            if runtime.member is not None:
                # Registered before the port was known; `ade nodes list` shows where it serves.
                await runtime.member.queue.set_url(url)
            task_status.started(url)
