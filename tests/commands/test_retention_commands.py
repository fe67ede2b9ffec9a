"""`ade jobs delete`, `ade documents list|delete`, `ade config delete` against a live server, and
`ade gc [--dry-run]` on a data directory left with expired jobs and a crash's orphans."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import trio
from support.api import Service, package_zip, wait_for_status, workbook_bytes
from support.retention import age, finished_job

from ade.cli import main
from ade.ids import new_id
from ade.serde import utcnow
from ade.settings import load_settings
from ade.store import open_store


async def _ade(*argv: str) -> int:
    return await trio.to_thread.run_sync(main, list(argv))


async def test_delete_commands(
    service: Service,
    client: httpx.AsyncClient,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ADE_URL", service.url)
    api = "/api/v1/workspaces/default"
    files = {"package": ("p.zip", package_zip(sleep_seconds=1.0), "application/zip")}
    config = (await client.post(f"{api}/configs", files=files)).json()["id"]
    document = (
        await client.post(f"{api}/documents", files={"file": ("m.xlsx", workbook_bytes())})
    ).json()["id"]
    body = {"config_version_id": config, "document_ids": [document]}
    job = (await client.post(f"{api}/jobs", json=body)).json()["id"]
    await wait_for_status(client, f"{api}/jobs/{job}", {"running"})
    capsys.readouterr()

    assert await _ade("jobs", "delete", job) == 1
    _, err = capsys.readouterr()
    assert f"job {job} is running; only a finished job can be deleted" in err
    assert await _ade("documents", "delete", document) == 1
    _, err = capsys.readouterr()
    assert f"used by queued or running job(s) {job}" in err

    await wait_for_status(client, f"{api}/jobs/{job}", {"success"})
    assert await _ade("documents", "list") == 0
    out, _ = capsys.readouterr()
    assert out.startswith(document) and out.rstrip().endswith("m.xlsx")
    for argv in (("jobs", "delete", job), ("documents", "delete", document),
                 ("config", "delete", config)):  # fmt: skip
        assert await _ade(*argv) == 0
        out, _ = capsys.readouterr()
        assert out == f"{argv[2]} deleted\n"
    assert await _ade("jobs", "delete", job) == 1
    _, err = capsys.readouterr()
    assert f"job {job} not found" in err
    assert await _ade("documents", "list") == 0
    assert "no documents in workspace default" in capsys.readouterr().err


async def test_gc_lists_with_dry_run_then_deletes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    settings = load_settings({}, data_dir=data)
    old, recent = (
        finished_job(settings, utcnow() - timedelta(days=40)),
        finished_job(settings, utcnow() - timedelta(days=2)),
    )
    store = open_store(settings)
    try:
        for job in (old, recent):
            await store.insert_job(job)
    finally:
        store.close()
    # What a crash leaves: a job directory whose row is gone, a document file whose row is
    # gone, a half-removed directory, an interrupted upload; and a fresh upload in flight.
    orphan_job = data / "jobs" / new_id()
    (orphan_job / "inputs").mkdir(parents=True)
    (orphan_job / "inputs" / "d").write_bytes(b"input")
    (orphan_job / "inputs").chmod(0o555)
    age(orphan_job)
    documents = data / "documents" / "default"
    documents.mkdir(parents=True)
    orphan_document = documents / new_id()
    orphan_document.write_bytes(b"content")
    age(orphan_document)
    leftover = data / "jobs" / ".deleting-abc-1234"
    leftover.mkdir()  # young, but a leftover of a deletion goes whatever its age
    upload = documents / ".upload-x1"
    upload.write_bytes(b"half")
    age(upload)
    in_flight = documents / ".upload-x2"
    in_flight.write_bytes(b"arriving")
    monkeypatch.delenv("ADE_RETENTION_DAYS", raising=False)
    capsys.readouterr()

    assert await _ade("gc", "--dry-run", "--older-than-days", "30", "--data-dir", str(data)) == 0
    out, err = capsys.readouterr()
    expected_orphans = sorted(
        str(p.relative_to(data)) for p in (orphan_job, orphan_document, leftover, upload)
    )
    assert out.splitlines() == [
        f"would delete job {old.id}",
        *(f"would delete orphan {p}" for p in expected_orphans),
    ]
    assert err.startswith("would delete 1 job(s) and 4 orphaned file(s), ")
    assert all(p.exists() for p in (orphan_job, orphan_document, leftover, upload))
    assert (data / "jobs" / old.id).is_dir()

    monkeypatch.setenv("ADE_RETENTION_DAYS", "30")  # the default age when none is given
    assert await _ade("gc", "--data-dir", str(data)) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"deleted job {old.id}"
    assert err.startswith("deleted 1 job(s) and 4 orphaned file(s), ")
    assert not any(p.exists() for p in (orphan_job, orphan_document, leftover, upload))
    assert not (data / "jobs" / old.id).exists()
    assert (data / "jobs" / recent.id).is_dir() and in_flight.exists()
    store = open_store(settings)
    try:
        assert await store.get_job(old.id) is None
        assert await store.get_job(recent.id) == recent
    finally:
        store.close()

    # Without an age only orphans are collected, and it says so.
    assert await _ade("gc", "--dry-run", "--data-dir", str(data), "--older-than-days", "1") == 0
    assert f"would delete job {recent.id}" in capsys.readouterr().out
    monkeypatch.delenv("ADE_RETENTION_DAYS")
    assert await _ade("gc", "--dry-run", "--data-dir", str(data)) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "(no retention age given: jobs kept)" in err
    assert await _ade("gc", "--data-dir", str(tmp_path / "nowhere")) == 2
    assert "no such data directory" in capsys.readouterr().err
