"""The store's schema history: an append-only list of migrations.

Rules (they keep every existing database upgradable):

- Never edit or reorder an entry that has shipped. Change the schema by appending a new entry.
- ``version`` is the entry's position + 1 (1, 2, 3, ...); ``migrate`` checks it.
- Each statement runs inside one transaction together with the bookkeeping row, so a migration is
  applied completely or not at all.

To add one (e.g. the API's idempotency keys), append::

    Migration(
        version=2,
        name="idempotency keys",
        statements=("CREATE TABLE idempotency_keys (...)",),
    ),
"""

from __future__ import annotations

import attrs

__all__ = ["MIGRATIONS", "Migration"]


@attrs.frozen
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: list[Migration] = [
    Migration(
        version=1,
        name="jobs, documents and config versions",
        statements=(
            # Ids are sortable (ade.ids): ordering by id is ordering by creation time, so the
            # listing index needs no timestamp column.
            """
            CREATE TABLE jobs (
                id TEXT PRIMARY KEY,
                workspace_id TEXT NOT NULL,
                status TEXT NOT NULL,
                config_version_id TEXT NOT NULL,
                document_ids TEXT NOT NULL,
                runtime_network_access INTEGER NOT NULL,
                attempt INTEGER NOT NULL,
                retry_of TEXT,
                created_at TEXT NOT NULL,
                started_at TEXT,
                finished_at TEXT,
                error_message TEXT,
                exit_code INTEGER,
                exit_signal INTEGER,
                limit_name TEXT,
                sandbox_layers TEXT NOT NULL
            )
            """,
            "CREATE INDEX jobs_by_workspace ON jobs (workspace_id, id)",
            "CREATE INDEX jobs_by_workspace_status ON jobs (workspace_id, status, id)",
            "CREATE INDEX jobs_by_status ON jobs (status, id)",
            """
            CREATE TABLE documents (
                workspace_id TEXT NOT NULL,
                id TEXT NOT NULL,
                filename TEXT NOT NULL,
                size INTEGER NOT NULL,
                sha256 TEXT NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (workspace_id, id)
            )
            """,
            """
            CREATE TABLE config_versions (
                workspace_id TEXT NOT NULL,
                id TEXT NOT NULL,
                title TEXT NOT NULL,
                version TEXT NOT NULL,
                content_hash TEXT NOT NULL,
                created_at TEXT NOT NULL,
                runtime_network_access INTEGER NOT NULL,
                PRIMARY KEY (workspace_id, id)
            )
            """,
            "CREATE INDEX config_versions_by_hash ON config_versions (workspace_id, content_hash)",
        ),
    ),
    Migration(
        version=2,
        name="idempotency keys",
        statements=(
            # ade.store.idempotency: the first response per (workspace, Idempotency-Key).
            """
            CREATE TABLE idempotency_keys (
                workspace_id TEXT NOT NULL,
                key TEXT NOT NULL,
                request_hash TEXT NOT NULL,
                status INTEGER NOT NULL,
                body TEXT NOT NULL,
                location TEXT,
                created_at TEXT NOT NULL,
                PRIMARY KEY (workspace_id, key)
            )
            """,
            "CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at)",
        ),
    ),
    Migration(
        version=3,
        name="job summary",
        statements=(
            # JobRecord.summary: the engine's end-of-run summary (a JSON object; {} until the
            # job ends, and for a job that ended before the engine finished).
            "ALTER TABLE jobs ADD COLUMN summary TEXT NOT NULL DEFAULT '{}'",
        ),
    ),
    Migration(
        version=4,
        name="job worker start mode",
        statements=(
            # JobRecord.worker_start: "fork" or "spawn", how the job's process was started
            # (NULL for jobs that never ran, and for jobs of earlier versions).
            "ALTER TABLE jobs ADD COLUMN worker_start TEXT",
        ),
    ),
    Migration(
        version=5,
        name="api keys, workspaces, jobs.submitted_by",
        statements=(
            # ade.store.access. token_hash: sha256 of the token (ade.auth.keys says why that
            # is enough); workspaces: a JSON list of ids (empty for admin keys).
            """
            CREATE TABLE api_keys (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                role TEXT NOT NULL,
                workspaces TEXT NOT NULL,
                token_hash TEXT NOT NULL,
                created_at TEXT NOT NULL,
                last_used_at TEXT,
                revoked_at TEXT
            )
            """,
            "CREATE TABLE workspaces (id TEXT PRIMARY KEY, created_at TEXT NOT NULL)",
            # Workspaces become explicit: every workspace that already holds something, and
            # `default`, exist from now on.
            """
            INSERT INTO workspaces (id, created_at)
            SELECT workspace_id, strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now') FROM (
                SELECT 'default' AS workspace_id
                UNION SELECT workspace_id FROM jobs
                UNION SELECT workspace_id FROM documents
                UNION SELECT workspace_id FROM config_versions
            )
            """,
            "ALTER TABLE jobs ADD COLUMN submitted_by TEXT",
        ),
    ),
]
