"""Scale-of-history benchmark: does a long history slow ADE down?

    .venv/bin/python benchmarks/history.py                      # 100k finished, 10k queued
    .venv/bin/python benchmarks/history.py --finished 2000 --queued 200   # quick mode

1. Submit, status and listing latency against an empty store, then against a store holding
   ``--finished`` finished jobs (seeded straight through ``ade.store``, the server stopped, for
   speed). Requests are sequential from one client, so each latency is the server's alone. The
   jobs submitted during the measurement use a config whose hook sleeps (and a long job
   timeout): the workers hold them without burning CPU, so both phases see the same quiet machine.
2. Restart time: from spawning ``ade serve`` to its first 200 on /api/v1/health, on a data
   directory with ``--queued`` queued jobs (each with its job directory, as a submit leaves it)
   against one with none.

Ratios (seeded / empty) are what to compare over time.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from ade.ids import new_id
from ade.loadtest import (
    LoadTestOptions,
    ServerProcess,
    build_workload,
    machine_facts,
    summarize,
)
from ade.models import JobRecord, JobStatus
from ade.runtime.jobdir import create_job_dir
from ade.serde import utcnow
from ade.settings import load_settings
from ade.store import open_store
from ade.wire import XLSX_MEDIA_TYPE

WORKSPACE = "default"
PREFIX = f"/api/v1/workspaces/{WORKSPACE}"
XLSX = XLSX_MEDIA_TYPE
SERVER_ENV = {
    # Not about keys: benchmarks/auth.py measures what the key check costs.
    "ADE_AUTH": "disabled",
    "ADE_MAX_CONCURRENCY": "2",
    "ADE_QUEUE_SIZE": "100000",
    "ADE_JOB_TIMEOUT_SECONDS": "3600",
    "ADE_SHUTDOWN_GRACE_SECONDS": "2",
}


@attrs.frozen
class Template:
    """A stopped server's data dir with the sleeping config and one document uploaded.

    Prepared once and copied for every scenario: each starts from the same files, and the
    benchmark pays for one set-up instead of four."""

    data_dir: Path
    config_id: str
    document_id: str

    def clone(self, scratch: Path, name: str) -> ServerProcess:
        target = scratch / name / "data"
        shutil.copytree(self.data_dir, target, symlinks=True)
        return ServerProcess(target, scratch / name / "logs", SERVER_ENV)


async def _template(scratch: Path) -> Template:
    workload = build_workload(LoadTestOptions(), scratch / "workload")
    server = ServerProcess(scratch / "template" / "data", scratch / "template" / "logs", SERVER_ENV)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
            config = await http.post(
                f"{PREFIX}/configs",
                files={
                    "package": ("sleep.zip", workload.config_zips["timeout"], "application/zip")
                },
            )
            config.raise_for_status()
            document = await http.post(
                f"{PREFIX}/documents",
                files={"file": ("tiny.xlsx", workload.workbooks["tiny"], XLSX)},
            )
            document.raise_for_status()
    finally:
        await server.stop()
    return Template(server.data_dir, config.json()["id"], document.json()["id"])


async def _seed(
    data_dir: Path, config_id: str, document_id: str, count: int, status: JobStatus
) -> float:
    """Insert ``count`` jobs through the store API; returns the seconds it took."""
    settings = load_settings({}, data_dir=data_dir)
    store = open_store(settings)
    started = time.monotonic()
    document = await store.get_document(WORKSPACE, document_id)
    assert document is not None
    now = utcnow()
    try:
        for index in range(count):
            created = now - timedelta(seconds=count - index)
            finished = status.is_terminal
            job = JobRecord(
                id=new_id("job_"),
                workspace_id=WORKSPACE,
                status=status,
                config_version_id=config_id,
                document_ids=(document_id,),
                runtime_network_access=False,
                attempt=1,
                created_at=created,
                started_at=created if finished else None,
                finished_at=created + timedelta(milliseconds=300) if finished else None,
            )
            if not finished:
                # A queued job has its directory from the moment it was accepted.
                await trio.to_thread.run_sync(create_job_dir, settings, job, [document])
            await store.insert_job(job)
    finally:
        await store.aclose()
    return time.monotonic() - started


async def _latencies(
    server: ServerProcess, config_id: str, document_id: str, submits: int, reads: int
) -> dict[str, Any]:
    rng = random.Random(7)
    body = {"config_version_id": config_id, "document_ids": [document_id]}
    submit_ms: list[float] = []
    status_ms: list[float] = []
    list_ms: list[float] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        listing = await http.get(f"{PREFIX}/jobs", params={"limit": 100})
        listing.raise_for_status()
        known = [job["id"] for job in _items(listing.json())]
        for _ in range(submits):
            started = time.monotonic()
            response = await http.post(f"{PREFIX}/jobs", json=body)
            submit_ms.append((time.monotonic() - started) * 1000)
            if response.status_code != 202:
                raise RuntimeError(f"submit answered {response.status_code}: {response.text[:300]}")
            known.append(response.json()["id"])
        for _ in range(reads):
            job_id = rng.choice(known)
            started = time.monotonic()
            response = await http.get(f"{PREFIX}/jobs/{job_id}")
            status_ms.append((time.monotonic() - started) * 1000)
            response.raise_for_status()
        for index in range(max(reads // 5, 1)):
            params: dict[str, Any] = {"limit": 50}
            if index % 2:
                params["status"] = "success"
            started = time.monotonic()
            response = await http.get(f"{PREFIX}/jobs", params=params)
            list_ms.append((time.monotonic() - started) * 1000)
            response.raise_for_status()
    return {
        "submit_ms": _summary(submit_ms),
        "status_ms": _summary(status_ms),
        "list_ms": _summary(list_ms),
    }


def _items(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, list):
        return body
    for key in ("items", "jobs", "data"):
        if isinstance(body.get(key), list):
            return list(body[key])
    raise RuntimeError(f"cannot find the jobs in the GET /jobs answer: {str(body)[:200]}")


def _summary(values: list[float]) -> dict[str, float | None]:
    summary = summarize(values)
    return {"count": summary.count, "p50": summary.p50, "p99": summary.p99, "max": summary.max}


async def _measure(
    template: Template, scratch: Path, name: str, finished: int, submits: int, reads: int
) -> dict[str, Any]:
    server = template.clone(scratch, name)
    seeded_seconds = 0.0
    if finished:
        seeded_seconds = await _seed(
            server.data_dir, template.config_id, template.document_id, finished, JobStatus.SUCCESS
        )
    await server.start()
    try:
        result = await _latencies(server, template.config_id, template.document_id, submits, reads)
    finally:
        await server.stop()
    result["finished_jobs"] = finished
    result["seed_seconds"] = seeded_seconds
    return result


async def _restart(template: Template, scratch: Path, name: str, queued: int) -> dict[str, Any]:
    server = template.clone(scratch, name)
    seeded_seconds = 0.0
    if queued:
        seeded_seconds = await _seed(
            server.data_dir, template.config_id, template.document_id, queued, JobStatus.QUEUED
        )
    try:
        ready = await server.start()
    finally:
        await server.stop()
    return {"queued_jobs": queued, "ready_seconds": ready, "seed_seconds": seeded_seconds}


async def run(finished: int, queued: int, submits: int, reads: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ade-bench-history-") as name:
        scratch = Path(name)
        template = await _template(scratch)
        empty = await _measure(template, scratch, "empty", 0, submits, reads)
        full = await _measure(template, scratch, "full", finished, submits, reads)
        restart_empty = await _restart(template, scratch, "restart-empty", 0)
        restart_queued = await _restart(template, scratch, "restart-queued", queued)

    def ratio(key: str, stat: str) -> float:
        return float(full[key][stat]) / float(empty[key][stat])

    return {
        "machine": machine_facts(),
        "empty": empty,
        "full": full,
        "restart_empty": restart_empty,
        "restart_queued": restart_queued,
        "ratios": {
            "submit_p50": ratio("submit_ms", "p50"),
            "submit_p99": ratio("submit_ms", "p99"),
            "status_p50": ratio("status_ms", "p50"),
            "status_p99": ratio("status_ms", "p99"),
            "list_p50": ratio("list_ms", "p50"),
            "restart": restart_queued["ready_seconds"] / restart_empty["ready_seconds"],
        },
    }


def render(result: dict[str, Any]) -> str:
    machine, empty, full = result["machine"], result["empty"], result["full"]
    ratios = result["ratios"]
    rows = [
        f"Measured {machine['date']} on {machine['cores']} cores (Python {machine['python']}); "
        f"sequential requests from one client; {full['finished_jobs']:,} finished jobs seeded "
        f"through ade.store in {full['seed_seconds']:.1f} s.",
        "",
        f"| | empty store | {full['finished_jobs']:,} finished jobs | ratio |",
        "|---|---|---|---|",
    ]
    for key, title in (
        ("submit_ms", "submit"),
        ("status_ms", "status GET"),
        ("list_ms", "GET /jobs page"),
    ):
        for stat in ("p50", "p99"):
            rows.append(
                f"| {title} {stat} (ms) | {empty[key][stat]:.2f} | {full[key][stat]:.2f} | "
                f"{float(full[key][stat]) / float(empty[key][stat]):.2f} |"
            )
    restart_empty, restart_queued = result["restart_empty"], result["restart_queued"]
    rows += [
        "",
        "| restart (spawn to first /api/v1/health 200) | seconds |",
        "|---|---|",
        f"| no queued jobs | {restart_empty['ready_seconds']:.2f} |",
        f"| {restart_queued['queued_jobs']:,} queued jobs | "
        f"{restart_queued['ready_seconds']:.2f} |",
        f"| ratio | {ratios['restart']:.2f} |",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--finished", type=int, default=100_000, help="finished jobs to seed")
    parser.add_argument("--queued", type=int, default=10_000, help="queued jobs for the restart")
    parser.add_argument("--submits", type=int, default=200)
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    result = trio.run(run, args.finished, args.queued, args.submits, args.reads)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
