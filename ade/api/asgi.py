"""An ASGI wrapper that closes connections whose request body was not read to the end.

Why: when the app answers early — a 413 for a declared-too-large body, a 415 or 400 decided
before the body was read — hypercorn keeps the HTTP/1.1 connection open but stops reading it.
A client that reuses that connection for its next request (httpx does) then hangs writing into
it. ``Connection: close`` on such a response makes the client open a fresh connection and tells
hypercorn to close this one.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CloseUnreadBodies"]


def _has_body(scope: dict[str, Any]) -> bool:
    for name, value in scope.get("headers", []):
        if name.lower() == b"transfer-encoding":
            return True
        if name.lower() == b"content-length":
            return value.strip() != b"0"
    return False


class CloseUnreadBodies:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done = not _has_body(scope)

        async def tracking_receive() -> dict[str, Any]:
            nonlocal body_done
            message: dict[str, Any] = await receive()
            if message["type"] == "http.disconnect" or (
                message["type"] == "http.request" and not message.get("more_body", False)
            ):
                body_done = True
            return message

        async def closing_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and not body_done:
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, tracking_receive, closing_send)
