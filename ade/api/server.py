"""Serve the API with hypercorn's trio worker inside the caller's nursery."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from ade.api.app import api_context, create_app
from ade.settings import Settings

__all__ = ["GRACEFUL_TIMEOUT_SECONDS", "hypercorn_config", "serve_api"]

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
    runtime: Any,
    store: Any,
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
                app,
                config=hypercorn_config(settings),
                shutdown_trigger=trigger,
                task_status=task_status,
                mode="asgi",
            )
        )
        task_status.started(binds[0])
