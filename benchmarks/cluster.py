"""Cluster benchmarks on PostgreSQL (docs/benchmarks.md, "Several nodes on PostgreSQL").

    .venv/bin/python benchmarks/cluster.py                  # full: 1M finished jobs, 10k queued
    .venv/bin/python benchmarks/cluster.py --quick          # a minute: 20k finished, 2k queued

Needs a PostgreSQL server (``--postgres-url``, default the machine's own, trust auth); every
scenario runs on a database of its own, created and dropped here.

1. **Claim throughput**: ``--claim-jobs`` trivial queued jobs (no engine: a claim, then the
   fenced update that records success) drained by 1, 2 and 3 node processes with 2 claim loops
   each, exactly the statements a node runs (``ClusterQueue.claim``,
   ``PostgresStore.update_job``). Jobs/s and claim latency p50/p99 per node count.
2. **Submit latency, PostgreSQL vs SQLite**: one ``ade serve`` on each store, same machine, same
   run, sequential submits from one client (each latency is the server's alone).
3. **History scale**: submit and status latency on a PostgreSQL node with ``--finished``
   finished jobs in the database (seeded with COPY) against an empty database; then, with
   ``--queued`` queued jobs against none: start-up time (spawn to first /api/v1/health 200),
   rescue time (spawn until the ``--dead-jobs`` running jobs of a dead node are recorded
   ``error``) and claim latency.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import psycopg
import trio
from history import SERVER_ENV, Template, _latencies, _summary, _template

from ade.cluster.queue import ClusterQueue
from ade.ids import new_id
from ade.loadtest import machine_facts
from ade.models import JobStatus
from ade.serde import utcnow
from ade.store.postgres import PostgresStore, connect, migrate_postgres

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
CLAIM_LOOPS_PER_NODE = 2


# -- databases ---------------------------------------------------------------------------------


class Database:
    def __init__(self, admin_url: str, label: str) -> None:
        import secrets
        import urllib.parse

        self.admin_url = admin_url
        self.name = f"ade_bench_{label}_{secrets.token_hex(3)}"
        self.url = urllib.parse.urlsplit(admin_url)._replace(path=f"/{self.name}").geturl()

    def __enter__(self) -> Database:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        with connect(self.url) as conn:
            migrate_postgres(conn)
        return self

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def seed_jobs(url: str, count: int, status: JobStatus, config_id: str, document_id: str) -> float:
    """COPY ``count`` jobs in ``status`` into the database; seconds taken."""
    started = time.monotonic()
    now = utcnow()
    finished = status.is_terminal
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        with cursor.copy(
            "COPY jobs (id, workspace_id, status, config_version_id, document_ids, "
            "runtime_network_access, attempt, created_at, started_at, finished_at, "
            "sandbox_layers) FROM STDIN"
        ) as copy:
            for index in range(count):
                created = now - timedelta(seconds=count - index)
                copy.write_row(
                    (
                        new_id("job_"),
                        "default",
                        status.value,
                        config_id,
                        [document_id],
                        False,
                        1,
                        created,
                        created if finished else None,
                        created + timedelta(milliseconds=300) if finished else None,
                        [],
                    )
                )
        conn.execute("ANALYZE jobs")
    return time.monotonic() - started


# -- 1. claim throughput -------------------------------------------------------------------------


def _claiming_node(url: str, node_id: str, results: Any) -> None:
    """One node process: claim loops that record each claimed job successful at once."""

    async def main() -> list[float]:
        store = PostgresStore(url, pool_size=CLAIM_LOOPS_PER_NODE + 1)
        queue = ClusterQueue(store, node_id, lease_seconds=30)
        latencies: list[float] = []

        async def loop() -> None:
            while True:
                started = time.perf_counter()
                claim = await queue.claim()
                latencies.append((time.perf_counter() - started) * 1000)
                if claim is None:
                    return
                done = attrs.evolve(claim.job, status=JobStatus.SUCCESS, finished_at=utcnow())
                await store.update_job(done, expected=JobStatus.RUNNING)

        try:
            async with trio.open_nursery() as nursery:
                for _ in range(CLAIM_LOOPS_PER_NODE):
                    nursery.start_soon(loop)
        finally:
            store.close()
        return latencies[:-CLAIM_LOOPS_PER_NODE]  # the final empty claims are not work

    try:
        results.put(trio.run(main))
    except BaseException as exc:
        # The parent waits for one answer per node: a failure must be one too.
        results.put(f"node {node_id} failed: {type(exc).__name__}: {exc}")
        raise


def claim_throughput(admin_url: str, nodes: int, jobs: int) -> dict[str, Any]:
    with Database(admin_url, f"claim{nodes}") as db:
        seed_jobs(db.url, jobs, JobStatus.QUEUED, "cfg", "doc")
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        processes = [
            context.Process(target=_claiming_node, args=(db.url, f"n{i}", results))
            for i in range(nodes)
        ]
        started = time.monotonic()
        for process in processes:
            process.start()
        latencies: list[float] = []
        for _ in processes:
            answer = results.get(timeout=600)
            if isinstance(answer, str):
                raise RuntimeError(answer)
            latencies.extend(answer)
        for process in processes:
            process.join()
        # Wall time includes the processes' start-up (~0.3 s each, in parallel): conservative.
        seconds = time.monotonic() - started
        with psycopg.connect(db.url) as conn:
            row = conn.execute("SELECT count(*) FROM jobs WHERE status = 'success'").fetchone()
        done = int(row[0]) if row else 0
    if done != jobs:
        raise RuntimeError(f"{nodes} node(s) finished {done} of {jobs} jobs")
    return {
        "nodes": nodes,
        "jobs": jobs,
        "seconds": seconds,
        "jobs_per_second": jobs / seconds,
        "claim_ms": _summary(latencies),
    }


# -- 2. and 3. latency through real nodes ------------------------------------------------------


async def _node_latencies(
    template: Template,
    scratch: Path,
    name: str,
    database_url: str | None,
    submits: int,
    reads: int,
    seed: tuple[int, JobStatus] | None = None,
) -> dict[str, Any]:
    server = template.clone(scratch, name)
    env = {**SERVER_ENV}
    seeded = 0.0
    if database_url is not None:
        env.update({"ADE_DATABASE_URL": database_url, "ADE_NODE_ID": name})
        # The template's config and document rows live in its SQLite file: copy them over.
        _copy_catalog(server.data_dir, database_url)
        if seed is not None:
            seeded = seed_jobs(
                database_url, seed[0], seed[1], template.config_id, template.document_id
            )
    server.extra_env = env
    ready = await server.start()
    try:
        result = await _latencies(server, template.config_id, template.document_id, submits, reads)
    finally:
        await server.stop()
    result["ready_seconds"] = ready
    result["seed_seconds"] = seeded
    return result


def _copy_catalog(data_dir: Path, database_url: str) -> None:
    import sqlite3

    source = sqlite3.connect(data_dir / "ade.sqlite")
    try:
        documents = source.execute(
            "SELECT workspace_id, id, filename, size, sha256, created_at FROM documents"
        ).fetchall()
        configs = source.execute(
            "SELECT workspace_id, id, title, version, content_hash, created_at, "
            "runtime_network_access FROM config_versions"
        ).fetchall()
    finally:
        source.close()
    with psycopg.connect(database_url) as conn:
        for row in documents:
            conn.execute("INSERT INTO documents VALUES (%s, %s, %s, %s, %s, %s)", row)
        for row in configs:
            conn.execute(
                "INSERT INTO config_versions VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (*row[:6], bool(row[6])),
            )


def seed_dead_node_jobs(url: str, count: int, config_id: str, document_id: str) -> None:
    """``count`` jobs left running by a node that stopped heartbeating a minute ago."""
    with psycopg.connect(url) as conn:
        for _ in range(count):
            conn.execute(
                "INSERT INTO jobs (id, workspace_id, status, config_version_id, document_ids, "
                "runtime_network_access, attempt, created_at, started_at, sandbox_layers, "
                "node_id, lease_token, lease_expires_at) VALUES (%s, 'default', 'running', %s, "
                "%s, false, 1, now(), now(), '{}', 'dead', nextval('job_lease_tokens'), "
                "now() - interval '1 minute')",
                (new_id("job_"), config_id, [document_id]),
            )


async def _restart_and_rescue(
    template: Template, scratch: Path, name: str, url: str, queued: int, dead_jobs: int
) -> dict[str, Any]:
    """Start an API-only node on a database with ``queued`` queued jobs and ``dead_jobs``
    jobs of a dead node: seconds to its first /health 200, and until it rescued them all."""
    server = template.clone(scratch, name)
    _copy_catalog(server.data_dir, url)
    if queued:
        seed_jobs(url, queued, JobStatus.QUEUED, template.config_id, template.document_id)
    seed_dead_node_jobs(url, dead_jobs, template.config_id, template.document_id)
    server.extra_env = {**SERVER_ENV, "ADE_DATABASE_URL": url, "ADE_NODE_ID": name}
    server.args = ("--workers", "0")  # nothing claims the queue: every start sees it whole
    started = time.monotonic()
    ready = await server.start()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            while True:
                row = conn.execute("SELECT count(*) FROM jobs WHERE status = 'running'").fetchone()
                if row is not None and row[0] == 0:
                    break
                await trio.sleep(0.01)
        rescued = time.monotonic() - started
    finally:
        await server.stop()
    return {
        "queued": queued,
        "dead_jobs": dead_jobs,
        "ready_seconds": ready,
        "rescue_seconds": rescued,
    }


async def _claim_latency(url: str, probes: int) -> dict[str, Any]:
    """Claim latency of one node while the queue holds what was seeded (claims are rolled
    back by re-queueing, so every probe sees the same queue)."""
    store = PostgresStore(url, pool_size=2)
    queue = ClusterQueue(store, "probe", lease_seconds=30)
    latencies: list[float] = []
    try:
        for _ in range(probes):
            started = time.perf_counter()
            claim = await queue.claim()
            latencies.append((time.perf_counter() - started) * 1000)
            assert claim is not None
            job_id = claim.job.id
            await store.run(
                lambda conn, job_id=job_id: conn.execute(
                    "UPDATE jobs SET status = 'queued', node_id = NULL WHERE id = %s", (job_id,)
                )
            )
    finally:
        store.close()
    return _summary(latencies)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"machine": machine_facts()}
    result["claims"] = [
        await trio.to_thread.run_sync(claim_throughput, args.postgres_url, nodes, args.claim_jobs)
        for nodes in (1, 2, 3)
    ]
    with tempfile.TemporaryDirectory(prefix="ade-bench-cluster-") as name:
        scratch = Path(name)
        template = await _template(scratch)
        sqlite = await _node_latencies(template, scratch, "sqlite", None, args.submits, args.reads)
        with Database(args.postgres_url, "empty") as empty_db:
            empty = await _node_latencies(
                template, scratch, "pg-empty", empty_db.url, args.submits, args.reads
            )
            empty_claims = await _claim_latency_with(empty_db.url, 1, args.probes)
        with Database(args.postgres_url, "history") as full_db:
            full = await _node_latencies(
                template,
                scratch,
                "pg-history",
                full_db.url,
                args.submits,
                args.reads,
                seed=(args.finished, JobStatus.SUCCESS),
            )
        with Database(args.postgres_url, "restart") as restart_db:
            restart = await _restart_and_rescue(
                template, scratch, "pg-restart", restart_db.url, 0, args.dead_jobs
            )
        with Database(args.postgres_url, "queued") as queued_db:
            queued = await _restart_and_rescue(
                template, scratch, "pg-queued", queued_db.url, args.queued, args.dead_jobs
            )
            queued_claims = await _claim_latency(queued_db.url, args.probes)
    result["sqlite"] = sqlite
    result["postgres_empty"] = empty
    result["postgres_history"] = full
    result["restart_empty"] = restart
    result["restart_queued"] = queued
    result["claim_empty_queue_ms"] = empty_claims
    result["claim_queued_ms"] = queued_claims
    result["settings"] = vars(args) | {"postgres_url": "(not shown)"}
    return result


async def _claim_latency_with(url: str, queued: int, probes: int) -> dict[str, Any]:
    seed_jobs(url, queued, JobStatus.QUEUED, "cfg", "doc")
    return await _claim_latency(url, probes)


def render(result: dict[str, Any]) -> str:
    machine = result["machine"]
    rows = [
        f"Measured {machine['date']} on {machine['cores']} cores (Python {machine['python']}), "
        "PostgreSQL on the same machine.",
        "",
        f"Claim throughput: {result['claims'][0]['jobs']:,} trivial jobs (claim + fenced "
        f"success update, no engine), {CLAIM_LOOPS_PER_NODE} claim loops per node process:",
        "",
        "| nodes | jobs/s | claim p50 (ms) | claim p99 (ms) |",
        "|---|---|---|---|",
    ]
    for claim in result["claims"]:
        rows.append(
            f"| {claim['nodes']} | {claim['jobs_per_second']:.0f} | "
            f"{claim['claim_ms']['p50']:.2f} | {claim['claim_ms']['p99']:.2f} |"
        )
    sqlite, empty, full = result["sqlite"], result["postgres_empty"], result["postgres_history"]
    rows += [
        "",
        "Sequential requests from one client to one node:",
        "",
        f"| | SQLite | PostgreSQL, empty | PostgreSQL, {result['settings']['finished']:,} "
        "finished jobs | history / empty |",
        "|---|---|---|---|---|",
    ]
    for key, title in (("submit_ms", "submit"), ("status_ms", "status GET")):
        for stat in ("p50", "p99"):
            rows.append(
                f"| {title} {stat} (ms) | {sqlite[key][stat]:.2f} | {empty[key][stat]:.2f} | "
                f"{full[key][stat]:.2f} | {float(full[key][stat]) / float(empty[key][stat]):.2f} |"
            )
    restart, queued = result["restart_empty"], result["restart_queued"]
    rows += [
        "",
        f"A node starting with {restart['dead_jobs']} jobs of a dead node in the database "
        "(rescue: fenced and recorded `error`):",
        "",
        f"| PostgreSQL node | no queued jobs | {queued['queued']:,} queued jobs | ratio |",
        "|---|---|---|---|",
        f"| start-up, spawn to first /health 200 (s) | {restart['ready_seconds']:.2f} | "
        f"{queued['ready_seconds']:.2f} | "
        f"{queued['ready_seconds'] / restart['ready_seconds']:.2f} |",
        f"| spawn to every dead node's job rescued (s) | {restart['rescue_seconds']:.2f} | "
        f"{queued['rescue_seconds']:.2f} | "
        f"{queued['rescue_seconds'] / restart['rescue_seconds']:.2f} |",
        f"| claim p50 (ms) | {result['claim_empty_queue_ms']['p50']:.2f} | "
        f"{result['claim_queued_ms']['p50']:.2f} | "
        f"{result['claim_queued_ms']['p50'] / result['claim_empty_queue_ms']['p50']:.2f} |",
        f"| claim p99 (ms) | {result['claim_empty_queue_ms']['p99']:.2f} | "
        f"{result['claim_queued_ms']['p99']:.2f} | "
        f"{result['claim_queued_ms']['p99'] / result['claim_empty_queue_ms']['p99']:.2f} |",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--quick", action="store_true", help="small sizes: about a minute")
    parser.add_argument("--claim-jobs", type=int, default=3000)
    parser.add_argument("--finished", type=int, default=1_000_000)
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--submits", type=int, default=200)
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--dead-jobs", type=int, default=100, help="running jobs of a dead node")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.claim_jobs, args.finished, args.queued = 600, 20_000, 2_000
        args.submits, args.reads, args.probes, args.dead_jobs = 50, 100, 50, 20
    result = trio.run(run, args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
