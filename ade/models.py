"""The records every part of ADE shares. Plain frozen attrs classes: no serialization code here.

Serialization lives at the edges only (:mod:`ade.serde`).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import attrs

__all__ = [
    "LIFECYCLE_EVENT_TYPES",
    "TERMINAL_EVENT_TYPES",
    "TERMINAL_STATUSES",
    "ConfigVersion",
    "Document",
    "JobEvent",
    "JobRecord",
    "JobStatus",
    "StoredResponse",
]


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.SUCCESS, JobStatus.ERROR, JobStatus.CANCELLED})

# Event types written by the runtime itself. A worker-side event may never use one of these
# names: config code runs in the worker and must not be able to forge a "finish".
LIFECYCLE_EVENT_TYPES = frozenset(
    {"enqueue", "start", "finish", "error", "cancel", "retry", "recovery"}
)
# Exactly one of these ends every job's stream; its detail carries the final "status".
TERMINAL_EVENT_TYPES = frozenset({"finish", "error", "cancel"})


@attrs.frozen
class Document:
    id: str
    workspace_id: str
    filename: str
    size: int
    sha256: str
    created_at: datetime


@attrs.frozen
class ConfigVersion:
    id: str
    workspace_id: str
    title: str
    version: str
    content_hash: str
    created_at: datetime
    runtime_network_access: bool = False


@attrs.frozen
class JobRecord:
    id: str
    workspace_id: str
    status: JobStatus
    config_version_id: str
    document_ids: tuple[str, ...]
    runtime_network_access: bool
    attempt: int
    created_at: datetime
    retry_of: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # What the user reads when the job did not succeed.
    error_message: str | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    # Which limit fired, if any: "timeout", "cpu", "memory", "fsize", "cancelled", ...
    limit: str | None = None
    sandbox_layers: tuple[str, ...] = ()
    # The engine's end-of-run summary (counts and names, never cell values; docs/api.md lists
    # its keys). Empty until the job ends, and for a job that ended before the engine finished.
    summary: dict[str, Any] = attrs.field(factory=dict)
    # How the job's process was started: "fork" (from the worker's template) or "spawn" (a
    # fresh interpreter). None until a process ran it (queued, or cancelled while queued).
    worker_start: str | None = None
    # The id of the API key that submitted (or retried) the job; never the key itself. None
    # with ADE_AUTH=disabled and for jobs from before keys existed.
    submitted_by: str | None = None


@attrs.frozen
class JobEvent:
    """One line of ``events.ndjson``; ``seq`` counts from 1 per job."""

    seq: int
    ts: datetime
    job_id: str
    workspace_id: str
    attempt: int
    type: str
    detail: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class StoredResponse:
    """The first response to an ``Idempotency-Key`` (the API's policy: ``ade.api.idempotency``;
    the table behind :class:`ade.protocols.IdempotencyKeys`)."""

    status: int
    body: str
    location: str | None
    request_hash: str
    created_at: datetime
