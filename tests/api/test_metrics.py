"""``GET /metrics`` and the request id over a real socket: what a scrape reports after real
jobs, refusals and requests, who may scrape, and the X-Request-Id that reaches a job's events."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families
from support.api import make_settings, package_zip, start_service, wait_for_status, workbook_bytes

from ade.client import open_websocket


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


JOBS = "/api/v1/workspaces/{workspace_id}/jobs"


async def test_a_scrape_reports_jobs_refusals_requests_and_layers(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", max_concurrency=1, queue_size=1)
    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, settings)
        async with httpx.AsyncClient(base_url=service.api, timeout=30) as http:
            config = (
                await http.post(
                    "/configs",
                    files={"package": ("p.zip", package_zip(sleep_seconds=1.0), "application/zip")},
                )
            ).json()
            document = (
                await http.post("/documents", files={"file": ("m.xlsx", workbook_bytes())})
            ).json()
            body = {"config_version_id": config["id"], "document_ids": [document["id"]]}
            first = (await http.post("/jobs", json=body)).json()
            await wait_for_status(http, f"/jobs/{first['id']}", {"running"})
            second = (await http.post("/jobs", json=body)).json()
            refused = await http.post("/jobs", json=body)
            assert refused.status_code == 429
            for job in (first, second):
                await wait_for_status(http, f"/jobs/{job['id']}", {"success"})
            await http.get("/jobs/not-a-job-0000")  # a 404 on a templated route
            await http.get(f"{service.url}/no/such/route/{document['id']}")  # unmatched
            # An invented method is labelled OTHER: clients cannot grow the label space.
            invented = await http.request("BREW", f"{service.url}/metrics")
            assert invented.status_code == 405

            ws_url = service.api.replace("http://", "ws://") + "/events"
            async with open_websocket(ws_url):
                with trio.fail_after(10):
                    while (
                        "ade_websocket_subscribers 1.0"
                        not in (await http.get(f"{service.url}/metrics")).text
                    ):
                        await trio.sleep(0.05)
            # A websocket is counted when it closes (its duration is the connection's life).
            with trio.fail_after(10):
                while True:
                    scrape = await http.get(f"{service.url}/metrics")
                    if 'method="WEBSOCKET"' in scrape.text:
                        break
                    await trio.sleep(0.05)
        service.stop.set()

    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = _samples(scrape.text)
    assert _value(samples, "ade_jobs_finished_total", status="success", workspace="default") == 2
    assert _value(samples, "ade_job_duration_seconds_count") == 2
    assert _value(samples, "ade_job_duration_seconds_sum") >= 2.0  # two jobs sleeping 1 s
    assert _value(samples, "ade_job_queue_wait_seconds_count") == 2
    assert _value(samples, "ade_admission_refusals_total") == 1
    assert _value(samples, "ade_worker_process_restarts_total") == 0
    assert _value(samples, "ade_jobs_queued") == 0
    assert _value(samples, "ade_jobs_running") == 0
    assert _value(samples, "ade_queue_capacity") == 1
    assert _value(samples, "ade_workers") == 1
    assert _value(samples, "ade_jobs", status="success") == 2
    assert _value(samples, "ade_websocket_subscribers") == 0
    assert _value(samples, "ade_sandbox_layer", layer="rlimits") == 1
    assert _value(samples, "ade_store_call_duration_seconds_count", store="sqlite") > 0
    assert _value(samples, "ade_data_dir_bytes") > 0
    requests = {
        (labels["route"], labels["method"], labels["status"]): value
        for (name, label_items), value in samples.items()
        if name == "ade_http_requests_total"
        for labels in [dict(label_items)]
    }
    assert requests[(JOBS, "POST", "202")] == 2
    assert requests[(JOBS, "POST", "429")] == 1
    assert requests[(JOBS + "/{job_id}", "GET", "404")] == 1
    assert requests[("unmatched", "GET", "404")] == 1
    assert requests[("unmatched", "OTHER", "405")] == 1
    assert "BREW" not in scrape.text
    assert requests[("/api/v1/workspaces/{workspace_id}/events", "WEBSOCKET", "101")] == 1
    # Route labels are templates, never a raw path: no id appears in any label.
    routes = {route for route, _, _ in requests}
    assert all(route == "unmatched" or "{" in route or route.count("/") <= 3 for route in routes)
    assert document["id"] not in scrape.text and first["id"] not in scrape.text
    assert (
        _value(samples, "ade_http_request_duration_seconds_count", route=JOBS, method="POST") == 3
    )


async def test_a_request_id_is_returned_and_carried_into_the_job_events(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, settings)
        async with httpx.AsyncClient(base_url=service.api, timeout=30) as http:
            config = (
                await http.post(
                    "/configs", files={"package": ("p.zip", package_zip(), "application/zip")}
                )
            ).json()
            document = (
                await http.post("/documents", files={"file": ("m.xlsx", workbook_bytes())})
            ).json()
            body = {"config_version_id": config["id"], "document_ids": [document["id"]]}
            accepted = await http.post(
                "/jobs", json=body, headers={"X-Request-Id": "trace-7f3a.b:01"}
            )
            assert accepted.headers["x-request-id"] == "trace-7f3a.b:01"
            job = await wait_for_status(http, f"/jobs/{accepted.json()['id']}", {"success"})
            # An id that is not sane (spaces, too long) is replaced by one of ours.
            for bad in ("has spaces", "x" * 200, "<script>"):
                answer = await http.get("/jobs", headers={"X-Request-Id": bad})
                assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"])
            ours = await http.get("/jobs")
            assert re.fullmatch(r"[0-9a-f]{32}", ours.headers["x-request-id"])
            # Layers outside the app answer with an id too (an unknown route, a websocket).
            assert "x-request-id" in (await http.get(f"{service.url}/nope")).headers
        service.stop.set()
    events = [
        json.loads(line)
        for line in (settings.jobs_dir / job["id"] / "events.ndjson").read_text().splitlines()
    ]
    assert events[0]["type"] == "enqueue"
    assert events[0]["detail"]["request_id"] == "trace-7f3a.b:01"


def _outward_address() -> str:
    """This machine's address on its network interface (not loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        address: str = probe.getsockname()[0]
    assert not address.startswith("127."), "the machine needs a non-loopback IPv4 address"
    return address


