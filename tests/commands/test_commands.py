"""`ade config add`, `ade submit --wait`, `ade jobs ...` against a live server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
import trio
from support.api import Service, package_files, read_cells, workbook_bytes

from ade.cli import main


async def _ade(*argv: str) -> int:
    # The commands run their own trio.run; give them a thread of their own.
    return await trio.to_thread.run_sync(main, list(argv))


def _write_folder(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


async def test_client_commands_end_to_end(
    service: Service,
    client: httpx.AsyncClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ADE_URL", service.url)
    package = _write_folder(tmp_path / "pkg", package_files())
    assert await _ade("config", "add", str(package)) == 0
    out, err = capsys.readouterr()
    config_id = out.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", config_id)
    assert err.strip() == "Test config 1.0.0"

    workbook = tmp_path / "members.xlsx"
    workbook.write_bytes(workbook_bytes())
    saved = tmp_path / "saved.xlsx"
    code = await _ade(
        "submit",
        str(workbook),
        "--config",
        config_id,
        "--wait",
        "--output",
        str(saved),
        "--url",
        service.url,
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    job_id = out.strip()
    lines = err.splitlines()
    # Not a terminal: plain lines, one per event, ending with the finish.
    assert lines[0].split()[:2] == ["1", "enqueue"]
    assert any(line.split()[1:3] == ["pass_finished", "pass=write"] for line in lines[:-1])
    assert "finish status=success" in lines[-2]
    assert lines[-1] == f"output saved to {saved}"
    assert [row[:2] for row in read_cells(saved.read_bytes())][1:] == [
        ["Ada", 10],
        ["Grace", 20.5],
        ["Linus", 3],
    ]

    assert await _ade("jobs", "list") == 0
    out, _ = capsys.readouterr()
    assert out.split()[:2] == [job_id, "success"]
    assert await _ade("jobs", "show", job_id) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "success"
    assert await _ade("jobs", "artifact", job_id) == 0
    assert isinstance(json.loads(capsys.readouterr().out), dict)
    assert await _ade("jobs", "output", job_id, "-o", str(tmp_path)) == 0
    downloaded = Path(capsys.readouterr().out.strip())
    assert downloaded == tmp_path / "members.normalized.xlsx"
    assert downloaded.read_bytes() == saved.read_bytes()
    assert await _ade("jobs", "retry", job_id) == 0
    retried = capsys.readouterr().out.strip()
    assert retried != job_id
    assert (await client.get(f"{service.api}/jobs/{retried}")).json()["retry_of"] == job_id

    # Refusals: the server's error on stderr, exit 1; an unreachable server, exit 2.
    assert await _ade("jobs", "cancel", "nope") == 1
    assert "404 not_found: job nope not found" in capsys.readouterr().err
    assert await _ade("jobs", "list", "--url", "http://127.0.0.1:9") == 2
    assert "cannot reach ADE at http://127.0.0.1:9" in capsys.readouterr().err


async def test_submit_wait_exits_non_zero_when_the_job_fails(
    service: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package = _write_folder(tmp_path / "pkg", package_files(fail=True))
    assert await _ade("config", "add", str(package), "--url", service.url) == 0
    config_id = capsys.readouterr().out.strip()
    workbook = tmp_path / "members.xlsx"
    workbook.write_bytes(workbook_bytes())
    code = await _ade(
        "submit", str(workbook), "--config", config_id, "--wait", "--url", service.url
    )
    out, err = capsys.readouterr()
    assert code == 1
    job_id = out.strip()
    assert f"job {job_id} error: config code raised RuntimeError" in err
    assert "boom" not in err  # the exception text stays in diagnostics


async def test_submit_with_an_unknown_config_uploads_nothing(
    service: Service,
    client: httpx.AsyncClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    workbook = tmp_path / "members.xlsx"
    workbook.write_bytes(workbook_bytes())
    code = await _ade("submit", str(workbook), "--config", "nope", "--url", service.url)
    assert code == 1
    assert "404 not_found: config version nope not found" in capsys.readouterr().err
    assert (await client.get(f"{service.api}/documents")).json() == {"items": []}
