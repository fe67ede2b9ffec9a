"""`ade keys` and `ade workspaces` against a real `ade serve` (keys on, its admin.key picked up
from ADE_DATA_DIR), with their messages and exit codes; plus the admin.key file itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ade.auth.bootstrap import client_api_key, is_loopback, write_key_file
from ade.loadtest import ServerProcess
from ade.settings import load_settings


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    process = ServerProcess(tmp_path / "data", tmp_path / "logs", {}, args=("--no-sample",))
    await process.start()
    yield process
    await process.stop()


def _ade(server: ServerProcess, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "ADE_URL": server.url,
        "ADE_DATA_DIR": str(server.data_dir),
        **env,
    }
    if "ADE_API_KEY" not in env:
        environment.pop("ADE_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "ade.cli", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_keys_and_workspaces_commands(server: ServerProcess) -> None:
    created = _ade(server, "workspaces", "create", "team")
    assert (created.returncode, created.stdout) == (0, "created workspace team\n")
    again = _ade(server, "workspaces", "create", "team")
    assert again.returncode == 1
    assert again.stderr.startswith("ade: 409 conflict: workspace team already exists")
    made = _ade(server, "keys", "create", "team viewer", "--role", "viewer", "--workspace", "team")
    assert made.returncode == 0, made.stderr
    head, token = made.stdout.splitlines()
    assert head.startswith("created viewer key ") and head.endswith(
        "(team viewer); its token, shown once:"
    )
    assert token.startswith("ade_")
    key_id = token.split("_")[1]

    listed = _ade(server, "keys", "list")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert len(lines) == 2  # the admin key of the first start, and this one
    assert any(
        line.startswith(f"{key_id}  viewer  team  active  last used: never used") for line in lines
    )
    assert token not in listed.stdout

    # The viewer key sees its workspace only, may read, may not write or manage keys.
    as_viewer = {"ADE_API_KEY": token}
    spaces = _ade(server, "workspaces", "list", "--json", **as_viewer)
    assert [w["id"] for w in json.loads(spaces.stdout)["items"]] == ["team"]
    jobs = _ade(server, "jobs", "list", "--workspace", "team", **as_viewer)
    assert (jobs.returncode, jobs.stderr) == (0, "no jobs in workspace team\n")
    refused = _ade(server, "keys", "list", **as_viewer)
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        f"ade: 403 forbidden: this route needs an admin key; key {key_id} is viewer"
    )
    other = _ade(server, "jobs", "list", **as_viewer)  # workspace default
    assert other.returncode == 1
    assert other.stderr.startswith(
        f"ade: 403 forbidden: key {key_id} may not use workspace default"
    )
    typo = _ade(server, "jobs", "list", "--workspace", "taem")
    assert typo.returncode == 1
    assert typo.stderr.startswith("ade: 404 not_found: workspace taem not found")

    revoked = _ade(server, "keys", "revoke", key_id)
    assert revoked.returncode == 0 and revoked.stdout.startswith(
        f"revoked key {key_id} (team viewer) at "
    )
    after = _ade(server, "jobs", "list", "--workspace", "team", **as_viewer)
    assert after.returncode == 1
    assert after.stderr.startswith(f"ade: 401 unauthorized: API key {key_id} was revoked")
    assert token not in after.stderr

    # No key at all: the refusal says where a key was looked for.
    elsewhere = _ade(server, "jobs", "list", ADE_DATA_DIR=str(server.data_dir.parent / "nowhere"))
    assert elsewhere.returncode == 1
    assert elsewhere.stderr.splitlines()[-1] == (
        "ade: no API key: set ADE_API_KEY, or run where ADE_DATA_DIR holds the admin.key of "
        f"`ade serve` (looked for {server.data_dir.parent / 'nowhere' / 'admin.key'})"
    )

    renamed = _ade(server, "workspaces", "rename", "team", "crew")
    assert (renamed.returncode, renamed.stdout) == (0, "renamed workspace team to crew\n")
    deleted = _ade(server, "workspaces", "delete", "crew")
    assert (deleted.returncode, deleted.stderr) == (0, "deleted workspace crew\n")
    default = _ade(server, "workspaces", "delete", "default")
    assert default.returncode == 1
    assert default.stderr.startswith("ade: 409 conflict: the default workspace cannot be deleted")


def test_the_key_file_is_the_owners_only_and_read_by_clients(tmp_path: Path) -> None:
    settings = load_settings({}, data_dir=tmp_path / "data")
    assert client_api_key(settings) is None
    old_umask = os.umask(0)
    try:
        write_key_file(settings.admin_key_path, "ade_secret")
    finally:
        os.umask(old_umask)
    assert settings.admin_key_path.stat().st_mode & 0o777 == 0o600
    assert client_api_key(settings) == "ade_secret"
    assert client_api_key(load_settings({"ADE_API_KEY": "ade_env"}, data_dir=tmp_path)) == "ade_env"
    assert list((tmp_path / "data").iterdir()) == [settings.admin_key_path]  # no scratch left


def test_the_key_file_is_never_written_through_a_planted_link(tmp_path: Path) -> None:
    settings = load_settings({}, data_dir=tmp_path / "data")
    path = settings.admin_key_path
    path.parent.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("untouched\n")
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.symlink_to(elsewhere)  # planted before the write (or left by a crash)
    write_key_file(path, "ade_secret")
    assert elsewhere.read_text() == "untouched\n"
    assert path.read_text() == "ade_secret\n" and not path.is_symlink()
    assert path.stat().st_mode & 0o777 == 0o600
    assert not scratch.exists() and not scratch.is_symlink()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
