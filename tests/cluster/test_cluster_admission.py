"""Cluster-wide admission and worker-only nodes: concurrent submits on three API-only nodes
never exceed ADE_QUEUE_SIZE (a refused submit persists nothing); an `ade worker` node runs the
queue; draining a node leaves its queued work to the others."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import trio
from support.cluster import (
    API,
    body,
    job_rows,
    running_cluster,
    setup_workspace,
    start_event_node,
    wait_job,
)

from ade.runtime.ending import SHUTDOWN_MESSAGE

QUEUE_SIZE = 5


async def test_concurrent_submits_on_three_nodes_respect_the_bound_then_a_worker_drains(
    tmp_path: Path, postgres_url: str
) -> None:
    async with running_cluster(tmp_path, postgres_url) as cluster:
        for name in ("a", "b", "c"):
            cluster.add(name, "--workers", "0", ADE_QUEUE_SIZE=str(QUEUE_SIZE))
        await cluster.start()
        urls = [cluster.url(name) for name in ("a", "b", "c")]
        async with httpx.AsyncClient(timeout=60) as http:
            config_id, document_id = await setup_workspace(http, urls[0], sleep_seconds=2)
            answers: list[httpx.Response] = []

            async def submit(base: str) -> None:
                answers.append(
                    await http.post(f"{base}{API}/jobs", json=body(config_id, document_id))
                )

            async with trio.open_nursery() as nursery:
                for i in range(45):
                    nursery.start_soon(submit, urls[i % 3])
            accepted = [r for r in answers if r.status_code == 202]
            refused = [r for r in answers if r.status_code == 429]
            assert len(accepted) == QUEUE_SIZE
            assert len(refused) == 45 - QUEUE_SIZE
            for response in refused:
                payload = response.json()
                assert payload["error"]["code"] == "queue_full"
                assert payload["capacity"] == QUEUE_SIZE
                # No job has run anywhere and API-only nodes have no workers: the 1 s default
                # (tests/cluster/test_cluster_queue.py checks real durations).
                assert response.headers["Retry-After"] == "1"
            # Nothing persisted for the refused ones: rows and job directories of the 5 only.
            accepted_ids = sorted(r.json()["id"] for r in accepted)
            assert [row[0] for row in job_rows(postgres_url)] == accepted_ids
            assert sorted(p.name for p in (cluster.data_dir / "jobs").iterdir()) == accepted_ids

            health = (await http.get(f"{urls[1]}/api/v1/health")).json()
            assert health["cluster"]["mode"] == "api"
            assert health["runtime"]["workers"] == 0

            # A worker-only node joins and runs the whole queue.
            await cluster.start_worker("w", ADE_MAX_CONCURRENCY="2")
            for job_id in accepted_ids:
                done = await wait_job(http, urls[2], job_id, {"success", "error"})
                assert done["status"] == "success", done
                assert start_event_node(cluster.data_dir, job_id) == "w"

            # Drain the worker mid-job: its running job ends after the grace period, the
            # jobs still queued stay queued for the cluster, and the next node runs them.
            ids = []
            for _ in range(3):
                response = await http.post(
                    f"{urls[0]}{API}/jobs", json=body(config_id, document_id)
                )
                ids.append(response.json()["id"])
            await wait_job(http, urls[0], ids[0], {"running"})
            await wait_job(http, urls[0], ids[1], {"running"})
            cluster.workers["w"].send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                while cluster.workers["w"].poll() is None:
                    await trio.sleep(0.1)
            assert cluster.workers["w"].returncode == 0
            ended = [(await http.get(f"{urls[0]}{API}/jobs/{i}")).json() for i in ids[:2]]
            for job in ended:
                assert job["status"] in ("success", "error")
                if job["status"] == "error":
                    assert job["error_message"] == SHUTDOWN_MESSAGE
            assert (await http.get(f"{urls[0]}{API}/jobs/{ids[2]}")).json()["status"] == "queued"
            await cluster.start_worker("w2")
            done = await wait_job(http, urls[1], ids[2], {"success", "error"})
            assert done["status"] == "success"
            assert start_event_node(cluster.data_dir, ids[2]) == "w2"
