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

# The data directory's size is a walk over every file (seconds for a history of a million
# jobs): a task of the server refreshes it this often, off the event loop, and /health and
# /metrics report the latest figure instead of walking per request.
DISK_USAGE_INTERVAL_SECONDS = 300.0
# /health waits this long for the very first walk after start-up, then answers without it.
DISK_USAGE_FIRST_WAIT_SECONDS = 2.0

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
    _disk_watched: bool = False
    _disk_ready: trio.Event = attrs.field(factory=trio.Event)

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

    async def disk_usage(self) -> dict[str, Any] | None:
        """The latest :func:`ade.retention.data_dir_usage` (None before the first walk, or
        when nothing watches it: an app served by :func:`ade.api.server.serve_api` does)."""
        if self._disk_watched:
            with trio.move_on_after(DISK_USAGE_FIRST_WAIT_SECONDS):
                await self._disk_ready.wait()
        return None if self._disk is None else dict(self._disk)

    async def watch_disk_usage(self) -> None:
        """Refresh the data directory's usage every :data:`DISK_USAGE_INTERVAL_SECONDS`."""
        self._disk_watched = True
        while True:
            try:
                self._disk = await trio.to_thread.run_sync(
                    data_dir_usage, self.settings, abandon_on_cancel=True
                )
            except OSError as exc:
                self._disk = {"path": str(self.settings.data_dir), "error": type(exc).__name__}
            self._disk_ready.set()
            await trio.sleep(DISK_USAGE_INTERVAL_SECONDS)

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
