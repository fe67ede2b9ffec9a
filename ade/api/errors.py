"""The one seam where exceptions become HTTP responses.

Every error the API returns has the same shape::

    {"error": {"code": "<stable name>", "message": "<for a person>", "details": <any>}}

Handlers raise :mod:`ade.errors` exceptions (every class lives there) and never build error
responses themselves, so status codes and shapes are decided here and nowhere else. A request the
client got wrong must never surface as a 500: only a bug in ADE does, and then the message says
nothing about the internals (the traceback goes to the server log).
"""

from __future__ import annotations

import logging
from typing import Any

from quart import Response
from werkzeug.exceptions import HTTPException

from ade.errors import (
    MAX_LISTED_PROBLEMS,
    AdeError,
    BadRequest,
    Conflict,
    FieldProblem,
    Forbidden,
    IdempotencyKeyReused,
    InputError,
    NotFound,
    PackageInvalid,
    PayloadTooLarge,
    QueueFull,
    ShuttingDown,
    StoreUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)
from ade.serde import converter

__all__ = [
    "MAX_LISTED_PROBLEMS",
    "BadRequest",
    "FieldProblem",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "error_response",
    "install_error_handlers",
    "status_for",
]

log = logging.getLogger("ade.api")


# Checked in order: the first class an exception is an instance of decides the status.
_STATUS: tuple[tuple[type[AdeError], int], ...] = (
    (BadRequest, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (PayloadTooLarge, 413),
    (UnsupportedMediaType, 415),
    (PackageInvalid, 422),
    (InputError, 422),
    (IdempotencyKeyReused, 422),
    (QueueFull, 429),
    (ShuttingDown, 503),
    (StoreUnavailable, 503),
)

# werkzeug's own errors (unknown route, wrong method, quart's body cap) in our vocabulary.
_HTTP_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def status_for(exc: AdeError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message, "details": details}}
    if extra:
        body.update(extra)
    response = Response(
        converter.dumps(body), status=status, content_type="application/json", headers=headers
    )
    return response


def _ade_error(exc: AdeError) -> Response:
    status = status_for(exc)
    if status == 500:
        # An AdeError nobody mapped is a bug in ADE, not in the request.
        log.error("unmapped %s: %s", type(exc).__name__, exc.message, exc_info=exc)
        return _internal()
    if isinstance(exc, QueueFull):
        # The body carries the numbers at the top level too: a client that backs off needs
        # them without digging, and the Retry-After header says the same in seconds.
        numbers = {
            "queued": exc.queued,
            "capacity": exc.capacity,
            "retry_after_seconds": exc.retry_after_seconds,
        }
        return error_response(
            status,
            exc.code,
            exc.message,
            numbers,
            headers={"Retry-After": str(max(1, int(exc.retry_after_seconds)))},
            extra=numbers,
        )
    if isinstance(exc, Unauthorized):
        # RFC 6750: a 401 names the scheme the client should use.
        return error_response(
            status, exc.code, exc.message, exc.details, headers={"WWW-Authenticate": "Bearer"}
        )
    if isinstance(exc, ShuttingDown | StoreUnavailable):
        return error_response(
            status, exc.code, exc.message, exc.details, headers={"Retry-After": "5"}
        )
    return error_response(status, exc.code, exc.message, exc.details)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status >= 500:
        log.error("HTTP %s raised inside ADE", status, exc_info=exc)
        return _internal()
    code = _HTTP_CODES.get(status, "http_error")
    message = {
        404: "no such route",
        405: "method not allowed on this route",
        413: "the request body is larger than the upload limit",
    }.get(status, exc.description or exc.name)
    headers = {}
    details: Any = None
    if status == 413:
        from quart import current_app

        details = {"max_bytes": current_app.config["MAX_CONTENT_LENGTH"]}
    if status == 405:
        allowed = getattr(exc, "valid_methods", None) or []
        headers["Allow"] = ", ".join(sorted(allowed))
    return error_response(status, code, message, details, headers=headers or None)


def _internal() -> Response:
    return error_response(500, "internal_error", "internal error; the server log has details")


def install_error_handlers(app: Any) -> None:
    """Register the seam on a Quart app."""

    @app.errorhandler(AdeError)
    async def handle_ade_error(exc: AdeError) -> Response:
        return _ade_error(exc)

    @app.errorhandler(HTTPException)
    async def handle_http_error(exc: HTTPException) -> Response:
        return _http_error(exc)

    @app.errorhandler(Exception)
    async def handle_unexpected(exc: Exception) -> Response:
        log.error("unhandled exception in a request", exc_info=exc)
        return _internal()
