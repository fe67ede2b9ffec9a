"""Durable records: jobs, documents and config versions.

``open_store(settings)`` gives the embedded SQLite store (WAL, versioned migrations). It satisfies
:class:`ade.protocols.JobStore` and :class:`ade.protocols.CatalogStore`; a PostgreSQL store for
several machines would be another module behind the same protocols.
"""

from __future__ import annotations

from ade.settings import Settings
from ade.store.migrations import MIGRATIONS, Migration
from ade.store.sqlite import SchemaError, SqliteStore, migrate

__all__ = ["MIGRATIONS", "Migration", "SchemaError", "SqliteStore", "migrate", "open_store"]


def open_store(settings: Settings) -> SqliteStore:
    """Open (creating if needed) the store at ``settings.db_path`` and apply pending migrations.

    Synchronous on purpose: it runs once at start-up, before the event loop has work to do, and
    a schema problem should stop the service before it accepts anything.
    """
    settings.db_path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteStore(settings.db_path)
