"""ADE's exception vocabulary, every class in one place. The API translates these at one seam
(``ade.api.errors``), which maps each class to an HTTP status.

Every message is written for the person who reads it: it names the file, field or limit involved.
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = [
    "MAX_LISTED_PROBLEMS",
    "AdeError",
    "BadRequest",
    "ConfigCodeError",
    "Conflict",
    "DataDirLocked",
    "FieldProblem",
    "Forbidden",
    "IdempotencyKeyReused",
    "InputError",
    "LeaseLost",
    "NotFound",
    "PackageInvalid",
    "PackageProblem",
    "PayloadTooLarge",
    "QueueFull",
    "SchemaError",
    "ShuttingDown",
    "StoreUnavailable",
    "Unauthorized",
    "UnsupportedMediaType",
]


class AdeError(Exception):
    """Base class; ``code`` is the stable machine-readable name clients switch on."""

    code = "ade_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(AdeError):
    code = "not_found"


class Conflict(AdeError):
    code = "conflict"


class Unauthorized(AdeError):
    """No API key, or one ADE does not know or has revoked (401). The message never repeats
    the key: it may be a real key pasted into the wrong place."""

    code = "unauthorized"


class Forbidden(AdeError):
    """A valid key whose role or workspaces do not allow this request (403)."""

    code = "forbidden"


class QueueFull(AdeError):
    """The dispatcher refused a submission; nothing was persisted."""

    code = "queue_full"

    def __init__(self, queued: int, capacity: int, retry_after_seconds: int) -> None:
        super().__init__(
            f"the job queue is full ({queued} of {capacity} waiting); "
            f"retry in {retry_after_seconds} s",
            {"queued": queued, "capacity": capacity, "retry_after_seconds": retry_after_seconds},
        )
        self.queued = queued
        self.capacity = capacity
        self.retry_after_seconds = retry_after_seconds


class StoreUnavailable(AdeError):
    """The database cannot be reached (or has no free connection); the request may be retried."""

    code = "store_unavailable"


class LeaseLost(Conflict):
    """Cluster: this node's lease on a running job was taken away (another node recorded it
    interrupted after the lease expired), so this node must not write the job again."""

    code = "lease_lost"


@attrs.frozen
class PackageProblem:
    """One thing wrong with a config package: where (file, function or manifest path) and what."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class PackageInvalid(AdeError):
    code = "invalid_config_package"

    def __init__(self, problems: list[PackageProblem]) -> None:
        lines = "; ".join(str(p) for p in problems)
        super().__init__(
            f"config package is invalid ({len(problems)} problem(s)): {lines}",
            [{"location": p.location, "message": p.message} for p in problems],
        )
        self.problems = problems


class InputError(AdeError):
    """An input document cannot be read as a spreadsheet (empty, corrupt, encrypted, ...)."""

    code = "invalid_input"


class ConfigCodeError(AdeError):
    """Config code raised. The message names file, function, pass and the exception *type*;
    the exception text and traceback may quote cell values, so they go to diagnostics only."""

    code = "config_code_error"

    def __init__(
        self, file: str, function: str, pass_name: str, error_type: str, traceback: str
    ) -> None:
        super().__init__(
            f"config code raised {error_type} in {file}:{function} during the {pass_name} pass",
            {"file": file, "function": function, "pass": pass_name},
        )
        self.file = file
        self.function = function
        self.pass_name = pass_name
        self.error_type = error_type
        self.traceback = traceback


MAX_LISTED_PROBLEMS = 20


class FieldProblem(dict[str, str]):
    """``{"field": "document_ids[1]", "message": "expected a string"}``: one line of a 400."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field=field, message=message)


class BadRequest(AdeError):
    """A malformed request (an HTTP body, or a submission to the runtime); ``details`` lists
    each wrong field."""

    code = "invalid_request"

    def __init__(self, message: str, problems: list[FieldProblem] | None = None) -> None:
        # At most MAX_LISTED_PROBLEMS, then one "(more)" entry with the count: an error body
        # stays small whatever the request held.
        listed = list((problems or [])[:MAX_LISTED_PROBLEMS])
        unlisted = len(problems or []) - len(listed)
        if unlisted > 0:
            listed.append(FieldProblem("(more)", f"{unlisted} more problems not listed"))
        super().__init__(message, listed)


class PayloadTooLarge(AdeError):
    code = "payload_too_large"


class UnsupportedMediaType(AdeError):
    code = "unsupported_media_type"


class IdempotencyKeyReused(AdeError):
    """The ``Idempotency-Key`` was first used with a different request."""

    code = "idempotency_key_reused"


class ShuttingDown(AdeError):
    """The runtime is draining for shutdown (or has stopped) and admits nothing new."""

    code = "shutting_down"


class SchemaError(AdeError):
    """The database's schema history does not match this code's migration list."""

    code = "schema_mismatch"


class DataDirLocked(RuntimeError):
    """Another runtime already serves this data directory (its recovery would fight ours)."""
