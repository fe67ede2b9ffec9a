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
    Migration(
        version=3,
        name="nodes, admission, claims and leases",
        statements=(
            # One row per node that ever ran (ade serve / ade worker); `incarnation` tells a
            # restarted process from the one before it under the same id.
            f"""
            CREATE TABLE nodes (
                id {_ID} PRIMARY KEY,
                host TEXT NOT NULL,
                pid INTEGER NOT NULL,
                mode TEXT NOT NULL,
                workers INTEGER NOT NULL,
                running INTEGER NOT NULL,
                url TEXT,
                incarnation TEXT NOT NULL,
                started_at TIMESTAMPTZ NOT NULL,
                last_heartbeat TIMESTAMPTZ NOT NULL,
                stopped_at TIMESTAMPTZ
            )
            """,
            # A submission's slot, held from before any row or file exists until its job row
            # is inserted (same transaction) or the submission fails.
            f"""
            CREATE TABLE reservations (
                job_id {_ID} PRIMARY KEY,
                node_id TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL
            )
            """,
            # node_id + lease_token: who runs the job, fenced (a node whose lease was taken
            # away cannot write the job again); the lease is renewed by its node's heartbeat.
            "ALTER TABLE jobs ADD COLUMN node_id TEXT",
            "ALTER TABLE jobs ADD COLUMN lease_token BIGINT",
            "ALTER TABLE jobs ADD COLUMN lease_expires_at TIMESTAMPTZ",
            "ALTER TABLE jobs ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT false",
            "CREATE SEQUENCE job_lease_tokens",
            # The queue (FIFO by id) and the leases to watch stay small whatever the history.
            "CREATE INDEX jobs_queue ON jobs (id) WHERE status = 'queued'",
            "CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE status = 'running'",
            "CREATE INDEX jobs_running_by_node ON jobs (node_id) WHERE status = 'running'",
            # Retry-After averages the most recent durations across the cluster.
            "CREATE INDEX jobs_by_finish ON jobs (finished_at) WHERE started_at IS NOT NULL",
            # Jobs per status, kept by a trigger: /health and every node's statistics read five
            # rows instead of counting a history of millions (0.6 s per count at 1M jobs).
            "CREATE TABLE job_totals (status TEXT PRIMARY KEY, count BIGINT NOT NULL)",
            """
            INSERT INTO job_totals (status, count)
            SELECT s, (SELECT COUNT(*) FROM jobs WHERE status = s)
            FROM unnest(ARRAY['queued', 'running', 'success', 'error', 'cancelled']) AS s
            """,
            # A transition touches its two rows in status-name order, whatever the direction:
            # every transaction locks counters in the same order, so none can deadlock.
            """
            CREATE FUNCTION ade_count_job_status() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'INSERT' THEN
                    UPDATE job_totals SET count = count + 1 WHERE status = NEW.status;
                ELSIF TG_OP = 'DELETE' THEN
                    UPDATE job_totals SET count = count - 1 WHERE status = OLD.status;
                ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
                    IF OLD.status < NEW.status THEN
                        UPDATE job_totals SET count = count - 1 WHERE status = OLD.status;
                        UPDATE job_totals SET count = count + 1 WHERE status = NEW.status;
                    ELSE
                        UPDATE job_totals SET count = count + 1 WHERE status = NEW.status;
                        UPDATE job_totals SET count = count - 1 WHERE status = OLD.status;
                    END IF;
                END IF;
                RETURN NULL;
            END
            $$
            """,
            """
            CREATE TRIGGER jobs_count_status AFTER INSERT OR DELETE OR UPDATE OF status ON jobs
            FOR EACH ROW EXECUTE FUNCTION ade_count_job_status()
            """,
        ),
    ),
    Migration(
        version=4,
        name="job worker start mode",
        statements=(
            # JobRecord.worker_start: "fork" or "spawn" (NULL for jobs that never ran).
            "ALTER TABLE jobs ADD COLUMN worker_start TEXT",
        ),
    ),
    Migration(
        version=5,
        name="api keys, workspaces, jobs.submitted_by",
        statements=(
            # ade.store.access; token_hash is sha256 of the token (ade.auth.keys says why).
            f"""
            CREATE TABLE api_keys (
                id {_ID} PRIMARY KEY,
                name TEXT NOT NULL,
                role TEXT NOT NULL,
                workspaces TEXT[] NOT NULL,
                token_hash TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL,
                last_used_at TIMESTAMPTZ,
                revoked_at TIMESTAMPTZ
            )
            """,
            f"CREATE TABLE workspaces (id {_ID} PRIMARY KEY, created_at TIMESTAMPTZ NOT NULL)",
            # Workspaces become explicit: every workspace that already holds something, and
            # `default`, exist from now on.
            """
            INSERT INTO workspaces (id, created_at)
            SELECT workspace_id, now() FROM (
                SELECT 'default' AS workspace_id
                UNION SELECT workspace_id FROM jobs
                UNION SELECT workspace_id FROM documents
                UNION SELECT workspace_id FROM config_versions
            ) AS existing
            """,
            "ALTER TABLE jobs ADD COLUMN submitted_by TEXT",
        ),
    ),
]
