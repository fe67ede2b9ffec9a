"""Durable records: jobs, documents and config versions.

``open_store(settings)`` gives the embedded SQLite store (WAL, versioned migrations) when
``ADE_DATABASE_URL`` is unset, and the PostgreSQL store (:mod:`ade.store.postgres`) when it is
set. Both satisfy :class:`ade.protocols.Store` (jobs, documents, configs and the idempotency key
table), and the same contract suite runs against both.
"""

from __future__ import annotations

from ade.protocols import Store
from ade.settings import Settings
from ade.store.history import SchemaError
from ade.store.migrations import MIGRATIONS, Migration
from ade.store.sqlite import SqliteStore, migrate

__all__ = [
    "MIGRATIONS",
    "Migration",
    "SchemaError",
    "SqliteStore",
    "migrate",
    "open_store",
]


def open_store(settings: Settings) -> Store:
    """Open the configured store and apply pending migrations (refusing a newer schema).

    Synchronous on purpose: it runs once at start-up, before the event loop has work to do, and
    a schema problem should stop the service before it accepts anything. psycopg is imported
    only when PostgreSQL is configured, so the embedded default does not pay for it.
    """
    if settings.database_url is not None:
        from ade.store.postgres import PostgresStore

        return PostgresStore(settings.database_url)
    settings.db_path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteStore(settings.db_path)
