"""DELETE for jobs, documents and config versions, the retention sweep and /health's disk usage,
over a real socket: refusals while something active needs the record, rows and files gone
together, the workspace's log, and what survives (a finished job keeps its own inputs)."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import trio
from support.api import make_settings, package_zip, start_service, wait_for_status, workbook_bytes
from support.retention import age, finished_job

from ade.ids import new_id
from ade.layout import JobLayout
from ade.retention import data_dir_usage, workspace_log_path
from ade.serde import utcnow
from ade.settings import Settings
from ade.store import open_store


def _log(settings: Settings, workspace: str = "default") -> list[dict[str, Any]]:
    path = workspace_log_path(settings, workspace)
    return [json.loads(line) for line in path.read_text().splitlines()]


async def _publish(http: httpx.AsyncClient, **package: Any) -> str:
    files = {"package": ("p.zip", package_zip(**package), "application/zip")}
    return str((await http.post("/configs", files=files)).json()["id"])


async def _upload(http: httpx.AsyncClient) -> str:
    answer = await http.post("/documents", files={"file": ("m.xlsx", workbook_bytes())})
    return str(answer.json()["id"])


async def test_delete_refused_while_active_then_rows_and_files_go_together(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path / "data")
    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, settings)
        async with httpx.AsyncClient(base_url=service.api, timeout=30) as http:
            config = await _publish(http, sleep_seconds=1.0)
            document = await _upload(http)
            body = {"config_version_id": config, "document_ids": [document]}
            job = (await http.post("/jobs", json=body)).json()
            await wait_for_status(http, f"/jobs/{job['id']}", {"running"})

            # Everything the running job needs is refused, with the job named.
            busy_job = await http.delete(f"/jobs/{job['id']}")
            busy_document = await http.delete(f"/documents/{document}")
            busy_config = await http.delete(f"/configs/{config}")
            assert [r.status_code for r in (busy_job, busy_document, busy_config)] == [409] * 3
            assert busy_job.json()["error"]["details"] == {"job_id": job["id"], "status": "running"}
            assert busy_document.json()["error"]["details"] == {
                "document_id": document,
                "job_ids": [job["id"]],
            }
            assert busy_config.json()["error"]["details"]["job_ids"] == [job["id"]]

            await wait_for_status(http, f"/jobs/{job['id']}", {"success"})
            job_dir = JobLayout.of(settings.jobs_dir, job["id"]).root
            # The document goes; the finished job keeps its own (hard-linked) input.
            gone = await http.delete(f"/documents/{document}", headers={"X-Request-Id": "rq-doc"})
            assert (gone.status_code, gone.content) == (204, b"")
            assert (await http.get(f"/documents/{document}")).status_code == 404
            assert not (settings.documents_dir / "default" / document).exists()
            assert any((job_dir / "inputs").iterdir())
            assert (await http.get(f"/jobs/{job['id']}/output")).status_code == 200

            assert (await http.delete(f"/configs/{config}")).status_code == 204
            assert (await http.get(f"/configs/{config}")).status_code == 404
            assert not (settings.venvs_dir / config).exists()

            deleted = await http.delete(f"/jobs/{job['id']}", headers={"X-Request-Id": "rq-job"})
            assert deleted.status_code == 204
            assert (await http.get(f"/jobs/{job['id']}")).status_code == 404
            assert not job_dir.exists()
            assert not [p for p in settings.jobs_dir.iterdir() if p.name.startswith(".")]
            assert (await http.delete(f"/jobs/{job['id']}")).status_code == 404
            # A retry of a deleted job is as unknown as the job.
            assert (await http.post(f"/jobs/{job['id']}/retry")).status_code == 404
        service.stop.set()

    entries = _log(settings)
    assert [(e["type"], e["id"], e["by"]) for e in entries] == [
        ("document_deleted", document, "api"),
        ("config_deleted", config, "api"),
        ("job_deleted", job["id"], "api"),
    ]
    assert [e.get("request_id") for e in entries][::2] == ["rq-doc", "rq-job"]


async def test_a_config_shared_by_two_workspaces_keeps_its_files_until_both_delete_it(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path / "data")
    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, settings)
        async with httpx.AsyncClient(
            base_url=f"{service.url}/api/v1/workspaces", timeout=30
        ) as http:
            files = {"package": ("p.zip", package_zip(), "application/zip")}
            first = (await http.post("/default/configs", files=files)).json()["id"]
            second = (await http.post("/team-b/configs", files=files)).json()["id"]
            assert first == second  # same content, one prepared folder
            assert (await http.delete(f"/default/configs/{first}")).status_code == 204
            assert (settings.venvs_dir / first).is_dir()
            assert (await http.get(f"/team-b/configs/{first}")).status_code == 200
            assert (await http.delete(f"/team-b/configs/{first}")).status_code == 204
            assert not (settings.venvs_dir / first).exists()
            # Published again afterwards, it is prepared again.
            again = await http.post("/default/configs", files=files)
            assert again.status_code == 201
            assert (settings.venvs_dir / first).is_dir()
        service.stop.set()


async def test_the_retention_sweep_deletes_expired_jobs_and_orphans_and_counts_them(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path / "data", retention_days=7)
    settings.jobs_dir.mkdir(parents=True)
    expired = [finished_job(settings, utcnow() - timedelta(days=d)) for d in (8, 30)]
    recent = finished_job(settings, utcnow() - timedelta(days=6))
    # Left by a crash between a deletion's row and its files: no row, an hour old.
    orphan = settings.jobs_dir / new_id()
    (orphan / "inputs").mkdir(parents=True)
    age(orphan)
    # A directory without a row that is young may be a submission in flight: kept.
    young = settings.jobs_dir / new_id()
    young.mkdir()
    store = open_store(settings)
    try:
        for job in [*expired, recent]:
            await store.insert_job(job)
    finally:
        store.close()

    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, settings)
        async with httpx.AsyncClient(base_url=service.api, timeout=30) as http:
            with trio.fail_after(20):
                while "ade_retention_sweeps_total 1.0" not in (
                    scrape := (await http.get(f"{service.url}/metrics")).text
                ):
                    await trio.sleep(0.05)
            statuses = [(await http.get(f"/jobs/{j.id}")).status_code for j in expired]
            assert statuses == [404, 404]
            assert (await http.get(f"/jobs/{recent.id}")).status_code == 200
            health = (await http.get(f"{service.url}/api/v1/health")).json()
        service.stop.set()

    assert "ade_retention_deleted_jobs_total 2.0" in scrape
    assert "ade_retention_removed_orphans_total 1.0" in scrape
    assert sorted(p.name for p in settings.jobs_dir.iterdir()) == sorted([recent.id, young.name])
    log = _log(settings)
    assert sorted((e["id"], e["by"]) for e in log) == sorted((j.id, "retention") for j in expired)
    disk = health["disk"]
    assert disk["path"] == str(settings.data_dir)
    assert disk["used_bytes"] >= 8000  # the recent job's two files, at least
    assert 0 < disk["fs_free_bytes"] <= disk["fs_total_bytes"]


async def test_disk_usage_counts_hard_linked_inputs_once(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, settings)
        async with httpx.AsyncClient(base_url=service.api, timeout=30) as http:
            big = workbook_bytes([["Name", "Amount"], *[[f"n{i}" * 20, i] for i in range(3000)]])
            answer = await http.post("/documents", files={"file": ("big.xlsx", big)})
            assert answer.status_code == 201
            health = (await http.get(f"{service.url}/api/v1/health")).json()
        service.stop.set()
    document = settings.documents_dir / "default" / answer.json()["id"]
    blocks = document.stat().st_blocks * 512
    assert health["disk"]["used_bytes"] >= blocks >= len(big)
    used = data_dir_usage(settings)["used_bytes"]
    # A hard link to the document (as a job's input is) adds nothing; a copy adds its blocks.
    os.link(document, settings.data_dir / "link")
    assert data_dir_usage(settings)["used_bytes"] == used
    (settings.data_dir / "copy").write_bytes(big)
    assert data_dir_usage(settings)["used_bytes"] == used + blocks
