"""No single request may stall or bloat the service (issue 15), over real sockets: large JSON
bodies answer at once with small errors, connections close when HTTP says so, trickling bodies
are cut, the connection cap refuses cleanly, downloads are safe, drain answers 503, zip bombs
are refused at upload."""

from __future__ import annotations

import io
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from support.api import Service, make_settings, package_zip, start_service, workbook_bytes

from ade.api.errors import MAX_LISTED_PROBLEMS
from ade.store import open_store

KEEP_ALIVE = 0.5


_opened: list[trio.SocketStream] = []


@pytest.fixture
async def tight(tmp_path: Path) -> AsyncIterator[Service]:
    """A service with short connection timers and a small connection cap."""
    settings = make_settings(
        tmp_path / "data",
        keep_alive_seconds=KEEP_ALIVE,
        body_timeout_seconds=1.0,
        max_connections=4,
        max_upload_mb=4,
        max_uncompressed_mb=2,
    )
    async with trio.open_nursery() as nursery:
        svc = await start_service(nursery, settings)
        yield svc
        while _opened:  # the raw connections the test opened
            await _opened.pop().aclose()
        svc.stop.set()


def _port(service: Service) -> int:
    return int(service.url.rsplit(":", 1)[1])


async def _connect(service: Service) -> trio.SocketStream:
    """A raw connection, closed when the test ends."""
    stream = await trio.open_tcp_stream("127.0.0.1", _port(service))
    _opened.append(stream)
    return stream


