"""What the route handlers share: the runtime, the settings, the store and a few helpers."""

from __future__ import annotations

import attrs
import trio

from ade.api.auth import Authenticator
from ade.api.bodies import check_id, shown_id
from ade.api.idempotency import KeyLocks
from ade.catalog import Catalog
from ade.errors import NotFound
from ade.models import ConfigVersion, Document, JobRecord
from ade.protocols import AccessStore, JobService, Store
from ade.settings import Settings

__all__ = ["ApiContext"]


@attrs.define
class ApiContext:
    runtime: JobService
    settings: Settings
    # Jobs, documents, configs and the idempotency key table; SQLite or PostgreSQL.
    store: Store
    # API keys and workspaces (ade.store.access), and the per-request check over them.
    access: AccessStore
    auth: Authenticator
    key_locks: KeyLocks = attrs.field(factory=KeyLocks)
    # Set when the service begins to shut down: websocket streams close with 1001.
    shutting_down: trio.Event = attrs.field(factory=trio.Event)

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
