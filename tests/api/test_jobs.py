"""Admission over HTTP: 429 with nothing persisted, cancel, retry, Idempotency-Key, isolation."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import httpx
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

from ade.client import ApiError, open_websocket
from ade.models import Document, JobRecord
from ade.store import SqliteStore
from ade.store.access import access_store


@pytest.fixture
async def narrow(tmp_path: Path) -> AsyncIterator[Service]:
    """One worker and a queue of one: the second waiting job is refused."""
    settings = make_settings(tmp_path / "data", max_concurrency=1, queue_size=1)
    async with trio.open_nursery() as nursery:
        svc = await start_service(nursery, settings)
        yield svc
        svc.stop.set()


async def _setup(http: httpx.AsyncClient, api: str, **package: object) -> tuple[str, str]:
    config = await http.post(
        f"{api}/configs", files={"package": ("c.zip", package_zip(**package), "application/zip")}
    )
    assert config.status_code == 201, config.text
    document = await http.post(f"{api}/documents", files={"file": ("m.xlsx", workbook_bytes())})
    assert document.status_code == 201, document.text
    return config.json()["id"], document.json()["id"]


def _job_rows(settings_db: Path) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(settings_db)) as conn:
        return conn.execute("SELECT id, status FROM jobs ORDER BY id").fetchall()


async def test_full_queue_is_429_and_persists_nothing_then_cancel_both(narrow: Service) -> None:
    api = narrow.api
    async with httpx.AsyncClient(base_url=narrow.url, timeout=30) as http:
        config_id, document_id = await _setup(http, api, sleep_seconds=30)
        body = {"config_version_id": config_id, "document_ids": [document_id]}
        first = await http.post(f"{api}/jobs", json=body)
        assert first.status_code == 202
        running = await wait_for_status(http, first.headers["Location"], {"running"})
        second = await http.post(f"{api}/jobs", json=body)
        assert second.status_code == 202
        assert second.json()["status"] == "queued"

        jobs_before = sorted(p.name for p in narrow.settings.jobs_dir.iterdir())
        refused = await http.post(f"{api}/jobs", json=body)
        assert refused.status_code == 429
        payload = refused.json()
        assert payload["error"]["code"] == "queue_full"
        assert payload["queued"] == 1
        assert payload["capacity"] == 1
        assert payload["retry_after_seconds"] >= 1
        assert int(refused.headers["Retry-After"]) == payload["retry_after_seconds"]
        # Nothing persisted: no row, no job directory.
        assert [row[0] for row in _job_rows(narrow.settings.db_path)] == sorted(
            [running["id"], second.json()["id"]]
        )
        assert sorted(p.name for p in narrow.settings.jobs_dir.iterdir()) == jobs_before

        # Not finished yet: artifact and output are 409.
        for what in ("artifact", "output"):
            conflict = await http.get(f"{api}/jobs/{running['id']}/{what}")
            assert conflict.status_code == 409
            assert conflict.json()["error"]["code"] == "conflict"
        # Retrying an unfinished job is a conflict too.
        assert (await http.post(f"{api}/jobs/{running['id']}/retry")).status_code == 409

        # Cancel the queued job, then the running one while a websocket watches it.
        cancelled = await http.post(f"{api}/jobs/{second.json()['id']}/cancel")
        assert cancelled.status_code == 202
        assert cancelled.json()["status"] == "cancelled"

        events_url = narrow.url.replace("http://", "ws://") + f"{api[len(narrow.url) :]}"
        events: list[dict] = []
        with trio.fail_after(20):
            async with open_websocket(f"{events_url}/jobs/{running['id']}/events") as ws:
                async with trio.open_nursery() as nursery:

                    async def watch() -> None:
                        while True:
                            event = json.loads(await ws.get_message())
                            events.append(event)
                            if event["type"] == "cancel":
                                return

                    nursery.start_soon(watch)
                    stop = await http.post(f"{api}/jobs/{running['id']}/cancel")
                    assert stop.status_code == 202
                    assert stop.json()["status"] == "cancelled"
        assert events[-1]["type"] == "cancel"
        assert "start" in [e["type"] for e in events]

        final = (await http.get(f"{api}/jobs/{running['id']}")).json()
        assert final["status"] == "cancelled"
        again = await http.post(f"{api}/jobs/{running['id']}/cancel")
        assert again.status_code == 409
        missing = await http.get(f"{api}/jobs/{running['id']}/output")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"

        # A cancelled job can be retried: a new job, attempt 2, pointing back at the first.
        retried = await http.post(f"{api}/jobs/{running['id']}/retry")
        assert retried.status_code == 202
        new = retried.json()
        assert retried.headers["Location"].endswith(f"/jobs/{new['id']}")
        assert new["attempt"] == 2
        assert new["retry_of"] == running["id"]
        assert (await http.post(f"{api}/jobs/{new['id']}/cancel")).status_code == 202


async def test_idempotency_key_replays_and_refuses_reuse(
    service: Service, client: httpx.AsyncClient
) -> None:
    api = service.api
    config_id, document_id = await _setup(client, api)
    body = {"config_version_id": config_id, "document_ids": [document_id]}
    headers = {"Idempotency-Key": "order-42"}
    first = await client.post(f"{api}/jobs", json=body, headers=headers)
    assert first.status_code == 202
    assert "Idempotent-Replayed" not in first.headers
    # Same key, same body (keys in another order): the first response, not a second job.
    reordered = {"document_ids": [document_id], "config_version_id": config_id}
    replay = await client.post(f"{api}/jobs", json=reordered, headers=headers)
    assert replay.status_code == 202
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.headers["Location"] == first.headers["Location"]
    assert replay.json() == first.json()
    # Same key, another request: 422.
    other = {**body, "runtime_network_access": False, "document_ids": [document_id, document_id]}
    reused = await client.post(f"{api}/jobs", json=other, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    # The same key in another workspace is another key.
    bad_key = await client.post(f"{api}/jobs", json=body, headers={"Idempotency-Key": "a b"})
    assert bad_key.status_code == 400
    assert bad_key.json()["error"]["details"][0]["field"] == "Idempotency-Key"

    # Two concurrent requests with a new key: one job, the second replays the first.
    answers: list[httpx.Response] = []

    async def post() -> None:
        answers.append(
            await client.post(f"{api}/jobs", json=body, headers={"Idempotency-Key": "race"})
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(post)
        nursery.start_soon(post)
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].json()["id"] == answers[1].json()["id"]
    assert sorted(a.headers.get("Idempotent-Replayed", "") for a in answers) == ["", "true"]

    jobs = (await client.get(f"{api}/jobs")).json()["items"]
    assert [j["id"] for j in jobs] == [answers[0].json()["id"], first.json()["id"]]
    for job in jobs:
        await wait_for_status(client, f"{api}/jobs/{job['id']}", {"success"})


async def test_workspaces_are_isolated_and_paginated(
    service: Service, client: httpx.AsyncClient
) -> None:
    api = service.api
    other = f"{service.url}/api/v1/workspaces/team-b"
    # Workspaces are explicit: team-b exists, but holds nothing of default's.
    assert (await client.post("/api/v1/workspaces", json={"id": "team-b"})).status_code == 201
    config_id, document_id = await _setup(client, api)
    ws_base = service.url.replace("http://", "ws://") + "/api/v1/workspaces"
    jobs = []
    seen: dict[str, list[dict]] = {"default": [], "team-b": []}
    async with (
        open_websocket(f"{ws_base}/default/events") as mine,
        open_websocket(f"{ws_base}/team-b/events") as theirs,
    ):
        for _ in range(3):
            submitted = await client.post(
                f"{api}/jobs", json={"config_version_id": config_id, "document_ids": [document_id]}
            )
            assert submitted.status_code == 202
            jobs.append(submitted.json()["id"])
        # The workspace stream carries every job's events live, up to each job's finish.
        with trio.fail_after(30):
            while {e["job_id"] for e in seen["default"] if e["type"] == "finish"} != set(jobs):
                seen["default"].append(json.loads(await mine.get_message()))
        with trio.move_on_after(0.2):
            seen["team-b"].append(json.loads(await theirs.get_message()))
    assert seen["team-b"] == []
    for job_id in jobs:
        seqs = [e["seq"] for e in seen["default"] if e["job_id"] == job_id]
        assert seqs == list(range(1, len(seqs) + 1))

    # Another workspace sees none of it: 404 for every id, empty listings.
    for path in (
        f"/jobs/{jobs[0]}",
        f"/jobs/{jobs[0]}/artifact",
        f"/jobs/{jobs[0]}/output",
        f"/documents/{document_id}",
        f"/documents/{document_id}/content",
        f"/configs/{config_id}",
    ):
        response = await client.get(other + path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    for action in ("retry", "cancel"):
        assert (await client.post(f"{other}/jobs/{jobs[0]}/{action}")).status_code == 404
    assert (await client.get(f"{other}/jobs")).json() == {"items": [], "next_cursor": None}
    assert (await client.get(f"{other}/documents")).json() == {"items": []}
    # Submitting with another workspace's config and document: 404, nothing created.
    cross = await client.post(
        f"{other}/jobs", json={"config_version_id": config_id, "document_ids": [document_id]}
    )
    assert cross.status_code == 404
    with pytest.raises(ApiError) as refused:
        async with open_websocket(other.replace("http://", "ws://") + f"/jobs/{jobs[0]}/events"):
            pass
    assert refused.value.status == 404
    assert refused.value.code == "not_found"

    # Newest first, two per page, then the rest.
    page1 = (await client.get(f"{api}/jobs", params={"limit": 2})).json()
    assert [j["id"] for j in page1["items"]] == [jobs[2], jobs[1]]
    assert page1["next_cursor"] == jobs[1]
    page2 = (
        await client.get(f"{api}/jobs", params={"limit": 2, "cursor": page1["next_cursor"]})
    ).json()
    assert [j["id"] for j in page2["items"]] == [jobs[0]]
    assert page2["next_cursor"] is None
    for job_id in jobs:
        await wait_for_status(client, f"{api}/jobs/{job_id}", {"success"})
    done = (await client.get(f"{api}/jobs", params={"status": "success"})).json()
    assert {j["id"] for j in done["items"]} == set(jobs)
    assert (await client.get(f"{api}/jobs", params={"status": "queued"})).json()["items"] == []


async def test_a_submit_and_an_upload_to_a_workspace_deleted_meanwhile_are_404_and_leave_nothing(
    narrow: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workspace's deletion commits after the API's workspace check and admission's lookups,
    just before the row: the store refuses the row, admission removes the job directory and
    frees the queue slot, the upload its file and the folder it was received into."""
    real_insert_job, real_insert_document = SqliteStore.insert_job, SqliteStore.insert_document
    deleted_before: list[str] = []

    async def delete_first(store: SqliteStore, workspace_id: str, row_id: str) -> None:
        if workspace_id in ("team", "crew"):
            assert await access_store(store).delete_workspace(workspace_id) == []
            deleted_before.append(row_id)

    async def insert_job(self: SqliteStore, job: JobRecord) -> None:
        await delete_first(self, job.workspace_id, job.id)
        await real_insert_job(self, job)

    async def insert_document(self: SqliteStore, document: Document) -> None:
        await delete_first(self, document.workspace_id, document.id)
        await real_insert_document(self, document)

    settings = narrow.settings
    team, crew = (f"{narrow.url}/api/v1/workspaces/{w}" for w in ("team", "crew"))
    async with httpx.AsyncClient(base_url=narrow.url, timeout=30) as http:
        for workspace_id in ("team", "crew"):
            created = await http.post("/api/v1/workspaces", json={"id": workspace_id})
            assert created.status_code == 201
        config_id, document_id = await _setup(http, team)
        monkeypatch.setattr(SqliteStore, "insert_job", insert_job)
        body = {"config_version_id": config_id, "document_ids": [document_id]}
        refused = await http.post(f"{team}/jobs", json=body)
        assert refused.status_code == 404, refused.text
        assert refused.json()["error"]["code"] == "not_found"
        assert refused.json()["error"]["message"] == "workspace team not found"
        assert len(deleted_before) == 1  # the deletion really came in between
        assert _job_rows(settings.db_path) == []
        assert list(settings.jobs_dir.iterdir()) == []  # no job directory, log included

        # The refused submission's queue slot was freed: the queue (of one) takes a job.
        config_id, document_id = await _setup(http, narrow.api)
        body = {"config_version_id": config_id, "document_ids": [document_id]}
        accepted = await http.post(f"{narrow.api}/jobs", json=body)
        assert accepted.status_code == 202, accepted.text
        await wait_for_status(http, accepted.headers["Location"], {"success"})

        # An upload: the same refusal; neither the file nor crew's folder is left.
        monkeypatch.setattr(SqliteStore, "insert_document", insert_document)
        upload = await http.post(f"{crew}/documents", files={"file": ("m.xlsx", workbook_bytes())})
        assert upload.status_code == 404, upload.text
        assert upload.json()["error"]["message"] == "workspace crew not found"
        assert len(deleted_before) == 2
        assert not (settings.documents_dir / "crew").exists()
        with closing(sqlite3.connect(settings.db_path)) as conn:
            query = "SELECT COUNT(*) FROM documents WHERE workspace_id = 'crew'"
            assert conn.execute(query).fetchone() == (0,)
