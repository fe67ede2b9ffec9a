"""A node dies (SIGKILL) or stalls (SIGSTOP) mid-job: after the lease its job ends `error`
naming the node, its queued work runs elsewhere, nothing stays running, no process is left;
a node restarted under the same id does not resurrect the job, and a stalled node that comes
back cannot write the job it lost."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import trio
from support.cluster import (
    API,
    LEASE_SECONDS,
    body,
    events_of,
    job_rows,
    running_cluster,
    setup_workspace,
    start_event_node,
    wait_job,
)

from ade.loadtest._server import worker_processes


async def test_a_killed_node_s_job_is_rescued_and_never_resurrected(
    tmp_path: Path, postgres_url: str
) -> None:
    async with running_cluster(tmp_path, postgres_url) as cluster:
        for name in ("a", "b", "c"):
            cluster.add(name)
        await cluster.start()
        a = cluster.url("a")
        async with httpx.AsyncClient(timeout=30) as http:
            config_id, document_id = await setup_workspace(http, a, sleep_seconds=3)
            ids = []
            for _ in range(5):
                response = await http.post(f"{a}{API}/jobs", json=body(config_id, document_id))
                assert response.status_code == 202
                ids.append(response.json()["id"])
            # Three run (one per node), two wait in the queue.
            with trio.fail_after(30):
                while sum(1 for _, s, _ in job_rows(postgres_url) if s == "running") < 3:
                    await trio.sleep(0.05)
            victim = next(
                job_id for job_id in ids[:3] if start_event_node(cluster.data_dir, job_id) == "c"
            )
            cluster.nodes["c"].kill()  # SIGKILL, mid-job

            # After the lease (plus a heartbeat round) a survivor records it interrupted.
            failed = await wait_job(
                http, a, victim, {"error", "success"}, timeout=LEASE_SECONDS + 15
            )
            assert failed["status"] == "error"
            assert failed["error_message"] == (
                "interrupted: node c stopped responding; retry to run again"
            )
            assert failed["limit"] == "node_lost"
            tail = events_of(cluster.data_dir, victim)[-2:]
            assert [e["type"] for e in tail] == ["recovery", "error"]
            assert tail[0]["detail"] == {"action": "interrupted", "was": "running", "node": "c"}
            # The queued work runs on the survivors.
            for job_id in ids:
                if job_id != victim:
                    done = await wait_job(http, a, job_id, {"success", "error"})
                    assert done["status"] == "success", done
                    assert start_event_node(cluster.data_dir, job_id) in ("a", "b", "c")
            assert {s for _, s, _ in job_rows(postgres_url)} == {"success", "error"}
            # The killed node's job process was killed by the rescuer (same machine).
            with trio.fail_after(10):
                while worker_processes(cluster.data_dir):
                    await trio.sleep(0.1)

            # C comes back under the same id: it registers, and the fenced job stays ended.
            before = events_of(cluster.data_dir, victim)
            await cluster.start("c")
            await trio.sleep(LEASE_SECONDS)
            again = (await http.get(f"{cluster.url('c')}{API}/jobs/{victim}")).json()
            assert again == failed
            assert events_of(cluster.data_dir, victim) == before
            health = (await http.get(f"{a}/api/v1/health")).json()
            with trio.fail_after(10):
                while not all(n["alive"] for n in health["cluster"]["nodes"]):
                    await trio.sleep(0.3)
                    health = (await http.get(f"{a}/api/v1/health")).json()


async def test_a_stalled_node_that_comes_back_cannot_write_the_job_it_lost(
    tmp_path: Path, postgres_url: str
) -> None:
    async with running_cluster(tmp_path, postgres_url) as cluster:
        cluster.add("a")
        cluster.add("b")
        await cluster.start()
        a = cluster.url("a")
        async with httpx.AsyncClient(timeout=30) as http:
            config_id, document_id = await setup_workspace(http, a, sleep_seconds=2)
            response = await http.post(f"{a}{API}/jobs", json=body(config_id, document_id))
            job_id = response.json()["id"]
            await wait_job(http, a, job_id, {"running"})
            with trio.fail_after(10):
                while (runner := start_event_node(cluster.data_dir, job_id)) is None:
                    await trio.sleep(0.05)
            survivor = "b" if runner == "a" else "a"
            process = cluster.nodes[runner].process
            assert process is not None
            os.kill(process.pid, signal.SIGSTOP)  # the node stalls; its job child runs on
            try:
                failed = await wait_job(
                    http, cluster.url(survivor), job_id, {"error"}, timeout=LEASE_SECONDS + 15
                )
            finally:
                os.kill(process.pid, signal.SIGCONT)
            assert failed["error_message"] == (
                f"interrupted: node {runner} stopped responding; retry to run again"
            )
            # The stalled node resumes: its job finishes or is stopped there, but nothing it
            # does reaches the store or the log any more.
            await trio.sleep(LEASE_SECONDS + 3)
            final = (await http.get(f"{cluster.url(runner)}{API}/jobs/{job_id}")).json()
            assert final == failed
            events = events_of(cluster.data_dir, job_id)
            assert events[-1]["type"] == "error"
            assert "finish" not in [e["type"] for e in events]
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
