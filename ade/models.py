"""The records every part of ADE shares. Plain frozen attrs classes: no serialization code here.

Serialization lives at the edges only (:mod:`ade.serde`).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import attrs

__all__ = [
    "TERMINAL_STATUSES",
    "ConfigVersion",
    "Document",
    "JobEvent",
    "JobRecord",
    "JobStatus",
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
