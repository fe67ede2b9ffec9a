"""The seams between ADE's parts, in one place.

Each seam is a ``typing.Protocol`` so a second implementation (PostgreSQL store, another sandbox)
is an added module, not a rewrite. Implementations live next to their subsystem.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from ade.layout import JobLayout
from ade.models import ConfigVersion, Document, JobEvent, JobRecord, JobStatus

__all__ = ["CatalogStore", "EventSubscription", "JobService", "JobStore"]


class JobStore(Protocol):
    """Durable job records. Only the recorder actor writes; anyone may read."""

    async def insert_job(self, job: JobRecord) -> None: ...

    async def update_job(self, job: JobRecord) -> None: ...

    async def get_job(self, job_id: str) -> JobRecord | None: ...

    async def list_jobs(
        self,
        workspace_id: str,
        *,
        status: JobStatus | None = None,
        limit: int = 50,
        before_id: str | None = None,
    ) -> list[JobRecord]:
        """Newest first; ``before_id`` is the pagination cursor (ids sort by creation time)."""
        ...

    async def jobs_with_status(self, status: JobStatus) -> list[JobRecord]:
        """Every job in ``status``, oldest first (recovery re-enqueues in this order)."""
        ...

    async def count_by_status(self) -> dict[JobStatus, int]: ...


class CatalogStore(Protocol):
    """Documents and prepared config versions, per workspace."""

    async def insert_document(self, document: Document) -> None: ...

    async def get_document(self, workspace_id: str, document_id: str) -> Document | None: ...

    async def list_documents(self, workspace_id: str) -> list[Document]: ...

    async def insert_config(self, config: ConfigVersion) -> None: ...

    async def get_config(self, workspace_id: str, config_id: str) -> ConfigVersion | None: ...

    async def list_configs(self, workspace_id: str) -> list[ConfigVersion]: ...


class EventSubscription(Protocol):
    """Live events from the recorder. Iteration ends when the subscription is closed; a
    subscriber that falls behind its bounded buffer is dropped (``dropped`` becomes True)
    rather than slowing the recorder down."""

    dropped: bool

    def __aiter__(self) -> AsyncIterator[JobEvent]: ...

    def close(self) -> None: ...


class JobService(Protocol):
    """What the HTTP API (and the load harness, through it) needs from the runtime."""

    async def submit(
        self,
        *,
        workspace_id: str,
        config_version_id: str,
        document_ids: Sequence[str],
        runtime_network_access: bool = False,
    ) -> JobRecord:
        """Admit a job. Raises :class:`ade.errors.QueueFull` before anything is persisted."""
        ...

    async def retry(self, workspace_id: str, job_id: str) -> JobRecord: ...

    async def cancel(self, workspace_id: str, job_id: str) -> JobRecord: ...

    def subscribe(self, workspace_id: str, job_id: str | None = None) -> EventSubscription: ...

    async def read_events(
        self, workspace_id: str, job_id: str, *, after: int = 0
    ) -> list[JobEvent]:
        """The job's logged events with ``seq > after`` (subscribe first for a gap-free replay)."""
        ...

    def layout(self, job_id: str) -> JobLayout:
        """Where the job's files (artifact, output, events) live."""
        ...

    def statistics(self) -> Any:
        """A frozen snapshot (``ade.runtime.RuntimeStatistics``): queue, workers, totals."""
        ...
