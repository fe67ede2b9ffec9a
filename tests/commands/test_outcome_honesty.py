"""Outcome honesty: a job that finished with error-level issues says so in its record,
``GET /jobs/{id}``, the finish event, ``ade jobs list`` and ``ade submit --wait``'s exit code;
a manifest's ``engine.fail_on_errors`` makes it a failed job (with its artifact kept)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import trio
from support.api import Service, package_files, workbook_bytes

from ade.cli import main
from ade.layout import JobLayout

# The second member has no name, and name is required: one error-level issue.
ROWS: list[list[object]] = [["Name", "Amount"], ["Ada", 10], [None, 5]]
ISSUES = "issues: 1 errors, 0 warnings, 0 rows outside any table"


async def _ade(*argv: str) -> int:
    return await trio.to_thread.run_sync(main, list(argv))


async def _config(
    service: Service, tmp_path: Path, files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> str:
    """Add the package and write members.xlsx next to it; returns the config version id."""
    package = tmp_path / "pkg"
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    workbook = tmp_path / "members.xlsx"
    workbook.write_bytes(workbook_bytes(ROWS))
    assert await _ade("config", "add", str(package), "--url", service.url) == 0
    return capsys.readouterr().out.strip()


async def test_a_job_that_finished_with_errors_shows_it_everywhere(
    service: Service,
    client: httpx.AsyncClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config_id = await _config(service, tmp_path, package_files(), capsys)
    workbook = str(tmp_path / "members.xlsx")
    code = await _ade("submit", workbook, "--config", config_id, "--wait", "--url", service.url)
    out, err = capsys.readouterr()
    job_id = out.strip()
    assert code == 3, err
    assert err.splitlines()[-1] == f"job {job_id} finished with errors: {ISSUES}"
    assert f"outcome=errors issues={ISSUES}" in err  # the finish event, as a plain line

    job = (await client.get(f"{service.api}/jobs/{job_id}")).json()
    assert (job["status"], job["outcome"], job["issues"]) == ("success", "errors", ISSUES)
    assert (job["summary"]["errors"], job["summary"]["required_missing"]) == (1, [])
    finish = json.loads(
        JobLayout.of(service.settings.jobs_dir, job_id).events.read_text().splitlines()[-1]
    )
    assert (finish["type"], finish["detail"]["outcome"], finish["detail"]["issues"]) == (
        "finish",
        "errors",
        ISSUES,
    )

    assert await _ade("jobs", "list", "--url", service.url) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.split()[:3] == [job_id, "success", "errors"]
    assert line.endswith(f"  {ISSUES}")

    # --fail-on never: the same outcome is not a failure for this caller.
    code = await _ade(
        "submit", workbook, "--config", config_id, "--wait", "--fail-on", "never",
        "--url", service.url,
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err


async def test_fail_on_errors_in_the_manifest_makes_it_a_failed_job(
    service: Service,
    client: httpx.AsyncClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = package_files()
    manifest = json.loads(files["manifest.json"])
    manifest["engine"] = {"fail_on_errors": True}
    files["manifest.json"] = json.dumps(manifest)
    config_id = await _config(service, tmp_path, files, capsys)
    code = await _ade(
        "submit", str(tmp_path / "members.xlsx"), "--config", config_id, "--wait",
        "--url", service.url,
    )  # fmt: skip
    out, err = capsys.readouterr()
    job_id = out.strip()
    message = (
        "finished with 1 error-level issue(s), which the config's manifest makes a failure "
        "(engine.fail_on_errors); the artifact lists them"
    )
    assert code == 1
    assert f"job {job_id} error: {message}" in err
    job = (await client.get(f"{service.api}/jobs/{job_id}")).json()
    assert (job["status"], job["outcome"], job["error_message"]) == ("error", "errors", message)
    artifact = await client.get(f"{service.api}/jobs/{job_id}/artifact")
    assert artifact.status_code == 200
    assert [i["code"] for i in artifact.json()["issues"]] == ["required"]


async def test_a_clean_job_is_clean(
    service: Service,
    client: httpx.AsyncClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config_id = await _config(service, tmp_path, package_files(), capsys)
    (tmp_path / "clean.xlsx").write_bytes(workbook_bytes(ROWS[:2]))
    code = await _ade(
        "submit", str(tmp_path / "clean.xlsx"), "--config", config_id, "--wait",
        "--fail-on", "warnings", "--url", service.url,
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    job = (await client.get(f"{service.api}/jobs/{out.strip()}")).json()
    assert (job["outcome"], job["issues"]) == (
        "clean",
        "issues: 0 errors, 0 warnings, 0 rows outside any table",
    )
