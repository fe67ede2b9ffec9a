"""The request id: accepted from a client or made here, returned in ``X-Request-Id``, carried
into log lines and into the ``enqueue`` event of a job the request submitted.

Why a context variable: the id belongs to everything one request causes in its task (the
handler, the runtime's admission steps it awaits), like a trace id; passing it through every
signature between the ASGI layer and the recorder would change a dozen seams for one string.
The runtime reads it once, at the commit point of a submission, and from there it travels in
the :class:`~ade.runtime.messages.AcceptJob` message, explicitly.
"""

from __future__ import annotations

import contextvars
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import attrs

__all__ = [
    "REQUEST_ID_HEADER",
    "RequestInfo",
    "accept_request_id",
    "current_request",
    "current_request_id",
    "request_scope",
]

REQUEST_ID_HEADER = "X-Request-Id"
# A "sane" incoming id: what proxies and tracing systems send (uuids, hex, base64url, dotted or
# colon-separated trace ids), short enough for a log line, nothing that could break one.
_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


@attrs.define
class RequestInfo:
    """What the access log says about one request; filled in as the request goes on."""

    request_id: str
    route: str = "unmatched"
    key_id: str | None = None


_current: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar(
    "ade_request", default=None
)


def accept_request_id(raw: str | None) -> str:
    """The client's id when it is sane, else a new random one (16 bytes, hex)."""
    if raw is not None and _SANE.fullmatch(raw):
        return raw
    return secrets.token_hex(16)


@contextmanager
def request_scope(info: RequestInfo) -> Iterator[RequestInfo]:
    token = _current.set(info)
    try:
        yield info
    finally:
        _current.reset(token)


def current_request() -> RequestInfo | None:
    return _current.get()


def current_request_id() -> str | None:
    """The id of the request being served in this task, or None outside a request."""
    info = _current.get()
    return None if info is None else info.request_id