async def _read_until_closed(stream: trio.SocketStream, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and how long the close took after the
    first byte of the answer (or after the call, if nothing came)."""
    started = trio.current_time()
    data = bytearray()
    with trio.fail_after(limit):
        while chunk := await stream.receive_some(65536):
            if not data:
                started = trio.current_time()
            data.extend(chunk)
    return bytes(data), trio.current_time() - started


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def _body(response: bytes) -> Any:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])


# -- connections --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /api/v1/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"GET /api/v1/health HTTP/1.0\r\n\r\n",
    ],
)
async def test_connection_close_and_http_1_0_close_at_once(
    tight: Service, request_line: bytes
) -> None:
    stream = await _connect(tight)
    await stream.send_all(request_line)
    response, took = await _read_until_closed(stream, 5)
    assert _status(response) == 200
    assert took < KEEP_ALIVE / 2  # closed after the answer, not by the idle timer


async def test_idle_keep_alive_connections_close_after_the_timeout(tight: Service) -> None:
    stream = await _connect(tight)
    await stream.send_all(b"GET /api/v1/health HTTP/1.1\r\nHost: t\r\n\r\n")
    response, took = await _read_until_closed(stream, 5)
    assert _status(response) == 200
    assert KEEP_ALIVE * 0.8 < took < KEEP_ALIVE + 1.5
    # A connection that never sends its headers is closed by the same timer.
    silent = await _connect(tight)
    data, took = await _read_until_closed(silent, 5)
    assert data == b""
    assert took < KEEP_ALIVE + 1.5


async def test_the_connection_cap_refuses_with_a_503_and_recovers(tight: Service) -> None:
    # Four connections that keep the server busy reading their (never finished) headers.
    held = [await _connect(tight) for _ in range(4)]
    for stream in held:
        await stream.send_all(b"GET /api/v1/health HTTP/1.1\r\n")
    await trio.sleep(0.1)
    extra = await _connect(tight)
    await extra.send_all(b"GET /api/v1/health HTTP/1.1\r\nHost: t\r\n\r\n")
    response, _ = await _read_until_closed(extra, 5)
    assert _status(response) == 503
    assert b"retry-after: 1" in response.lower()
    assert _body(response)["error"]["code"] == "too_many_connections"
    for stream in held:
        await stream.aclose()
    # The server notices at once, but hypercorn lets the connection's idle timer run out
    # before it releases the socket.
    await trio.sleep(KEEP_ALIVE + 0.5)
    async with httpx.AsyncClient(base_url=tight.url, timeout=5) as http:
        health = await http.get("/api/v1/health")
        assert health.status_code == 200, health.text


async def test_a_trickling_upload_is_cut_with_408_and_leaves_no_temp_file(
    tight: Service,
) -> None:
    stream = await _connect(tight)
    boundary = b"xyz"
    head = (
        b"POST /api/v1/workspaces/default/documents HTTP/1.1\r\nHost: t\r\n"
        b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\n"
        b"Content-Length: 100000\r\n\r\n"
        b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="t.csv"\r\n\r\n'
    )
    await stream.send_all(head)
    folder = tight.settings.documents_dir / "default"

    async def trickle() -> None:
        try:
            for _ in range(100):
                await trio.sleep(0.05)
                await stream.send_all(b"a,b\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the server cut us off: what is being tested

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trickle)
        await trio.sleep(0.5)
        assert next(p.name for p in folder.iterdir()).startswith(".upload-")  # it is streaming
        response, took = await _read_until_closed(stream, 5)
        assert took < 0.5  # closed with the answer
        nursery.cancel_scope.cancel()
    assert _status(response) == 408
    assert _body(response)["error"]["code"] == "request_timeout"
    assert "ADE_BODY_TIMEOUT_SECONDS" in _body(response)["error"]["message"]
    assert list(folder.iterdir()) == []


# -- bounded JSON bodies ------------------------------------------------------------------------


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _timed_post(http: httpx.AsyncClient, url: str, content: bytes, **kw: Any) -> Any:
    started = time.monotonic()
    response = await http.post(
        url, content=content, headers={"Content-Type": "application/json"}, **kw
    )
    return response, time.monotonic() - started


async def _raw_post(
    service: Service, path: str, body: bytes, *, chunked: bool
) -> tuple[bytes, float]:
    """POST ``body`` over a raw socket, with Content-Length or chunked: the answer, and how long
    it took from the first byte sent (the server may answer and close before all of it is
    sent)."""
    stream = await _connect(service)
    started = trio.current_time()

    async def send() -> None:
        try:
            framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
            await stream.send_all(
                f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                f"{framing}\r\n\r\n".encode()
            )
            for start in range(0, len(body), 65536):
                piece = body[start : start + 65536]
                await stream.send_all(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                await stream.send_all(b"0\r\n\r\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # answered and closed before the whole body went out

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        response, _ = await _read_until_closed(stream, 5)
    return response, trio.current_time() - started


async def test_large_json_bodies_answer_at_once_with_small_errors(tight: Service) -> None:
    url = f"{tight.api}/jobs"
    cap = tight.settings.max_json_kb * 1024
    rss_before = _max_rss_mib()
    async with httpx.AsyncClient(timeout=10) as http:
        # 60,000 ids (703 KiB): over the JSON cap, refused from its Content-Length alone.
        ids = json.dumps(
            {"config_version_id": "c", "document_ids": [f"d{i}" for i in range(60_000)]}
        ).encode()
        path = "/api/v1/workspaces/default/jobs"
        response, took = await _raw_post(tight, path, ids, chunked=False)
        assert _status(response) == 413
        assert _body(response)["error"]["details"] == {"max_bytes": cap}
        assert took < 1.0
        # The same without a Content-Length (chunked): cut as soon as it passes the cap.
        response, took = await _raw_post(tight, path, ids, chunked=True)
        assert _status(response) == 413
        assert _body(response)["error"]["details"] == {"max_bytes": cap}
        assert took < 1.0
        # Just under the cap, the worst shapes: elements that are not strings, all wrong.
        for element in (b"0", b"{}", b'"d"'):
            count = (cap - 100) // (len(element) + 1)
            body = (
                b'{"config_version_id": "c", "document_ids": ['
                + b",".join([element] * count)
                + b"]}"
            )
            assert len(body) <= cap
            response, took = await _timed_post(http, url, body)
            assert response.status_code == 400, response.text
            assert response.json()["error"]["details"] == [
                {"field": "document_ids", "message": "at most 100 documents per job"}
            ]
            assert len(response.content) < 1024
            assert took < 1.0
        # Thousands of unknown fields: the error lists the first few and a count.
        fields = {f"x{i}": 0 for i in range(20_000)}
        body = json.dumps({"config_version_id": "c", "document_ids": ["d"], **fields}).encode()
        assert len(body) <= cap
        response, took = await _timed_post(http, url, body)
        details = response.json()["error"]["details"]
        assert response.status_code == 400
        assert len(details) == MAX_LISTED_PROBLEMS + 1
        assert details[-1] == {"field": "(more)", "message": "19980 more problems not listed"}
        assert response.json()["error"]["message"].endswith("and 19980 more")
        assert len(response.content) < 4096
        assert took < 1.0
        # Over-long strings are refused by length, before anything else looks at them.
        long_id = "a" * 129
        response, _ = await _timed_post(
            http,
            url,
            json.dumps({"config_version_id": long_id, "document_ids": [long_id, ""]}).encode(),
        )
        assert response.json()["error"]["details"] == [
            {"field": "config_version_id", "message": "at most 128 characters"},
            {"field": "document_ids[0]", "message": "at most 128 characters"},
            {"field": "document_ids[1]", "message": "must not be empty"},
        ]
        # The loop stayed free throughout.
        with trio.fail_after(1):
            assert (await http.get(f"{tight.url}/api/v1/health")).status_code == 200
    assert _max_rss_mib() - rss_before < 64


async def test_an_oversized_upload_is_refused_from_its_declared_length(tight: Service) -> None:
    stream = await _connect(tight)
    await stream.send_all(
        b"POST /api/v1/workspaces/default/documents HTTP/1.1\r\nHost: t\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 999999999\r\n\r\n"
    )
    response, took = await _read_until_closed(stream, 5)
    assert _status(response) == 413
    assert _body(response)["error"]["details"] == {"max_bytes": 4 * 1024 * 1024}
    assert took < 1.0


# -- downloads, zip bombs -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["page.html", "image.svg", "data.json", "members.xlsx"])
async def test_documents_download_as_octet_stream_attachments(
    service: Service, client: httpx.AsyncClient, name: str
) -> None:
    content = b"<html><script>alert(1)</script></html>"
    document = await client.post(f"{service.api}/documents", files={"file": (name, content)})
    download = await client.get(f"{service.api}/documents/{document.json()['id']}/content")
    assert download.status_code == 200
    assert download.content == content
    assert download.headers["Content-Type"] == "application/octet-stream"
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.headers["Content-Disposition"].startswith(f'attachment; filename="{name}"')


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


async def test_zip_bomb_workbooks_are_refused_at_upload_naming_the_limit(tight: Service) -> None:
    folder = tight.settings.documents_dir / "default"
    bomb = _zip({"[Content_Types].xml": b"<x/>", "xl/worksheets/sheet1.xml": b"0" * (64 << 20)})
    assert len(bomb) < 1024 * 1024
    # 3 MiB that does not compress: over the 2 MiB total, well under the ratio.
    large = _zip({f"xl/part{i}.bin": random.Random(i).randbytes(3 << 18) for i in range(4)})
    async with httpx.AsyncClient(base_url=tight.api, timeout=10) as http:
        refused = await http.post("/documents", files={"file": ("bomb.xlsx", bomb)})
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error["code"] == "invalid_input"
        assert error["message"].startswith("document 'bomb.xlsx' refused: part ")
        assert error["message"].endswith("the limit is a compression ratio of 100:1")
        assert error["details"] == {
            "filename": "bomb.xlsx",
            "limit": "a compression ratio of 100:1",
        }
        refused = await http.post("/documents", files={"file": ("big.xlsx", large)})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["message"] == (
            f"document 'big.xlsx' refused: it expands to {4 * (3 << 18)} bytes; the limit is "
            f"{2 << 20} bytes uncompressed (ADE_MAX_UNCOMPRESSED_MB)"
        )
        assert list(folder.iterdir()) == []
        # A real workbook and a CSV pass.
        ok = await http.post("/documents", files={"file": ("m.xlsx", workbook_bytes())})
        assert ok.status_code == 201
        ok = await http.post("/documents", files={"file": ("m.csv", b"name,amount\nAda,10\n")})
        assert ok.status_code == 201


# -- drain --------------------------------------------------------------------------------------


async def test_during_the_drain_requests_get_503_and_health_says_draining(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path / "data", shutdown_grace_seconds=10.0)
    async with trio.open_nursery() as nursery:
        svc = await start_service(nursery, settings)
        async with httpx.AsyncClient(base_url=svc.api, timeout=10) as http:
            config = await http.post(
                "/configs",
                files={"package": ("slow.zip", package_zip(sleep_seconds=2), "application/zip")},
            )
            document = await http.post("/documents", files={"file": ("m.xlsx", workbook_bytes())})
            body = {
                "config_version_id": config.json()["id"],
                "document_ids": [document.json()["id"]],
            }
            job = (await http.post("/jobs", json=body)).json()
            with trio.fail_after(20):
                while (await http.get(f"/jobs/{job['id']}")).json()["status"] != "running":
                    await trio.sleep(0.05)
            svc.stop.set()
            await trio.sleep(0.2)
            # The job is still running: the service drains, and answers meanwhile.
            for response in (
                await http.get(f"/jobs/{job['id']}"),
                await http.post("/jobs", json=body),
            ):
                assert response.status_code == 503
                assert response.headers["Retry-After"] == "5"
                assert response.json()["error"]["code"] == "shutting_down"
            health = await http.get(f"{svc.url}/api/v1/health")
            assert health.status_code == 503
            assert health.json()["status"] == "draining"
    # The drain let the running job finish.
    async with open_store(settings) as store:
        finished = await store.get_job(job["id"])
    assert finished is not None
    assert finished.status.value == "success"


# -- descriptor exhaustion ----------------------------------------------------------------------


def _limit_open_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_SERVER_FDS, _SERVER_FDS))


_SERVER_FDS = 128


async def test_running_out_of_descriptors_is_one_log_line_and_the_service_recovers(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "ADE_DATA_DIR": str(tmp_path / "data"),
        "ADE_HOST": "127.0.0.1",
        "ADE_PORT": "0",
        "ADE_KEEP_ALIVE_SECONDS": "2",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ade.cli", "serve", "--no-sample"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_limit_open_files,
        )
    clients: list[trio.SocketStream] = []
    try:
        with trio.fail_after(30):
            while "ADE serving on " not in log.read_text():
                assert process.poll() is None, log.read_text()
                await trio.sleep(0.05)
        url = log.read_text().split("ADE serving on ", 1)[1].split()[0]
        port = int(url.rsplit(":", 1)[1])
        # Far more connections than the server has descriptors for.
        for _ in range(3 * _SERVER_FDS):
            with trio.fail_after(5):
                clients.append(await trio.open_tcp_stream("127.0.0.1", port))
        await trio.sleep(1.5)
        for stream in clients:
            await stream.aclose()
        clients.clear()
        # Once the descriptors are free again (idle timers run out), it serves.
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            with trio.fail_after(20):
                while True:
                    try:
                        if (await http.get("/api/v1/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.2)
        # A connection accepted a quiet second later ends the episode in the log.
        await trio.sleep(1.2)
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            assert (await http.get("/api/v1/health")).status_code == 200
    finally:
        for stream in clients:
            await stream.aclose()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    text = log.read_text()
    assert "ADE_MAX_CONNECTIONS lowered from 2048 to 16 to fit the open-file limit" in text
    exhausted = [line for line in text.splitlines() if "cannot accept connections" in line]
    assert 1 <= len(exhausted) <= 3, text[-3000:]
    assert "EMFILE" in exhausted[0]
    assert "accepting connections again after" in text
    assert "Traceback" not in text
