"""One node on PostgreSQL: the same API journey as on SQLite, through a real server and a real
database (ADE_DATABASE_URL set), plus `ade db migrate` and start-up refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest
import trio
from support.api import (
    Service,
    make_settings,
    package_zip,
    start_service,
    wait_for_status,
    workbook_bytes,
)
from support.postgres import create_database, drop_database

from ade.store.postgres_migrations import POSTGRES_MIGRATIONS


@pytest.fixture
async def pg_service(tmp_path: Path, postgres_url: str) -> AsyncIterator[Service]:
    settings = make_settings(
        tmp_path / "data", database_url=postgres_url, max_concurrency=1, queue_size=2
    )
    async with trio.open_nursery() as nursery:
        svc = await start_service(nursery, settings)
        yield svc
        svc.stop.set()


async def test_jobs_run_and_idempotent_submits_replay_on_postgres(
    pg_service: Service, postgres_url: str
) -> None:
    api = pg_service.api
    async with httpx.AsyncClient(base_url=pg_service.url, timeout=30) as http:
        health = (await http.get("/api/v1/health")).json()
        assert health["store"]["kind"] == "postgresql"
        assert health["store"]["ok"] is True
        assert health["store"]["database"].startswith("postgres@127.0.0.1:5432/ade_test_")

        config = await http.post(
            f"{api}/configs", files={"package": ("c.zip", package_zip(), "application/zip")}
        )
        assert config.status_code == 201, config.text
        document = await http.post(f"{api}/documents", files={"file": ("m.xlsx", workbook_bytes())})
        assert document.status_code == 201, document.text
        body = {"config_version_id": config.json()["id"], "document_ids": [document.json()["id"]]}
        headers = {"Idempotency-Key": "pg-1"}
        first = await http.post(f"{api}/jobs", json=body, headers=headers)
        assert first.status_code == 202, first.text
        replay = await http.post(f"{api}/jobs", json=body, headers=headers)
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == first.json()
        done = await wait_for_status(http, first.headers["Location"], {"success", "error"})
        assert done["status"] == "success", done
        assert done["worker_start"] == "fork"  # stored and read back by the PostgreSQL store
        output = await http.get(f"{api}/jobs/{done['id']}/output")
        assert output.status_code == 200

        retried = await http.post(f"{api}/jobs/{done['id']}/retry")
        assert retried.status_code == 202
        assert retried.json()["attempt"] == 2
        listed = (await http.get(f"{api}/jobs")).json()["items"]
        assert [j["id"] for j in listed] == [retried.json()["id"], done["id"]]
        await wait_for_status(http, retried.headers["Location"], {"success"})

    # The rows live in PostgreSQL, not in a SQLite file under the data dir.
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT id, status FROM jobs ORDER BY id").fetchall()
    assert rows == [(done["id"], "success"), (retried.json()["id"], "success")]
    assert not pg_service.settings.db_path.exists()


def _ade(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ade.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_db_migrate_then_serve_refuses_a_newer_schema(tmp_path: Path) -> None:
    url = create_database("ade_test_cli")
    try:
        env = {"ADE_DATABASE_URL": url, "ADE_DATA_DIR": str(tmp_path / "data")}
        first = _ade("db", "migrate", env=env)
        assert first.returncode == 0, first.stderr
        latest = len(POSTGRES_MIGRATIONS)
        applied = ", ".join(str(m.version) for m in POSTGRES_MIGRATIONS)
        assert first.stdout.endswith(
            f": applied migration(s) {applied}; schema is at version {latest}\n"
        )
        again = _ade("db", "migrate", env=env)
        assert again.stdout.endswith(f": schema is up to date (version {latest})\n")

        with psycopg.connect(url) as conn:
            conn.execute(
                "INSERT INTO schema_migrations VALUES (%s, 'from the future', now())",
                (latest + 1,),
            )
        refused = _ade("serve", "--port", "0", "--no-sample", env=env)
        assert refused.returncode == 2
        assert (
            f"ade serve: PostgreSQL schema version {latest + 1} ('from the future') is newer "
            f"than this ADE (which knows up to version {latest})"
        ) in refused.stderr
        # A worker-only node checks the same way before it claims anything.
        worker_refused = _ade("worker", env=env)
        assert worker_refused.returncode == 2
        assert (
            f"ade worker: PostgreSQL schema version {latest + 1} ('from the future') is newer "
            f"than this ADE (which knows up to version {latest})"
        ) in worker_refused.stderr
        migrate_refused = _ade("db", "migrate", env=env)
        assert migrate_refused.returncode == 2
        assert "is newer than this ADE" in migrate_refused.stderr
    finally:
        drop_database(url)

    # SQLite when ADE_DATABASE_URL is unset: the same command on the data dir's file.
    sqlite = _ade("db", "migrate", env={"ADE_DATA_DIR": str(tmp_path / "lite")})
    assert sqlite.returncode == 0
    assert sqlite.stdout.startswith(f"SQLite {tmp_path / 'lite' / 'ade.sqlite'}: applied")
