"""Real nodes for the multi-node tests: `ade serve` / `ade worker` processes sharing one
PostgreSQL database and one data directory, with short leases so the tests stay fast."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from ade.loadtest._server import ServerProcess
from support.api import package_zip, workbook_bytes

__all__ = [
    "LEASE_SECONDS",
    "Cluster",
    "events_of",
    "node_env",
    "setup_workspace",
    "start_event_node",
    "wait_job",
]

# Short leases keep the dead-node tests to seconds: a node is declared dead 2 s after its last
# heartbeat (heartbeats every 0.67 s).
LEASE_SECONDS = 2.0
API = "/api/v1/workspaces/default"


def node_env(database_url: str, node_id: str, **extra: str) -> dict[str, str]:
    return {
        "ADE_DATABASE_URL": database_url,
        "ADE_NODE_ID": node_id,
        "ADE_LEASE_SECONDS": str(LEASE_SECONDS),
        "ADE_MAX_CONCURRENCY": "1",
        "ADE_QUEUE_SIZE": "20",
        "ADE_SHUTDOWN_GRACE_SECONDS": "2",
        "ADE_JOB_TIMEOUT_SECONDS": "60",
        # Not about keys (tests/cluster/test_cluster_auth.py turns them on).
        "ADE_AUTH": "disabled",
        **extra,
    }


class Cluster:
    """Named serve nodes (and optional worker nodes) over one database and data directory."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.tmp_path = tmp_path
        self.data_dir = tmp_path / "data"
        self.database_url = database_url
        self.nodes: dict[str, ServerProcess] = {}
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def add(self, node_id: str, *args: str, **env: str) -> ServerProcess:
        server = ServerProcess(
            self.data_dir,
            self.tmp_path / "logs" / node_id,
            node_env(self.database_url, node_id, **env),
            args=("--no-sample", *args),
        )
        self.nodes[node_id] = server
        return server

    async def start(self, *node_ids: str) -> None:
        async with trio.open_nursery() as nursery:
            for node_id in node_ids or tuple(self.nodes):
                nursery.start_soon(self.nodes[node_id].start)

    async def start_worker(self, node_id: str, **env: str) -> subprocess.Popen[bytes]:
        """`ade worker`; ready when it printed its ready line."""
        log = self.tmp_path / "logs" / f"worker-{node_id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        environ = {
            **os.environ,
            **node_env(self.database_url, node_id, **env),
            "ADE_DATA_DIR": str(self.data_dir),
            "PYTHONUNBUFFERED": "1",
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "ade.cli", "worker"],
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.workers[node_id] = process
        deadline = time.monotonic() + 60
        while b"ready" not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ade worker {node_id} did not start: {log.read_text()}")
            await trio.sleep(0.05)
        return process

    def url(self, node_id: str) -> str:
        return self.nodes[node_id].url

    async def stop(self) -> None:
        async with trio.open_nursery() as nursery:
            for server in self.nodes.values():
                nursery.start_soon(server.stop)
        for process in self.workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@asynccontextmanager
async def running_cluster(tmp_path: Path, database_url: str) -> AsyncIterator[Cluster]:
    cluster = Cluster(tmp_path, database_url)
    try:
        yield cluster
    finally:
        with trio.CancelScope(shield=True):
            await cluster.stop()


async def setup_workspace(http: httpx.AsyncClient, base: str, **package: Any) -> tuple[str, str]:
    """Upload a config package and one document through node ``base``; (config, document)."""
    config = await http.post(
        f"{base}{API}/configs",
        files={"package": ("c.zip", package_zip(**package), "application/zip")},
    )
    assert config.status_code == 201, config.text
    document = await http.post(
        f"{base}{API}/documents", files={"file": ("m.xlsx", workbook_bytes())}
    )
    assert document.status_code == 201, document.text
    return config.json()["id"], document.json()["id"]


async def wait_job(
    http: httpx.AsyncClient,
    base: str,
    job_id: str,
    statuses: set[str],
    timeout: float = 60.0,
) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while True:
            job = (await http.get(f"{base}{API}/jobs/{job_id}")).json()
            if job["status"] in statuses:
                return job
            await trio.sleep(0.05)


def events_of(data_dir: Path, job_id: str) -> list[dict[str, Any]]:
    path = data_dir / "jobs" / job_id / "events.ndjson"
    return [json.loads(line) for line in path.read_text().splitlines()]


def start_event_node(data_dir: Path, job_id: str) -> str | None:
    for event in events_of(data_dir, job_id):
        if event["type"] == "start":
            return str(event["detail"]["node"])
    return None


def job_rows(database_url: str) -> list[tuple[str, str, str | None]]:
    import psycopg

    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT id, status, node_id FROM jobs ORDER BY id").fetchall()


def body(config_id: str, document_id: str) -> Mapping[str, Any]:
    return {"config_version_id": config_id, "document_ids": [document_id]}
