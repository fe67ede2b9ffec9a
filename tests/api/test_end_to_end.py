"""Upload -> submit -> watch events live -> download the output, over a real socket."""

from __future__ import annotations

import json

import httpx
import trio
import trio_websocket
from support.api import Service, package_zip, read_cells, workbook_bytes

from ade.client import open_websocket
from ade.wire import XLSX_MEDIA_TYPE


async def _publish(client: httpx.AsyncClient, api: str, **kwargs: object) -> dict:
    response = await client.post(
        f"{api}/configs", files={"package": ("cfg.zip", package_zip(**kwargs), "application/zip")}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def _upload(
    client: httpx.AsyncClient, api: str, name: str = "members.xlsx", data: bytes | None = None
) -> dict:
    # openpyxl stamps the save time into the workbook: two calls a second apart differ.
    data = workbook_bytes() if data is None else data
    response = await client.post(f"{api}/documents", files={"file": (name, data)})
    assert response.status_code == 201, response.text
    return response.json()


async def test_upload_submit_watch_download(service: Service, client: httpx.AsyncClient) -> None:
    api = service.api
    config = await _publish(client, api)
    assert config["title"] == "Test config"
    assert len(config["id"]) == 32
    # Publishing identical content again is idempotent: same version, 200.
    again = await client.post(
        f"{api}/configs", files={"package": ("cfg.zip", package_zip(), "application/zip")}
    )
    assert again.status_code == 200
    assert again.json()["id"] == config["id"]
    assert (service.settings.venvs_dir / config["id"] / "ade-build" / "snapshot").is_dir()

    uploaded = workbook_bytes()
    document = await _upload(client, api, data=uploaded)
    assert document["filename"] == "members.xlsx"
    assert document["size"] == len(uploaded)
    content = await client.get(f"{api}/documents/{document['id']}/content")
    assert content.status_code == 200
    assert (
        content.content
        == (service.settings.documents_dir / "default" / document["id"]).read_bytes()
    )

    submitted = await client.post(
        f"{api}/jobs",
        json={"config_version_id": config["id"], "document_ids": [document["id"]]},
    )
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    assert submitted.headers["Location"] == f"/api/v1/workspaces/default/jobs/{job['id']}"
    assert job["status"] in ("queued", "running")
    assert job["attempt"] == 1

    ws_url = (
        service.url.replace("http://", "ws://")
        + f"/api/v1/workspaces/default/jobs/{job['id']}/events"
    )
    events = []
    with trio.fail_after(60):
        async with open_websocket(ws_url) as ws:
            try:
                while True:
                    events.append(json.loads(await ws.get_message()))
            except trio_websocket.ConnectionClosed as closed:
                assert closed.reason.code == 1000
    types = [e["type"] for e in events]
    assert types[0] == "enqueue"
    assert "start" in types
    assert types[-1] == "finish"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["job_id"] == job["id"] and e["workspace_id"] == "default" for e in events)

    final = (await client.get(f"{api}/jobs/{job['id']}")).json()
    assert final["status"] == "success", final
    assert final["worker_start"] == "fork"  # the default mode, on the record
    assert final["links"]["output"].endswith(f"/jobs/{job['id']}/output")

    output = await client.get(f"{api}/jobs/{job['id']}/output")
    assert output.status_code == 200
    assert output.headers["Content-Type"] == XLSX_MEDIA_TYPE
    assert 'filename="members.normalized.xlsx"' in output.headers["Content-Disposition"]
    assert output.headers["X-Content-Type-Options"] == "nosniff"
    cells = read_cells(output.content)
    assert cells[0][:2] == ["Name", "Amount"]
    assert [row[:2] for row in cells[1:]] == [["Ada", 10], ["Grace", 20.5], ["Linus", 3]]

    artifact = await client.get(f"{api}/jobs/{job['id']}/artifact")
    assert artifact.status_code == 200
    assert artifact.headers["Content-Type"] == "application/json"
    assert artifact.headers["X-Content-Type-Options"] == "nosniff"
    assert artifact.headers["Content-Disposition"].startswith(
        f'attachment; filename="{job["id"]}.artifact.json"'
    )
    assert isinstance(artifact.json(), dict)

    # Replay from `after`: only the later events, then a normal close.
    replay = []
    async with open_websocket(f"{ws_url}?after=2") as ws:
        try:
            while True:
                replay.append(json.loads(await ws.get_message()))
        except trio_websocket.ConnectionClosed as closed:
            assert closed.reason.code == 1000
    assert replay == events[2:]

    listing = (await client.get(f"{api}/jobs")).json()
    assert [j["id"] for j in listing["items"]] == [job["id"]]
    assert listing["next_cursor"] is None