async def test_without_a_token_only_loopback_may_scrape(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", host="0.0.0.0")
    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, settings)
        port = service.url.rsplit(":", 1)[1]
        async with httpx.AsyncClient(timeout=30) as http:
            local = await http.get(f"http://127.0.0.1:{port}/metrics")
            outside = await http.get(f"http://{_outward_address()}:{port}/metrics")
        service.stop.set()
    assert local.status_code == 200
    assert "ade_jobs_queued" in local.text
    assert outside.status_code == 403
    assert outside.json()["error"]["code"] == "forbidden"
    assert "ADE_METRICS_TOKEN" in outside.json()["error"]["message"]


async def test_with_a_token_every_client_must_send_it(tmp_path: Path) -> None:
    token = "scrape-sentinel-9d2e41c7"
    settings = make_settings(tmp_path / "data", host="0.0.0.0", metrics_token=token)
    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, settings)
        port = service.url.rsplit(":", 1)[1]
        outside = f"http://{_outward_address()}:{port}/metrics"
        async with httpx.AsyncClient(timeout=30) as http:
            missing = await http.get(f"http://127.0.0.1:{port}/metrics")  # loopback too
            wrong = await http.get(outside, headers={"Authorization": f"Bearer {token}x"})
            basic = await http.get(outside, headers={"Authorization": f"Basic {token}"})
            right = await http.get(outside, headers={"Authorization": f"Bearer {token}"})
        service.stop.set()
    for refused in (missing, wrong, basic):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="ade-metrics"'
        assert refused.json()["error"]["code"] == "unauthorized"
        assert token not in refused.text
    assert right.status_code == 200
    assert "ade_http_requests_total" in right.text
    assert token not in right.text
