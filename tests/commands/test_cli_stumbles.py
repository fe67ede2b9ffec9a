"""The command line as a new user meets it (issue 14's list): each stumble, fixed and proven."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from support.api import (
    Service,
    make_settings,
    package_files,
    package_zip,
    read_cells,
    start_service,
    wait_for_status,
    workbook_bytes,
    zip_bytes,
)
from support.auth import start_auth_service

from ade.cli import main

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


async def _ade(*argv: str) -> int:
    # The commands run their own trio.run; give them a thread of their own.
    return await trio.to_thread.run_sync(main, list(argv))


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


def _readme_block(after: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("```sh\n", text.index(after)) + len("```sh\n")
    return text[start : text.index("```", start)]


async def _publish(client: httpx.AsyncClient, api: str, **kwargs: Any) -> str:
    response = await client.post(
        f"{api}/configs", files={"package": ("p.zip", package_zip(**kwargs), "application/zip")}
    )
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


async def _upload(client: httpx.AsyncClient, api: str) -> str:
    response = await client.post(f"{api}/documents", files={"file": ("m.xlsx", workbook_bytes())})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_the_readme_curl_example_works_as_written(tmp_path: Path) -> None:
    script = _readme_block("The same over HTTP")
    assert "roster.xlsx" in script and "$B/jobs/$JOB/output" in script
    (tmp_path / "ade").symlink_to(REPO / "ade")  # `ade config add ade/samples/...` from the repo
    # As in the quick start: keys on, and the server's data dir is ./data where the commands
    # run, so curl's `cat data/admin.key` and the ade commands find the admin key.
    env = _env(ADE_URL="")
    env.pop("ADE_DATA_DIR", None)
    env.pop("ADE_API_KEY", None)
    async with trio.open_nursery() as nursery:
        service, _ = await start_auth_service(nursery, tmp_path / "data")
        env["ADE_URL"] = service.url
        result = await trio.run_process(
            [
                "bash",
                "-euo",
                "pipefail",
                "-c",
                script.replace("http://127.0.0.1:8000", service.url),
            ],
            cwd=tmp_path,
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        service.stop.set()
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    cells = read_cells((tmp_path / "out" / "normalized.xlsx").read_bytes())
    assert len(cells) > 5 and cells[0][0] is not None
    assert b'"status":"ok"' in result.stdout.splitlines()[-1]


async def test_ade_url_may_carry_api_v1_and_empty_lists_say_so(
    service: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    for url in (f"{service.url}/api/v1", f"{service.url}/api/v1/", f"{service.url}/"):
        assert await _ade("jobs", "list", "--url", url) == 0
        out, err = capsys.readouterr()
        assert (out, err) == ("", "no jobs in workspace default\n")
    assert await _ade("jobs", "list", "--status", "error", "--url", service.url) == 0
    assert capsys.readouterr().err == "no error jobs in workspace default\n"
    assert await _ade("config", "list", "--url", service.url) == 0
    assert capsys.readouterr().err.startswith("no config versions in workspace default")
    # --json: one document, also when empty (nothing on stderr then).
    assert await _ade("jobs", "list", "--json", "--url", service.url) == 0
    out, err = capsys.readouterr()
    assert (json.loads(out), err) == ({"items": [], "next_cursor": None}, "")
    assert await _ade("config", "list", "--json", "--url", service.url) == 0
    assert json.loads(capsys.readouterr().out) == {"items": []}


async def test_json_lists_carry_the_records(
    service: Service, client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    config_id = await _publish(client, service.api)
    document_id = await _upload(client, service.api)
    body = {"config_version_id": config_id, "document_ids": [document_id]}
    job = (await client.post(f"{service.api}/jobs", json=body)).json()
    await wait_for_status(client, f"{service.api}/jobs/{job['id']}", {"success"})
    assert await _ade("jobs", "list", "--json", "--url", service.url) == 0
    page = json.loads(capsys.readouterr().out)
    assert [(j["id"], j["status"]) for j in page["items"]] == [(job["id"], "success")]
    assert await _ade("config", "list", "--json", "--url", service.url) == 0
    assert [c["id"] for c in json.loads(capsys.readouterr().out)["items"]] == [config_id]


async def test_a_closed_stdout_pipe_exits_quietly(service: Service) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte, like `| head -0`
    try:
        result = await trio.run_process(
            [str(BIN / "ade"), "jobs", "list", "--json", "--url", service.url],
            stdout=write_end,
            capture_stderr=True,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (0, b"")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"ade {version('ade')}\n"


async def test_output_to_a_folder_that_does_not_exist_yet(
    service: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package = tmp_path / "pkg.zip"
    package.write_bytes(zip_bytes(package_files()))  # type: ignore[arg-type]
    assert await _ade("config", "add", str(package), "--url", service.url) == 0
    config_id = capsys.readouterr().out.strip()
    workbook = tmp_path / "members.xlsx"
    workbook.write_bytes(workbook_bytes())
    new_folder = tmp_path / "new"
    code = await _ade(
        "submit", str(workbook), "--config", config_id, "--wait",
        "--output", f"{new_folder}/", "--url", service.url,
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    saved = new_folder / "members.normalized.xlsx"
    assert err.splitlines()[-1] == f"output saved to {saved}"
    assert [row[:2] for row in read_cells(saved.read_bytes())][1] == ["Ada", 10]

    job_id = out.strip()
    deeper = tmp_path / "other" / "deeper"
    assert await _ade("jobs", "output", job_id, "-o", f"{deeper}/", "--url", service.url) == 0
    assert capsys.readouterr().out.strip() == str(deeper / "members.normalized.xlsx")
    # A path without the slash is a file name; its folder is created too.
    named = tmp_path / "third" / "result.xlsx"
    assert await _ade("jobs", "output", job_id, "-o", str(named), "--url", service.url) == 0
    assert named.read_bytes() == saved.read_bytes()


async def test_a_bad_config_package_prints_each_problem_once(
    service: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = package_files()
    del files["row_types/header.py"]
    files["../escape.py"] = "x = 1\n"
    package = tmp_path / "bad.zip"
    package.write_bytes(zip_bytes(files))  # type: ignore[arg-type]
    assert await _ade("config", "add", str(package), "--url", service.url) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == ("ade: 422 invalid_config_package: config package is invalid (1 problem(s))")
    assert lines[1:] == ["  ../escape.py: unsafe path: absolute or escapes the folder"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_submit_wait_outlasts_a_server_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path / "data", port=_free_port(), shutdown_grace_seconds=20.0)
    url = f"http://127.0.0.1:{settings.port}"
    api = f"{url}/api/v1/workspaces/default"
    workbook = tmp_path / "members.xlsx"
    workbook.write_bytes(workbook_bytes())
    result: list[int] = []
    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as first_life:
            first = await start_service(first_life, settings)
            async with httpx.AsyncClient(timeout=30) as http:
                config_id = await _publish(http, api, sleep_seconds=2.0)

                async def submit() -> None:
                    result.append(
                        await _ade(
                            "submit", str(workbook), "--config", config_id, "--wait", "--url", url
                        )
                    )

                outer.start_soon(submit)
                with trio.fail_after(30):
                    while not (jobs := (await http.get(f"{api}/jobs")).json()["items"]):
                        await trio.sleep(0.05)
                    await wait_for_status(http, f"{api}/jobs/{jobs[0]['id']}", {"running"})
            first.stop.set()  # streams close with 1001; the job finishes during the drain
        second = await start_service(outer, settings)
        with trio.fail_after(60):
            while not result:
                await trio.sleep(0.05)
        second.stop.set()
    out, err = capsys.readouterr()
    assert result == [0], err
    assert "lost the server (event stream closed with 1001" in err
    assert "finish status=success" in err.splitlines()[-1]
    assert out.strip() == jobs[0]["id"]


async def test_submit_through_a_full_queue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path / "data", queue_size=1, max_concurrency=1)
    workbook = tmp_path / "members.xlsx"
    workbook.write_bytes(workbook_bytes())
    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, settings)
        api = service.api
        async with httpx.AsyncClient(timeout=30) as http:
            slow = await _publish(http, api, sleep_seconds=1.5)
            body = {"config_version_id": slow, "document_ids": [await _upload(http, api)]}
            running = (await http.post(f"{api}/jobs", json=body)).json()
            await wait_for_status(http, f"{api}/jobs/{running['id']}", {"running"})
            assert (await http.post(f"{api}/jobs", json=body)).status_code == 202  # queued
            documents_before = len((await http.get(f"{api}/documents")).json()["items"])

            # --queue-wait 0: gives up at once, says how to submit the upload later.
            code = await _ade("submit", str(workbook), "--config", slow, "--queue-wait", "0",
                              "--url", service.url)  # fmt: skip
            out, err = capsys.readouterr()
            assert (code, out) == (1, "")
            documents = (await http.get(f"{api}/documents")).json()["items"]
            assert len(documents) == documents_before + 1
            uploaded = documents[-1]["id"]
            command = f"ade submit --config {slow} --document {uploaded} --url {service.url}"
            assert "the job queue is full (1 of 1 waiting)" in err
            assert err.splitlines()[-1] == f"  {command}"

            # The printed command, with a bound: waits out Retry-After, then is accepted.
            code = await _ade(*command.split()[1:], "--queue-wait", "60")
            out, err = capsys.readouterr()
            assert code == 0, err
            assert re.search(r"queue is full \(1 of 1 waiting\).*; retrying in \d+ s", err)
            job = (await http.get(f"{api}/jobs/{out.strip()}")).json()
            assert job["document_ids"] == [uploaded]
            assert len((await http.get(f"{api}/documents")).json()["items"]) == len(documents)
            await wait_for_status(http, f"{api}/jobs/{out.strip()}", {"success"}, timeout=60)
        service.stop.set()


async def test_serve_takes_data_dir_and_its_help_lists_the_variables(tmp_path: Path) -> None:
    help_text = await trio.run_process(
        [str(BIN / "ade"), "serve", "--help"], capture_stdout=True, env=_env()
    )
    text = help_text.stdout.decode()
    assert "--data-dir" in text
    for variable in ("ADE_DATA_DIR", "ADE_QUEUE_SIZE", "ADE_JOB_TIMEOUT_SECONDS", "ADE_URL"):
        assert variable in text
    assert "ADE_QUEUE_SIZE" in text and "(default: 10)" in text

    data = tmp_path / "elsewhere"
    process = await trio.lowlevel.open_process(
        [str(BIN / "ade"), "serve", "--data-dir", str(data), "--port", "0", "--no-sample"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_env(ADE_DATA_DIR=str(tmp_path / "not-this-one")),
    )
    try:
        assert process.stdout is not None
        seen = b""
        with trio.fail_after(60):
            while b"ADE serving on" not in seen:
                chunk = await process.stdout.receive_some(4096)
                assert chunk, seen
                seen += chunk
        assert (data / "ade.sqlite").is_file()
        assert not (tmp_path / "not-this-one").exists()
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_loadtest_help_shows_every_default_and_warns_about_timeout_jobs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ade.cli import build_parser
    from ade.loadtest._cli import options_from_args

    with pytest.raises(SystemExit):
        main(["loadtest", "--help"])
    text = " ".join(capsys.readouterr().out.split()).split(" options: ", 1)[1]
    for option, default in (
        ("--clients CLIENTS", "50"), ("--tiny-rows TINY_ROWS", "5"),
        ("--large-rows LARGE_ROWS", "2000"), ("--cancel-fraction CANCEL_FRACTION", "0.05"),
        ("--queue-size QUEUE_SIZE", "10"), ("--max-concurrency MAX_CONCURRENCY", "2"),
        ("--workspace WORKSPACE", "default"), ("--job-timeout JOB_TIMEOUT", "3.0"),
    ):  # fmt: skip
        after = re.split(r" --[a-z][a-z-]* ", text.split(option, 1)[1])[0]
        assert f"(default: {default})" in after, (option, after)
    assert "(default: None)" not in text

    parser = build_parser()
    private = options_from_args(parser.parse_args(["loadtest"]))
    assert private.config_mix["timeout"] > 0  # its own server: 3 s timeout
    remote = options_from_args(parser.parse_args(["loadtest", "--url", "http://127.0.0.1:9"]))
    assert remote.config_mix["timeout"] == 0
    assert capsys.readouterr().err == ""
    explicit = parser.parse_args(
        ["loadtest", "--url", "http://127.0.0.1:9", "--configs", "ok=1,timeout=1"]
    )
    assert options_from_args(explicit).config_mix["timeout"] == 0.5
    assert "will be reported as lost" in capsys.readouterr().err


def test_scripts_run_after_scripts_test_installs_nothing(tmp_path: Path) -> None:
    """The install stamp of `./scripts/test` (extras [test]) satisfies `./scripts/run`."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "_venv.sh", tmp_path / "scripts" / "_venv.sh")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    fake = tmp_path / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/pip-calls\n')
    fake.chmod(0o755)

    def source(extras: str | None) -> subprocess.CompletedProcess[str]:
        # Nothing of the caller's venv choice (CI sets ADE_VENV / ADE_PYTHON per interpreter).
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("ADE_VENV_EXTRAS", "ADE_VENV", "ADE_PYTHON")
        }
        if extras is not None:
            env["ADE_VENV_EXTRAS"] = extras
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", ". scripts/_venv.sh"],
            cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip

    first = source("[test]")  # what ./scripts/test does on a fresh checkout
    assert (tmp_path / "pip-calls").read_text().count("install") == 2
    assert "installing ADE into .venv" in first.stderr
    (tmp_path / "pip-calls").unlink()
    for extras in (None, "[test]"):  # ./scripts/run, then ./scripts/test again
        again = source(extras)
        assert not (tmp_path / "pip-calls").exists()
        assert again.stderr == ""
    # pyproject.toml changed: both reinstall.
    os.utime(tmp_path / "pyproject.toml", (2**31, 2**31))
    source(None)
    assert "-e ." in (tmp_path / "pip-calls").read_text()
