"""Three real nodes (`ade serve` processes) sharing one PostgreSQL database and one data
directory: work spreads over all of them, events follow a job across nodes (live, and replayed
with `?after=`), cancel / retry / Idempotency-Key work across nodes, and `ade nodes list` shows
them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import trio
from support.cluster import (
    API,
    LEASE_SECONDS,
    body,
    job_rows,
    running_cluster,
    setup_workspace,
    start_event_node,
    wait_job,
)

from ade.client import open_websocket


async def follow(node_url: str, job_id: str, query: str = "") -> list[dict[str, object]]:
    """A job's events over a websocket on ``node_url``, up to its terminal event."""
    events = []
    ws_url = node_url.replace("http://", "ws://") + f"{API}/jobs/{job_id}/events{query}"
    with trio.fail_after(30):
        async with open_websocket(ws_url) as ws:
            while True:
                event = json.loads(await ws.get_message())
                events.append(event)
                if event["type"] in ("finish", "error", "cancel"):
                    return events


async def test_three_nodes_share_the_queue_and_stream_each_others_events(
    tmp_path: Path, postgres_url: str
) -> None:
    async with running_cluster(tmp_path, postgres_url) as cluster:
        for name in ("a", "b", "c"):
            cluster.add(name)
        await cluster.start()
        a, b, c = cluster.url("a"), cluster.url("b"), cluster.url("c")
        async with httpx.AsyncClient(timeout=30) as http:
            config_id, document_id = await setup_workspace(http, a, sleep_seconds=2)
            # Three slow jobs submitted to A: one worker per node, so each node runs one.
            ids = []
            for _ in range(3):
                response = await http.post(f"{a}{API}/jobs", json=body(config_id, document_id))
                assert response.status_code == 202, response.text
                ids.append(response.json()["id"])
            with trio.fail_after(30):
                # The claim marks a job running; its start event (naming the node) follows.
                while (
                    None
                    in (
                        nodes_of := {i: start_event_node(cluster.data_dir, i) for i in ids}
                    ).values()
                ):
                    await trio.sleep(0.05)
            assert sorted(nodes_of.values()) == ["a", "b", "c"], nodes_of

            # A websocket on A follows the job running on C, live, to its end.
            on_c = next(job_id for job_id, node in nodes_of.items() if node == "c")
            events = await follow(a, on_c)
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
            assert events[0]["type"] == "enqueue"
            assert events[-1]["type"] == "finish"
            assert {"start", "finish"} <= {e["type"] for e in events}
            # `?after=` replays the same events on yet another node, as on one node.
            assert await follow(b, on_c, "?after=2") == events[2:]
            for job_id in ids:
                done = await wait_job(http, b, job_id, {"success", "error"})
                assert done["status"] == "success", done

            # Health on any node lists the three, alive, with their modes.
            health = (await http.get(f"{b}/api/v1/health")).json()
            cluster_view = health["cluster"]
            assert cluster_view["node_id"] == "b"
            assert cluster_view["lease_seconds"] == LEASE_SECONDS
            with trio.fail_after(10):
                while len(cluster_view["nodes"]) < 3:
                    await trio.sleep(0.3)
                    health = (await http.get(f"{b}/api/v1/health")).json()
                    cluster_view = health["cluster"]
            assert [(n["id"], n["mode"], n["alive"]) for n in cluster_view["nodes"]] == [
                ("a", "serve", True),
                ("b", "serve", True),
                ("c", "serve", True),
            ]
            assert health["runtime"]["totals"]["success"] >= 0

            # Idempotency-Key: the same submit replayed on another node is the same job.
            key = {"Idempotency-Key": "across-nodes"}
            first = await http.post(
                f"{a}{API}/jobs", json=body(config_id, document_id), headers=key
            )
            replay = await http.post(
                f"{c}{API}/jobs", json=body(config_id, document_id), headers=key
            )
            assert first.status_code == replay.status_code == 202
            assert replay.headers["Idempotent-Replayed"] == "true"
            assert replay.json()["id"] == first.json()["id"]
            running = await wait_job(http, a, first.json()["id"], {"running"})

            # Cancel through a node that does not run it; the runner stops it.
            runner = start_event_node(cluster.data_dir, running["id"])
            other = next(n for n in ("a", "b", "c") if n != runner)
            cancelled = await http.post(f"{cluster.url(other)}{API}/jobs/{running['id']}/cancel")
            assert cancelled.status_code == 202, cancelled.text
            assert cancelled.json()["status"] == "cancelled"
            # Retry on yet another node: attempt 2, runs to success somewhere.
            retried = await http.post(f"{b}{API}/jobs/{running['id']}/retry")
            assert retried.status_code == 202
            assert retried.json()["attempt"] == 2
            done = await wait_job(http, c, retried.json()["id"], {"success", "error"})
            assert done["status"] == "success"

            # The same new key on two nodes at the same moment: one job, the other replays.
            raced: list[httpx.Response] = []

            async def post(base: str) -> None:
                raced.append(
                    await http.post(
                        f"{base}{API}/jobs",
                        json=body(config_id, document_id),
                        headers={"Idempotency-Key": "race-across-nodes"},
                    )
                )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(post, a)
                nursery.start_soon(post, c)
            assert [r.status_code for r in raced] == [202, 202]
            assert raced[0].json()["id"] == raced[1].json()["id"]
            assert sorted(r.headers.get("Idempotent-Replayed", "") for r in raced) == ["", "true"]
            await wait_job(http, b, raced[0].json()["id"], {"success"})

    # Every job ended; none is left running or queued.
    statuses = {status for _, status, _ in job_rows(postgres_url)}
    assert statuses <= {"success", "cancelled"}

    listing = subprocess.run(
        [sys.executable, "-m", "ade.cli", "nodes", "list"],
        env={**os.environ, "ADE_DATABASE_URL": postgres_url, "ADE_LEASE_SECONDS": "2"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["ID", "HOST", "MODE", "WORKERS", "RUNNING", "HEARTBEAT", "STATE"]
    rows = [line.split() for line in lines[1:]]
    assert [row[0] for row in rows] == ["a", "b", "c"]
    # host, mode, workers, running (0 once stopped), "<seconds> s ago", state
    host = socket.gethostname()
    for row in rows:
        assert row[1:5] == [host, "serve", "1", "0"], row
        assert float(row[5]) >= 0 and row[6:] == ["s", "ago", "stopped"], row
