"""The seams between ADE's parts, in one place.

Each seam is a ``typing.Protocol`` so a second implementation (PostgreSQL store, another sandbox)
is an added module, not a rewrite. Implementations live next to their subsystem.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from ade.layout import JobLayout
from ade.models import ConfigVersion, Document, JobEvent, JobRecord, JobStatus, StoredResponse

__all__ = [
    "CatalogStore",
    "EventSubscription",
    "IdempotencyKeys",
    "JobService",
    "JobStore",
    "RetentionStore",
    "Store",
]

T = TypeVar("T")


class JobStore(Protocol):
    """Durable job records. Only the recorder actor writes; anyone may read."""

    async def insert_job(self, job: JobRecord) -> None: ...

    async def update_job(self, job: JobRecord, *, expected: JobStatus | None = None) -> None:
        """Replace the job's fields; with ``expected``, only if its status still is that
        (else Conflict). A PostgreSQL store also fences jobs this node claimed by their lease
        token (:class:`ade.errors.LeaseLost`)."""
        ...

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


class IdempotencyKeys(Protocol):
    """The first response per (workspace, Idempotency-Key). The policy (fingerprints, the TTL,
    replay or refuse) is the API's (:mod:`ade.api.idempotency`); this is only the table."""

    async def lookup(self, workspace_id: str, key: str) -> StoredResponse | None: ...

    async def remember(
        self, workspace_id: str, key: str, response: StoredResponse, *, expire_before: datetime
    ) -> None:
        """Store ``response`` for the key (replacing an older entry) and purge every entry
        created before ``expire_before``."""
        ...


class RetentionStore(Protocol):
    """Deleting records (ade.retention removes their files afterwards) and finding what to
    delete. Each deletion checks, in the same transaction, that nothing active needs the row."""

    async def delete_job(self, job_id: str) -> JobRecord | None:
        """Delete a finished job's row and return it (None if unknown); Conflict if the job is
        queued or running."""
        ...

    async def delete_document(self, workspace_id: str, document_id: str) -> Document | None:
        """Conflict while a queued or running job of the workspace lists the document."""
        ...

    async def delete_config(self, workspace_id: str, config_id: str) -> ConfigVersion | None:
        """Conflict while a queued or running job of the workspace uses the config version."""
        ...

    async def config_in_use(self, config_id: str) -> bool:
        """Does any workspace still hold this config version, or any active job use it? (Its
        prepared files in ``venvs/`` are shared by every workspace that published it.)"""
        ...

    async def finished_jobs_before(self, cutoff: datetime, *, limit: int) -> list[JobRecord]:
        """Finished jobs whose ``finished_at`` is before ``cutoff``, oldest first."""
        ...

    async def existing_ids(self, kind: str, ids: list[str]) -> set[str]:
        """Which of ``ids`` have a row; ``kind`` is ``job``, ``document`` or ``config``."""
        ...


class Store(JobStore, CatalogStore, RetentionStore, Protocol):
    """A whole store as the service opens it (:func:`ade.store.open_store`): SQLite or
    PostgreSQL. The API and the runtime hold it through this type only."""

    kind: str  # "sqlite" or "postgresql"
    location: str  # where it is, for operators: a path, or user@host:port/db (no password)

    @property
    def idempotency_keys(self) -> IdempotencyKeys: ...

    async def run(self, fn: Callable[[Any], T], *, write: bool) -> T:
        """Run ``fn(connection)`` in a worker thread, in one transaction when ``write``: the
        seam for modules that add tables (the connection is the store's own DB-API one)."""
        ...

    def close(self) -> None: ...


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
