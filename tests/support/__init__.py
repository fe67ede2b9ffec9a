"""The one support package of the test suite: helpers shared by the test folders, which mirror
``ade/``. Import as ``from support.<module> import ...`` (tests/conftest.py puts ``tests/`` on
the path).

- :mod:`support.configs`  — config package sources (manifest, row types, columns)
- :mod:`support.jobs`     — packages, workbooks, stored documents and job directories for
  running real workers
- :mod:`support.actors`   — the runtime's actors with a scripted runner, seeding, process probes
- :mod:`support.api`      — a real service on a loopback port, request bodies, zips
- :mod:`support.engine`   — engine inputs and readers of its outputs
- :mod:`support.sandbox`, :mod:`support.hostile` — sandbox probes and hostile configs
- :mod:`support.postgres` — a throw-away PostgreSQL database per run
- :mod:`support.cluster`  — several `ade serve` nodes on one PostgreSQL database
- :mod:`support.browser`  — a real `ade serve` and Chromium for the web page tests
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ade.auth import Workspace
from ade.models import ConfigVersion, Document
from ade.protocols import Store
from ade.serde import utcnow
from ade.settings import Settings, load_settings
from ade.store import open_store
from ade.store.access import access_store

__all__ = ["ensure_workspaces", "insert_records", "make_settings"]


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for one test: its own data directory, a free loopback port, one small upload
    limit, short limits that keep the suite fast; ``overrides`` win."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "max_upload_mb": 1,
        "max_concurrency": 1,
        "queue_size": 3,
        "shutdown_grace_seconds": 5.0,
        "job_timeout_seconds": 30.0,
        # Tests about something else run without keys; the auth tests (tests/api/test_auth.py,
        # support.auth) turn it on.
        "auth": "disabled",
    }
    values.update(overrides)
    return load_settings({}, data_dir=data_dir, **values)


async def ensure_workspaces(store: Store, *workspace_ids: str) -> None:
    """Create those of the workspaces that do not exist yet, as an admin would. Rows need one:
    the store refuses a job, document or config version whose workspace does not exist
    (``default`` always does)."""
    access = access_store(store)
    for workspace_id in dict.fromkeys(workspace_ids):
        if not await access.workspace_exists(workspace_id):
            await access.create_workspace(Workspace(workspace_id, utcnow()))


async def insert_records(
    settings: Settings,
    *,
    configs: Iterable[ConfigVersion] = (),
    documents: Iterable[Document] = (),
) -> None:
    """Insert config versions and documents (whose content is already in place) into the
    store of ``settings``, as the catalog would, in their workspaces (created first if need
    be, as an admin would have before the uploads)."""
    configs, documents = list(configs), list(documents)
    store = open_store(settings)
    try:
        await ensure_workspaces(
            store, *(c.workspace_id for c in configs), *(d.workspace_id for d in documents)
        )
        for config in configs:
            await store.insert_config(config)
        for document in documents:
            await store.insert_document(document)
    finally:
        store.close()
