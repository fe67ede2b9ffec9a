"""For the browser tests: a real `ade serve` process (with a seeded history workspace) and the
flags for Debian's Chromium."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import attrs

CHROMIUM = os.environ.get("ADE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BIN = Path(sys.executable).parent


@attrs.frozen
class Server:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    history: list[str]  # job ids of the history workspace

    @property
    def api(self) -> str:
        return f"{self.url}/api/v1/workspaces/default"


def start_server(tmp: Path, history: list[str], **env: str) -> Server:
    data = tmp / "data"
    log = open(tmp / "serve.log", "wb")
    process = subprocess.Popen(
        [str(BIN / "ade"), "serve", "--data-dir", str(data), "--port", "0", "--no-sample"],
        stdout=subprocess.PIPE,
        stderr=log,
        env={**os.environ, "ADE_HOST": "127.0.0.1", **env},
    )
    log.close()
    assert process.stdout is not None
    seen = b""
    while b"ADE serving on " not in seen:
        line = process.stdout.readline()
        if not line:
            process.wait(10)
            raise AssertionError(f"ade serve did not start: {(tmp / 'serve.log').read_text()}")
        seen += line
    url = re.search(rb"ADE serving on (http://\S+)", seen)
    assert url is not None
    return Server(url.group(1).decode(), data, process, history)


def stop_server(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(30)
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        assert server.process.stdout is not None
        server.process.stdout.close()


# A workspace with a long history (finished jobs written through the store before the server
# starts), for paging through thousands of jobs.
HISTORY_WORKSPACE = "history"
HISTORY_JOBS = 2000


async def seed_history(data_dir: Path) -> list[str]:
    """Insert HISTORY_JOBS finished jobs, every third one failed; their ids."""
    from datetime import timedelta

    from ade.ids import new_id
    from ade.models import JobRecord, JobStatus
    from ade.serde import utcnow
    from ade.settings import load_settings
    from ade.store import open_store
    from support import ensure_workspaces

    store = open_store(load_settings({}, data_dir=data_dir))
    now = utcnow()
    # Ids sort by time, but many are made within one millisecond: sorted, they follow the
    # creation times given below, as the ids of jobs submitted one by one would.
    ids = sorted(new_id() for _ in range(HISTORY_JOBS))
    try:
        await ensure_workspaces(store, HISTORY_WORKSPACE)  # the store refuses jobs without it
        for index in range(HISTORY_JOBS):
            created = now - timedelta(seconds=HISTORY_JOBS - index)
            failed = index % 3 == 0
            job = JobRecord(
                id=ids[index],
                workspace_id=HISTORY_WORKSPACE,
                status=JobStatus.ERROR if failed else JobStatus.SUCCESS,
                config_version_id="0" * 32,
                document_ids=("doc_history",),
                runtime_network_access=False,
                attempt=1,
                created_at=created,
                started_at=created,
                finished_at=created + timedelta(milliseconds=300),
                error_message="input 'old.xlsx' is empty (0 bytes)" if failed else None,
            )
            await store.insert_job(job)
    finally:
        await store.aclose()
    return ids


def admin_headers(server: Server) -> dict[str, str]:
    """The local admin key (written by the first start when auth is enabled), as a header."""
    key_file = server.data_dir / "admin.key"
    if not key_file.exists():
        return {}
    return {"Authorization": f"Bearer {key_file.read_text().strip()}"}


def ensure_workspace(server: Server, workspace: str) -> None:
    """Create ``workspace`` unless it exists (seeding jobs through the store before the server
    started created it already: the store refuses rows in a workspace that does not exist)."""
    import httpx

    response = httpx.post(
        f"{server.url}/api/v1/workspaces",
        json={"id": workspace},
        headers=admin_headers(server),
        timeout=30,
    )
    assert response.status_code in (201, 409), response.text
