"""What the route handlers share: the runtime, the settings, the store and a few helpers."""

from __future__ import annotations

from typing import Any

import attrs
import trio

from ade.api.bodies import check_id, shown_id
from ade.api.idempotency import KeyLocks
from ade.catalog import Catalog
from ade.errors import NotFound
from ade.models import ConfigVersion, Document, JobRecord
from ade.protocols import JobService, Store
from ade.retention import Retention, data_dir_usage
from ade.settings import Settings
from ade.telemetry.metrics import ServiceMetrics

# The data directory's size is a walk over every file: done at most this often (off the loop),
# however often /health and /metrics are asked.
DISK_USAGE_MAX_AGE_SECONDS = 60.0

__all__ = ["ApiContext"]


@attrs.define
class ApiContext:
    runtime: JobService
    settings: Settings
    # Jobs, documents, configs and the idempotency key table; SQLite or PostgreSQL.
    store: Store
    key_locks: KeyLocks = attrs.field(factory=KeyLocks)
    # Set when the service begins to shut down: websocket streams close with 1001.
    shutting_down: trio.Event = attrs.field(factory=trio.Event)
    # This app's Prometheus registry (ade.telemetry.metrics): never the process-global one.
    metrics: ServiceMetrics | None = attrs.field(factory=ServiceMetrics)
    _layers: Any = None
    _disk: dict[str, Any] | None = None
    _disk_at: float = float("-inf")
    _disk_lock: trio.Lock = attrs.field(factory=trio.Lock)

    @property
    def retention(self) -> Retention:
        """Deletes jobs, documents and config versions, rows and files together."""
        return Retention(self.store, self.settings)

    async def sandbox_layers(self) -> Any:
        """The sandbox layers of this machine (``detect_layers`` caches; one thread hop)."""
        if self._layers is None:
            from ade.sandbox import detect_layers

            self._layers = await trio.to_thread.run_sync(detect_layers)
        return self._layers

    async def disk_usage(self) -> dict[str, Any]:
        """:func:`ade.retention.data_dir_usage`, at most :data:`DISK_USAGE_MAX_AGE_SECONDS` old;
        concurrent callers share one walk."""
        async with self._disk_lock:
            stale = trio.current_time() - self._disk_at > DISK_USAGE_MAX_AGE_SECONDS
            if self._disk is None or stale:
                self._disk = await trio.to_thread.run_sync(data_dir_usage, self.settings)
                self._disk_at = trio.current_time()
            return dict(self._disk)

    @property
    def max_json_bytes(self) -> int:
        return self.settings.max_json_kb * 1024

    @property
    def max_uncompressed_bytes(self) -> int:
        return self.settings.max_uncompressed_mb * 1024 * 1024

    @property
    def catalog(self) -> Catalog:
        """Publishes configs and stores documents (also what ``ade serve`` uses)."""
        return Catalog(self.store, self.settings)

    @property
    def max_upload_bytes(self) -> int:
        return self.settings.max_upload_mb * 1024 * 1024

    async def job(self, workspace_id: str, job_id: str) -> JobRecord:
        """The job, or 404 — also when it exists in another workspace (workspaces are apart)."""
        job = await self.store.get_job(job_id) if check_id(job_id) else None
        if job is None or job.workspace_id != workspace_id:
            raise NotFound(
                f"job {shown_id(job_id)} not found in workspace {workspace_id}",
                {"job_id": shown_id(job_id)},
            )
        return job

    async def document(self, workspace_id: str, document_id: str) -> Document:
        document = (
            await self.store.get_document(workspace_id, document_id)
            if check_id(document_id)
            else None
        )
        if document is None:
            raise NotFound(
                f"document {shown_id(document_id)} not found in workspace {workspace_id}",
                {"document_id": shown_id(document_id)},
            )
        return document

    async def config(self, workspace_id: str, config_id: str) -> ConfigVersion:
        config = (
            await self.store.get_config(workspace_id, config_id) if check_id(config_id) else None
        )
        if config is None:
            raise NotFound(
                f"config version {shown_id(config_id)} not found in workspace {workspace_id}",
                {"config_version_id": shown_id(config_id)},
            )
        return config
