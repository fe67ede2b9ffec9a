"""`ade serve`'s log lines as an operator's log shipper sees them: JSON objects on stderr when it
is not a terminal, an access line per request, a line per job step, start-up and shutdown lines
-- and never a cell value, a file name, a document's content or a key (sentinels prove it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import trio
from support.api import package_zip, wait_for_status, workbook_bytes

CELL = "SENTINEL-CELL-5b9e2c"
FILENAME = "SENTINEL-FILE-77d0a1.xlsx"
BEARER = "SENTINEL-KEY-c4e8f3a61b"
SCRAPE_TOKEN = "SENTINEL-SCRAPE-90af3d21"


def _bearer(data: Path) -> str:
    """A key that must never be logged: the server's own admin key once authentication
    exists (a made-up key would be refused), else a sentinel the server never saw before."""
    key_file = data / "admin.key"
    return key_file.read_text().strip() if key_file.exists() else BEARER


async def _wait_for_url(stdout: trio.abc.ReceiveStream, buffer: bytearray) -> str:
    marker = b"ADE serving on "
    while marker not in buffer or b"\n" not in buffer[buffer.index(marker) :]:
        chunk = await stdout.receive_some(4096)
        assert chunk, f"ade serve exited early: {bytes(buffer)!r}"
        buffer.extend(chunk)
    start = buffer.index(marker) + len(marker)
    return buffer[start : buffer.index(b"\n", start)].decode().split()[0]


async def test_json_log_lines_say_what_happened_and_never_what_was_uploaded(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = {
        **os.environ,
        "ADE_DATA_DIR": str(data),
        "ADE_HOST": "127.0.0.1",
        "ADE_PORT": "0",
        "ADE_MAX_CONCURRENCY": "1",
        "ADE_METRICS_TOKEN": SCRAPE_TOKEN,
    }
    env.pop("ADE_LOG_FORMAT", None)  # the default: stderr is a file here, so JSON
    err_path = tmp_path / "serve.err"
    with open(err_path, "wb") as stderr:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "ade.cli", "serve", "--no-sample"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
        )
        output = bytearray()
        try:
            assert process.stdout is not None
            with trio.fail_after(60):
                url = await _wait_for_url(process.stdout, output)
            key = _bearer(data)
            headers = {"Authorization": f"Bearer {key}"}
            api = f"{url}/api/v1/workspaces/default"
            async with httpx.AsyncClient(timeout=30, headers=headers) as http:
                config = await http.post(
                    f"{api}/configs",
                    files={"package": ("p.zip", package_zip(), "application/zip")},
                )
                rows: list[list[object]] = [["Name", "Amount"], [CELL, 1], ["Ada", 2]]
                document = await http.post(
                    f"{api}/documents", files={"file": (FILENAME, workbook_bytes(rows))}
                )
                assert document.status_code == 201, document.text
                body = {
                    "config_version_id": config.json()["id"],
                    "document_ids": [document.json()["id"]],
                }
                submitted = await http.post(
                    f"{api}/jobs", json=body, headers={"X-Request-Id": "ship-it-1"}
                )
                job = await wait_for_status(
                    http, f"{api}/jobs/{submitted.json()['id']}", {"success"}
                )
                output_file = await http.get(f"{api}/jobs/{job['id']}/output")
                assert output_file.status_code == 200
                scrape = await http.get(
                    f"{url}/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}
                )
                assert scrape.status_code == 200
                assert (await http.delete(f"{api}/jobs/{job['id']}")).status_code == 204
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(45):
                while chunk := await process.stdout.receive_some(4096):
                    output.extend(chunk)
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    text = err_path.read_text()
    lines: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines()]  # all JSON
    for secret in (CELL, FILENAME, key, SCRAPE_TOKEN, "SENTINEL"):
        assert secret not in text, secret
    # stdout is the banner for a person (where a first start shows its new admin key once).
    for secret in (CELL, FILENAME, SCRAPE_TOKEN, BEARER):
        assert secret not in output.decode(), secret
    # Nor in what the job left behind (its events and artifact).
    for path in data.rglob("*"):
        if path.is_file() and path.suffix in (".ndjson", ".json"):
            assert key not in path.read_text() and SCRAPE_TOKEN not in path.read_text()

    by_logger: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        assert {"ts", "level", "logger", "message"} <= set(line)
        by_logger.setdefault(line["logger"], []).append(line)
    messages = [line["message"] for line in by_logger["ade.serve"]]
    assert messages[0].startswith("sandbox best-effort: layers ")
    assert "ADE started" in messages
    assert "SIGTERM: shutting down gracefully" in messages
    assert messages[-1] == "ADE stopped"
    started = next(line for line in by_logger["ade.serve"] if line["message"] == "ADE started")
    assert started["url"] == url and started["store"] == "sqlite" and started["workers"] == 1

    access = by_logger["ade.access"]
    submit = next(line for line in access if line["request_id"] == "ship-it-1")
    assert submit["method"] == "POST"
    assert submit["route"] == "/api/v1/workspaces/{workspace_id}/jobs"
    assert submit["status"] == 202
    assert submit["duration_ms"] > 0
    assert submit["message"] == "POST /api/v1/workspaces/{workspace_id}/jobs 202"
    deleted = next(line for line in access if line["method"] == "DELETE")
    assert deleted["route"] == "/api/v1/workspaces/{workspace_id}/jobs/{job_id}"
    assert deleted["status"] == 204
    assert all(len(line["request_id"]) >= 8 for line in access)
    # Every route is a template: no id of this run appears in a route.
    assert not [line for line in access if job["id"] in line["route"]]

    steps = [line for line in by_logger["ade.jobs"] if line["job_id"] == job["id"]]
    assert [line["step"] for line in steps] == ["enqueue", "start", "finish"]
    assert steps[0]["request_id"] == "ship-it-1"
    assert steps[0]["workspace_id"] == "default" and steps[0]["status"] == "queued"
    assert steps[1]["queue_wait_seconds"] >= 0
    assert steps[2]["status"] == "success" and steps[2]["reason"] == "completed"
    assert steps[2]["duration_seconds"] > 0
    retention = by_logger["ade.retention"]
    assert [(line["message"], line["id"], line["by"]) for line in retention] == [
        ("job deleted", job["id"], "api")
    ]
