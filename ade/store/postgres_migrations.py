"""The PostgreSQL store's schema history: an append-only list, like :mod:`ade.store.migrations`.

A separate list because the dialect differs (timestamps are ``timestamptz``, lists are ``text[]``,
ids sort bytewise with ``COLLATE "C"``) and because the cluster's tables (nodes, leases) exist
only here. The same rules hold: never edit or reorder a shipped entry; append one with the next
version. Whoever adds a table to the SQLite list adds its PostgreSQL twin here, and the store
contract suite (tests/store) runs the same assertions against both.
"""

from __future__ import annotations

from ade.store.migrations import Migration

__all__ = ["POSTGRES_MIGRATIONS"]

# Ids (ade.ids) sort by creation time bytewise; a locale collation would not keep that order.
_ID = 'TEXT COLLATE "C"'

POSTGRES_MIGRATIONS: list[Migration] = [
    Migration(
        version=1,
        name="jobs, documents, config versions and idempotency keys",
        statements=(
            f"""
            CREATE TABLE jobs (
                id {_ID} PRIMARY KEY,
                workspace_id {_ID} NOT NULL,
                status TEXT NOT NULL,
                config_version_id TEXT NOT NULL,
                document_ids TEXT[] NOT NULL,
                runtime_network_access BOOLEAN NOT NULL,
                attempt INTEGER NOT NULL,
                retry_of TEXT,
                created_at TIMESTAMPTZ NOT NULL,
                started_at TIMESTAMPTZ,
                finished_at TIMESTAMPTZ,
                error_message TEXT,
                exit_code INTEGER,
                exit_signal INTEGER,
                limit_name TEXT,
                sandbox_layers TEXT[] NOT NULL
            )
            """,
            "CREATE INDEX jobs_by_workspace ON jobs (workspace_id, id)",
            "CREATE INDEX jobs_by_workspace_status ON jobs (workspace_id, status, id)",
            "CREATE INDEX jobs_by_status ON jobs (status, id)",
            f"""
            CREATE TABLE documents (
                workspace_id {_ID} NOT NULL,
                id {_ID} NOT NULL,
                filename TEXT NOT NULL,
                size BIGINT NOT NULL,
                sha256 TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (workspace_id, id)
            )
            """,
            f"""
            CREATE TABLE config_versions (
                workspace_id {_ID} NOT NULL,
                id {_ID} NOT NULL,
                title TEXT NOT NULL,
                version TEXT NOT NULL,
                content_hash TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL,
                runtime_network_access BOOLEAN NOT NULL,
                PRIMARY KEY (workspace_id, id)
            )
            """,
            "CREATE INDEX config_versions_by_hash ON config_versions (workspace_id, content_hash)",
            f"""
            CREATE TABLE idempotency_keys (
                workspace_id {_ID} NOT NULL,
                key TEXT NOT NULL,
                request_hash TEXT NOT NULL,
                status INTEGER NOT NULL,
                body TEXT NOT NULL,
                location TEXT,
                created_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (workspace_id, key)
            )
            """,
            "CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at)",
        ),
    ),
    Migration(
        version=2,
        name="job summary",
        statements=(
            # JobRecord.summary: the engine's end-of-run summary ({} until the job ends).
            "ALTER TABLE jobs ADD COLUMN summary JSONB NOT NULL DEFAULT '{}'::jsonb",
        ),
    ),
]
