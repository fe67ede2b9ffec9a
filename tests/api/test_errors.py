"""Every error code over a real socket, in the one error shape; rejected requests leave nothing."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import trio
from support.api import Service, package_files, package_zip, workbook_bytes, zip_bytes

from ade.client import ApiError, open_websocket


def _error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    return body["error"]


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


async def test_400_lists_every_wrong_field(service: Service, client: httpx.AsyncClient) -> None:
    api = service.api
    error = _error(
        await client.post(
            f"{api}/jobs",
            json={
                "config_version_id": 7,
                "document_ids": ["ok", 3],
                "runtime_network_access": "yes",
                "priority": 1,
            },
        ),
        400,
        "invalid_request",
    )
    assert error["details"] == [
        {"field": "config_version_id", "message": "expected a string, got a number"},
        {"field": "document_ids[1]", "message": "expected a string, got a number"},
        {"field": "runtime_network_access", "message": "expected true or false, got a string"},
        {"field": "priority", "message": "unknown field"},
    ]
    error = _error(await client.post(f"{api}/jobs", json={}), 400, "invalid_request")
    assert error["details"] == [
        {"field": "config_version_id", "message": "required field missing"},
        {"field": "document_ids", "message": "required field missing"},
    ]
    error = _error(
        await client.post(f"{api}/jobs", json={"config_version_id": "c", "document_ids": []}),
        400,
        "invalid_request",
    )
    assert error["details"][0]["field"] == "document_ids"
    error = _error(
        await client.post(
            f"{api}/jobs", json={"config_version_id": "c", "document_ids": ["d1", "d2", "d1"]}
        ),
        400,
        "invalid_request",
    )
    assert error["details"] == [
        {"field": "document_ids[2]", "message": "listed twice; each document once"}
    ]
    _error(await client.post(f"{api}/jobs", json=[1, 2]), 400, "invalid_request")
    error = _error(
        await client.post(
            f"{api}/jobs", content=b'{"a": ', headers={"Content-Type": "application/json"}
        ),
        400,
        "invalid_request",
    )
    assert "not valid JSON" in error["message"]
    error = _error(
        await client.post(
            f"{api}/jobs",
            content=b"[" * 100_000 + b"]" * 100_000,
            headers={"Content-Type": "application/json"},
        ),
        400,
        "invalid_request",
    )
    assert error["message"] == "the request body is nested too deeply"
    # An "id" that cannot be one is quoted escaped and cut short, never echoed verbatim.
    error = _error(await client.get(f"{api}/jobs/{'a' * 500}"), 404, "not_found")
    assert error["details"] == {"job_id": '"' + "a" * 61 + '..."'}
    error = _error(
        await client.get(f"{service.url}/api/v1/workspaces/Not_OK!/jobs"), 400, "invalid_request"
    )
    assert error["details"][0]["field"] == "workspace_id"
    error = _error(
        await client.get(f"{api}/jobs", params={"status": "done", "limit": "0", "cursor": "../x"}),
        400,
        "invalid_request",
    )
    assert [d["field"] for d in error["details"]] == ["status", "limit", "cursor"]
    error = _error(
        await client.post(f"{api}/documents", files={"other": ("a.csv", b"x")}),
        400,
        "invalid_request",
    )
    assert error["details"] == [{"field": "file", "message": "required file part missing"}]
    with pytest.raises(ApiError) as refused:
        async with open_websocket(
            service.url.replace("http://", "ws://")
            + "/api/v1/workspaces/default/jobs/x/events?after=-1"
        ):
            pass
    assert (refused.value.status, refused.value.code) == (400, "invalid_request")


async def test_numbers_int_cannot_read_are_a_400_not_a_500(
    service: Service, client: httpx.AsyncClient
) -> None:
    # "²" passes str.isdigit() but not int(); 5000 digits exceed Python's int-from-string limit.
    for raw in ("\u00b2", "1" * 5000):
        error = _error(
            await client.get(f"{service.api}/jobs", params={"limit": raw}), 400, "invalid_request"
        )
        assert error["details"] == [{"field": "limit", "message": "a whole number from 1 to 200"}]
        with pytest.raises(ApiError) as refused:
            async with open_websocket(
                service.url.replace("http://", "ws://")
                + f"/api/v1/workspaces/default/jobs/x/events?after={quote(raw)}"
            ):
                pass
        assert (refused.value.status, refused.value.code) == (400, "invalid_request")
        assert refused.value.details == [
            {"field": "after", "message": "a whole number >= 0 (an event seq)"}
        ]


async def test_a_json_number_too_long_to_read_is_a_400(
    service: Service, client: httpx.AsyncClient
) -> None:
    body = b'{"config_version_id": "c", "document_ids": ["d"], "x": ' + b"1" * 5000 + b"}"
    response = await client.post(
        f"{service.api}/jobs", content=body, headers={"Content-Type": "application/json"}
    )
    error = _error(response, 400, "invalid_request")
    assert error["details"] == [
        {"field": "(body)", "message": "a number with more than 4300 digits"}
    ]


async def test_404_405_415(service: Service, client: httpx.AsyncClient) -> None:
    api = service.api
    for path in ("/jobs/nope", "/documents/nope", "/documents/nope/content", "/configs/nope"):
        _error(await client.get(api + path), 404, "not_found")
    _error(await client.get(f"{api}/jobs/..%2f..%2fetc/artifact"), 404, "not_found")
    _error(await client.get(f"{service.url}/api/v1/nothing-here"), 404, "not_found")
    error = _error(
        await client.post(
            f"{api}/jobs", json={"config_version_id": "missing", "document_ids": ["d1"]}
        ),
        404,
        "not_found",
    )
    assert error["details"] == {"config_version_id": "missing"}
    response = await client.delete(f"{api}/jobs")
    _error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]
    error = _error(
        await client.post(f"{api}/jobs", content=b"{}", headers={"Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    assert error["details"] == {"expected": "application/json", "got": "text/plain"}
    _error(await client.post(f"{api}/documents", json={"file": "x"}), 415, "unsupported_media_type")
    _error(
        await client.post(
            f"{api}/configs", content=b"PK", headers={"Content-Type": "application/zip"}
        ),
        415,
        "unsupported_media_type",
    )


async def test_413_keeps_nothing_whatever_content_length_says(
    service: Service, client: httpx.AsyncClient
) -> None:
    api = service.api
    limit = service.settings.max_upload_mb * 1024 * 1024
    documents = service.settings.documents_dir
    error = _error(
        await client.post(f"{api}/documents", files={"file": ("big.csv", b"x" * (limit + 1))}),
        413,
        "payload_too_large",
    )
    assert error["details"] == {"max_bytes": limit}

    # Declared far beyond the cap: refused before the body is read, and the connection is
    # closed rather than left half-read (a reused connection would hang the next request).
    # Over a raw socket: httpx abandons its request-body generator when the answer comes
    # early, and its finalization later fails a test on an "exception ignored" warning.
    host, port = service.url.removeprefix("http://").split(":")
    for _ in range(2):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(
                (
                    "POST /api/v1/workspaces/default/documents HTTP/1.1\r\n"
                    f"Host: {host}\r\n"
                    "Content-Type: multipart/form-data; boundary=B\r\n"
                    f"Content-Length: {8 * limit}\r\n\r\n"
                ).encode()
            )
            answer = b""
            with trio.fail_after(10):
                while b"\r\n\r\n" not in answer:
                    answer += await stream.receive_some()
                head, _, body = answer.partition(b"\r\n\r\n")
                lines = head.decode().lower().split("\r\n")
                fields = dict(line.split(": ", 1) for line in lines[1:])
                while len(body) < int(fields["content-length"]):
                    body += await stream.receive_some()
        assert lines[0] == "http/1.1 413 "
        assert fields["connection"] == "close"
        assert json.loads(body)["error"]["code"] == "payload_too_large"

    # Chunked: no Content-Length at all, the cap is enforced while streaming.
    boundary = b"ADEBOUNDARY"

    async def chunked():  # type: ignore[no-untyped-def]
        yield (
            b"--"
            + boundary
            + b'\r\nContent-Disposition: form-data; name="file"; filename="c.csv"\r\n\r\n'
        )
        for _ in range(24):
            yield b"y" * 65536
        yield b"\r\n--" + boundary + b"--\r\n"

    response = await client.post(
        f"{api}/documents",
        content=chunked(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary.decode()}"},
    )
    assert "Content-Length" not in response.request.headers
    _error(response, 413, "payload_too_large")
    assert _leftovers(documents) == ["default"]
    assert (await client.get(f"{api}/documents")).json() == {"items": []}
    # The connection is still usable, and exactly the limit is accepted.
    ok = await client.post(f"{api}/documents", files={"file": ("fits.csv", b"z" * limit)})
    assert ok.status_code == 201
    assert ok.json()["size"] == limit
    assert _leftovers(documents) == ["default", f"default/{ok.json()['id']}"]


async def test_422_lists_each_package_problem_and_prepares_nothing(
    service: Service, client: httpx.AsyncClient
) -> None:
    api = service.api
    venvs = service.settings.venvs_dir

    async def publish(data: bytes) -> dict:
        response = await client.post(
            f"{api}/configs", files={"package": ("p.zip", data, "application/zip")}
        )
        return _error(response, 422, "invalid_config_package")

    error = await publish(b"this is not a zip")
    assert error["details"] == [{"location": "package", "message": "not a readable .zip archive"}]

    # Unsafe names and a symlink: every member named.
    buffer = io.BytesIO()
    unsafe = zipfile.ZipFile(buffer, "w")
    for name, content in package_files().items():
        unsafe.writestr(name, content)
    unsafe.writestr("../escape.py", "x = 1")
    unsafe.writestr("/etc/cron.d/job", "x")
    link = zipfile.ZipInfo("columns/link.py")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    unsafe.writestr(link, "/etc/passwd")
    unsafe.close()
    error = await publish(buffer.getvalue())
    locations = [d["location"] for d in error["details"]]
    assert locations == ["../escape.py", "/etc/cron.d/job", "columns/link.py"]

    # A zip bomb: 20 MiB of zeros compress to a few KiB.
    bomb = zip_bytes({**package_files(), "data.bin": b"\0" * (20 * 1024 * 1024)})
    error = await publish(bomb)
    assert error["details"][0]["location"] == "data.bin"
    assert "compression ratio" in error["details"][0]["message"]

    # Too many members.
    many = zip_bytes({**package_files(), **{f"lib/f{i}.txt": "" for i in range(2001)}})
    error = await publish(many)
    assert "at most 2000" in error["details"][0]["message"]

    # A well-formed zip whose package is broken: the engine's validator names the file.
    broken = package_files()
    broken["columns/amount.py"] = "def detect_by_header(header:\n"
    error = await publish(zip_bytes(broken))
    assert any("columns/amount.py" in d["location"] for d in error["details"])

    assert _leftovers(venvs) == []
    assert (await client.get(f"{api}/configs")).json() == {"items": []}
    # The upload temp files are gone too.
    assert _leftovers(service.settings.data_dir / ".uploads") == []


async def test_network_access_needs_a_config_that_allows_it(
    service: Service, client: httpx.AsyncClient
) -> None:
    api = service.api
    config = await client.post(
        f"{api}/configs", files={"package": ("p.zip", package_zip(), "application/zip")}
    )
    document = await client.post(f"{api}/documents", files={"file": ("m.xlsx", workbook_bytes())})
    error = _error(
        await client.post(
            f"{api}/jobs",
            json={
                "config_version_id": config.json()["id"],
                "document_ids": [document.json()["id"]],
                "runtime_network_access": True,
            },
        ),
        400,
        "invalid_request",
    )
    assert error["details"][0]["field"] == "runtime_network_access"
    assert (await client.get(f"{api}/jobs")).json()["items"] == []


async def test_404_names_every_missing_document_and_leaves_no_job(
    service: Service, client: httpx.AsyncClient
) -> None:
    api = service.api
    config = await client.post(
        f"{api}/configs", files={"package": ("p.zip", package_zip(), "application/zip")}
    )
    document = await client.post(f"{api}/documents", files={"file": ("m.xlsx", workbook_bytes())})
    odd = "x" * 70 + "/.."
    error = _error(
        await client.post(
            f"{api}/jobs",
            json={
                "config_version_id": config.json()["id"],
                "document_ids": ["gone1", document.json()["id"], odd],
            },
        ),
        404,
        "not_found",
    )
    shown = '"' + "x" * 61 + '..."'
    assert error["details"] == {"document_ids": ["gone1", shown]}
    assert error["message"] == f"document(s) not found in workspace default: gone1, {shown}"
    assert (await client.get(f"{api}/jobs")).json()["items"] == []
    assert _leftovers(service.settings.jobs_dir) == []


async def test_a_client_that_hangs_up_mid_upload_leaves_nothing(
    service: Service, client: httpx.AsyncClient
) -> None:
    host, port = service.url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    head = (
        "POST /api/v1/workspaces/default/documents HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Content-Type: multipart/form-data; boundary=B\r\n"
        "Content-Length: 900000\r\n\r\n"
        '--B\r\nContent-Disposition: form-data; name="file"; filename="part.csv"\r\n\r\n'
    )
    await stream.send_all(head.encode() + b"z" * 300_000)
    folder = service.settings.documents_dir / "default"
    with trio.fail_after(10):
        while not list(folder.glob(".upload-*")):
            await trio.sleep(0.02)
    await stream.aclose()
    with trio.fail_after(10):
        while list(folder.iterdir()):
            await trio.sleep(0.02)
    assert (await client.get(f"{service.api}/documents")).json() == {"items": []}
