"""Serve the API with hypercorn's trio worker inside the caller's nursery."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from ade.api.app import api_context, create_app
from ade.api.asgi import CloseUnreadBodies
from ade.protocols import JobService, Store
from ade.settings import Settings

__all__ = ["GRACEFUL_TIMEOUT_SECONDS", "hypercorn_config", "run_service", "serve_api"]

# How long in-flight requests may finish once shutdown begins (websocket streams are told to
# close at once; see ApiContext.shutting_down).
GRACEFUL_TIMEOUT_SECONDS = 5.0


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    host = settings.host
    config.bind = [f"[{host}]:{settings.port}" if ":" in host else f"{host}:{settings.port}"]
    config.graceful_timeout = GRACEFUL_TIMEOUT_SECONDS
    config.accesslog = None
    config.errorlog = None  # ADE's own messages say what matters; hypercorn's banner would repeat
    return config


async def serve_api(
    settings: Settings,
    runtime: JobService,
    store: Store,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown_trigger`` returns; ``task_status.started(url)`` once listening.

    On shutdown the websocket streams close first (1001), hypercorn stops accepting and gives
    in-flight requests :data:`GRACEFUL_TIMEOUT_SECONDS`; then this returns.
    """
    app = create_app(runtime, settings, store)
    ctx = api_context(app)

    async def trigger() -> None:
        await shutdown_trigger()
        ctx.shutting_down.set()

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            lambda task_status: serve(
                CloseUnreadBodies(app),
                config=hypercorn_config(settings),
                shutdown_trigger=trigger,
                task_status=task_status,
                mode="asgi",
            )
        )
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

    ``task_status.started(url)`` once the API listens. When ``shutdown_trigger`` returns the API
    stops first (nothing new is admitted over HTTP), then the runtime drains: running jobs get
    ``shutdown_grace_seconds``, queued jobs stay queued for the next start.
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
                )
            )
            if runtime.member is not None:
                # Registered before the port was known; `ade nodes list` shows where it serves.
                await runtime.member.queue.set_url(url)
            task_status.started(url)
