"""`ade serve` as a real process: prints its URL, serves the bundled sample config, and on
SIGTERM shuts down gracefully (the running job finishes, the queued one stays queued, exit 0)."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import httpx
import trio
from support.api import package_zip, wait_for_status, workbook_bytes


async def _read_until(stream: trio.abc.ReceiveStream, marker: bytes, buffer: bytearray) -> str:
    while marker not in buffer or b"\n" not in buffer[buffer.index(marker) :]:
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise AssertionError(f"ade serve exited before printing {marker!r}: {bytes(buffer)!r}")
        buffer.extend(chunk)
    line_start = buffer.index(marker)
    return buffer[line_start : buffer.index(b"\n", line_start)].decode()


async def test_sigterm_drains_gracefully(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {
        **os.environ,
        "ADE_DATA_DIR": str(data),
        "ADE_HOST": "127.0.0.1",
        "ADE_PORT": "0",
        "ADE_MAX_CONCURRENCY": "1",
        "ADE_QUEUE_SIZE": "5",
        "ADE_SHUTDOWN_GRACE_SECONDS": "30",
    }
    stderr = open(tmp_path / "serve.err", "wb")
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "ade.cli", "serve"],
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
    )
    output = bytearray()
    try:
        assert process.stdout is not None
        with trio.fail_after(60):
            line = await _read_until(process.stdout, b"ADE serving on ", output)
            await _read_until(process.stdout, b"  or:  ade submit", output)
        url = line.split("ADE serving on ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        assert b"sample config " in output

        # Secure by default: the first start made an admin key, printed it once and stored it
        # for the local CLI, readable by the owner only; the curl line reads that file.
        key_file = data / "admin.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        token = key_file.read_text().strip()
        assert token.startswith("ade_")
        assert output.decode().count(token) == 1
        assert f'-H "Authorization: Bearer $(cat {key_file})"' in output.decode()
        api = f"{url}/api/v1/workspaces/default"
        async with httpx.AsyncClient(timeout=30) as anonymous:
            refused = await anonymous.get(f"{api}/configs")
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "unauthorized"
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(timeout=30, headers=headers) as http:
            configs = (await http.get(f"{api}/configs")).json()["items"]
            assert [c["title"] for c in configs] == ["Member roster"]
            documents = (await http.get(f"{api}/documents")).json()["items"]
            assert [d["filename"] for d in documents] == ["sample-roster.xlsx"]
            # The printed quick-start line names exactly these two.
            assert f'"document_ids": ["{documents[0]["id"]}"]' in output.decode()
            assert f'"config_version_id": "{configs[0]["id"]}"' in output.decode()

            config = await http.post(
                f"{api}/configs",
                files={"package": ("slow.zip", package_zip(sleep_seconds=1.5), "application/zip")},
            )
            document = await http.post(
                f"{api}/documents", files={"file": ("m.xlsx", workbook_bytes())}
            )
            body = {
                "config_version_id": config.json()["id"],
                "document_ids": [document.json()["id"]],
            }
            running = (await http.post(f"{api}/jobs", json=body)).json()
            queued = (await http.post(f"{api}/jobs", json=body)).json()
            await wait_for_status(http, f"{api}/jobs/{running['id']}", {"running"})

        process.send_signal(signal.SIGTERM)
        with trio.fail_after(45):
            while chunk := await process.stdout.receive_some(4096):
                output.extend(chunk)
            code = await process.wait()
        assert code == 0, (tmp_path / "serve.err").read_text()[-2000:]
        assert b"ADE stopped" in output
        assert b"SIGTERM: shutting down gracefully" in (tmp_path / "serve.err").read_bytes()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        stderr.close()

    with closing(sqlite3.connect(data / "ade.sqlite")) as conn:
        statuses = dict(conn.execute("SELECT id, status FROM jobs").fetchall())
    # The running job was allowed to finish; the queued one waits for the next start.
    assert statuses == {running["id"]: "success", queued["id"]: "queued"}
    with closing(sqlite3.connect(data / "ade.sqlite")) as conn:
        submitters = {row[0] for row in conn.execute("SELECT submitted_by FROM jobs")}
    assert submitters == {token.split("_")[1]}  # the key's id, never the key


async def test_disabled_auth_is_refused_on_a_non_loopback_address(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ADE_DATA_DIR": str(tmp_path / "data"),
        "ADE_AUTH": "disabled",
        "ADE_HOST": "0.0.0.0",
        "ADE_PORT": "0",
    }
    refused = await trio.run_process(
        [sys.executable, "-m", "ade.cli", "serve"], env=env, capture_stderr=True, check=False
    )
    assert refused.returncode == 2
    assert refused.stderr.decode().startswith(
        "ade serve: ADE_AUTH=disabled serves every route to anyone who can reach 0.0.0.0; "
        "it is allowed on a loopback address only"
    )
    assert not (tmp_path / "data").exists()


async def test_a_taken_port_is_a_clear_start_up_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "ADE_DATA_DIR": str(tmp_path / "data"),
            "ADE_HOST": "127.0.0.1",
            "ADE_PORT": str(port),
        }
        with trio.fail_after(60):
            result = await trio.run_process(
                [sys.executable, "-m", "ade.cli", "serve", "--no-sample"],
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    assert result.returncode == 2
    assert result.stderr.decode().splitlines()[-1] == (
        f"ade serve: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    bad = await trio.run_process(
        [sys.executable, "-m", "ade.cli", "serve"],
        env={**env, "ADE_PORT": "eighty"},
        capture_stderr=True,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.decode().strip() == "ade serve: ADE_PORT: cannot parse 'eighty'"


async def test_a_sample_that_cannot_be_prepared_is_a_one_line_start_up_error(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "venvs").write_text("not a directory")  # prepare cannot create venvs/<id>/
    env = {
        **os.environ,
        "ADE_DATA_DIR": str(data),
        "ADE_HOST": "127.0.0.1",
        "ADE_PORT": "0",
    }
    with trio.fail_after(60):
        result = await trio.run_process(
            [sys.executable, "-m", "ade.cli", "serve"],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 2
    last = result.stderr.decode().splitlines()[-1]
    assert last.startswith("ade serve: could not prepare the bundled sample config: ")
    assert last.endswith("(start with --no-sample to skip it)")
    assert "Traceback" not in result.stderr.decode()
