"""ASGI layers between hypercorn and the Quart app that keep every connection under control.

From the outside in:

* :class:`RefuseWhileDraining` -- once shutdown has begun, every new HTTP request but the health
  check gets 503 ``shutting_down`` with ``Retry-After`` (the listener stays open while the runtime
  drains, so clients read an answer instead of a refused connection).
* :class:`BodyDeadline` -- a request body must arrive within ``ADE_BODY_TIMEOUT_SECONDS``. A
  trickling body is cut: the handler is cancelled (an upload's temporary file is removed by its
  own cleanup), the client gets 408 and the connection is closed.
* :class:`CloseUnreadBodies` -- a response sent before the request body was read to the end
  (an early 413/415/400) carries ``Connection: close``: hypercorn stops reading such a
  connection, and a client that reused it would hang writing into it.
* :class:`FinishResponses` -- the last send of a response runs shielded from cancellation.
  Why (the cause of connections that never closed): hypercorn finishes a response *inside* the
  app's final ``send``: it ends the h11 cycle, delivers ``http.disconnect`` to the app, then
  either closes the connection (``Connection: close``, HTTP/1.0) or re-arms the keep-alive
  timer. QuartTrio's request nursery cancels itself as soon as it receives that disconnect, so
  the cancellation landed in the middle of hypercorn's bookkeeping: the close never happened
  and the idle timer was never re-armed. A bare ASGI app is not cancelled there, which is why
  it behaved. Shielding the final send lets hypercorn finish; it cannot block for long because
  hypercorn already writes to the socket shielded and closing is immediate.
"""

from __future__ import annotations

import json
import math
from typing import Any

import trio

__all__ = ["BodyDeadline", "CloseUnreadBodies", "FinishResponses", "RefuseWhileDraining"]

ASGIApp = Any


def _has_body(scope: dict[str, Any]) -> bool:
    for name, value in scope.get("headers", []):
        if name.lower() == b"transfer-encoding":
            return True
        if name.lower() == b"content-length":
            return value.strip() != b"0"
    return False


def _is_last(message: dict[str, Any]) -> bool:
    return message["type"] == "http.request" and not message.get("more_body", False)


async def send_error(
    send: Any, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]]
) -> None:
    """A complete error response in the API's shape, straight over ASGI."""
    body = json.dumps({"error": {"code": code, "message": message, "details": None}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class FinishResponses:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def finishing_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                with trio.CancelScope(shield=True):
                    await send(message)
            else:
                await send(message)

        await self.app(scope, receive, finishing_send)


class CloseUnreadBodies:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done = not _has_body(scope)

        async def tracking_receive() -> dict[str, Any]:
            nonlocal body_done
            message: dict[str, Any] = await receive()
            if message["type"] == "http.disconnect" or _is_last(message):
                body_done = True
            return message

        async def closing_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and not body_done:
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, tracking_receive, closing_send)


class BodyDeadline:
    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        started = False
        with trio.CancelScope(deadline=trio.current_time() + self.seconds) as deadline:

            async def timed_receive() -> dict[str, Any]:
                message: dict[str, Any] = await receive()
                if message["type"] == "http.disconnect" or _is_last(message):
                    deadline.deadline = math.inf  # the body is in: the handler's time is its own
                return message

            async def tracking_send(message: dict[str, Any]) -> None:
                nonlocal started
                if message["type"] == "http.response.start":
                    started = True
                    deadline.deadline = math.inf  # answering: never cut a response midway
                await send(message)

            await self.app(scope, timed_receive, tracking_send)
        if deadline.cancelled_caught and not started:
            await send_error(
                send,
                408,
                "request_timeout",
                f"the request body did not arrive within {self.seconds:g} s "
                "(ADE_BODY_TIMEOUT_SECONDS)",
                [(b"connection", b"close")],
            )


class RefuseWhileDraining:
    def __init__(self, app: ASGIApp, draining: trio.Event, always_served: frozenset[str]) -> None:
        self.app = app
        self.draining = draining
        self.always_served = always_served

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and self.draining.is_set()
            and scope["path"] not in self.always_served
        ):
            await send_error(
                send,
                503,
                "shutting_down",
                "the service is shutting down; retry later",
                [(b"retry-after", b"5"), (b"connection", b"close")],
            )
            return
        await self.app(scope, receive, send)
