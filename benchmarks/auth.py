"""Auth benchmark: what checking the API key costs on the status GET path.

    .venv/bin/python benchmarks/auth.py                  # 50 clients, 5 rounds of 2 x 8 s
    .venv/bin/python benchmarks/auth.py --seconds 2 --rounds 2   # quick mode (tests, smoke runs)

Two ``ade serve`` processes run side by side in the same run: one with keys on (the default; the
clients send the admin key as ``Authorization: Bearer``), one with ADE_AUTH=disabled. Each holds
one finished job. Every round drives each server in turn (order swapped every round, so a change
in the shared machine's load hits both alike) with C clients looping ``GET .../jobs/{id}``; the
figure per server is the median of its rounds' requests/s. The cost of the check is
``1 - on / off`` from the median of the per-round ratios (each round's two slices run back to
back, so a ratio compares like with like even when the machine's load drifts between rounds);
the ratio of the two medians is reported next to it. Target: <= 5 %.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from ade.loadtest import LoadTestOptions, ServerProcess, build_workload, machine_facts
from ade.wire import XLSX_MEDIA_TYPE

PREFIX = "/api/v1/workspaces/default"


async def _seed(server: ServerProcess, scratch: Path, headers: dict[str, str]) -> str:
    """One finished job on ``server``; its id."""
    workload = build_workload(LoadTestOptions(), scratch / "workload")
    async with httpx.AsyncClient(base_url=server.url, timeout=60.0, headers=headers) as http:
        config = await http.post(
            f"{PREFIX}/configs",
            files={"package": ("ok.zip", workload.config_zips["ok"], "application/zip")},
        )
        config.raise_for_status()
        document = await http.post(
            f"{PREFIX}/documents",
            files={"file": ("tiny.xlsx", workload.workbooks["tiny"], XLSX_MEDIA_TYPE)},
        )
        document.raise_for_status()
        body = {"config_version_id": config.json()["id"], "document_ids": [document.json()["id"]]}
        job = await http.post(f"{PREFIX}/jobs", json=body)
        job.raise_for_status()
        job_id = str(job.json()["id"])
        with trio.fail_after(60):
            while (await http.get(f"{PREFIX}/jobs/{job_id}")).json()["status"] in (
                "queued",
                "running",
            ):
                await trio.sleep(0.1)
    return job_id


async def _slice(
    url: str, job_id: str, headers: dict[str, str], clients: int, seconds: float
) -> float:
    """Requests/s of ``clients`` clients reading the job's status for ``seconds``; every answer
    must be a 200 (a 401 would measure the refusal path, not the check)."""
    tls = ssl.create_default_context()
    done = 0
    codes: dict[int, int] = {}
    async with contextlib.AsyncExitStack() as stack:
        pool = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, verify=tls, timeout=60, headers=headers)
            )
            for _ in range(clients)
        ]
        async with trio.open_nursery() as nursery:  # warm every connection first
            for http in pool:
                nursery.start_soon(http.get, f"{PREFIX}/jobs/{job_id}")

        async def reader(http: httpx.AsyncClient) -> None:
            nonlocal done
            while True:
                response = await http.get(f"{PREFIX}/jobs/{job_id}")
                codes[response.status_code] = codes.get(response.status_code, 0) + 1
                done += 1

        started = time.monotonic()
        with trio.move_on_after(seconds):
            async with trio.open_nursery() as nursery:
                for http in pool:
                    nursery.start_soon(reader, http)
        elapsed = time.monotonic() - started
    if set(codes) != {200}:
        raise RuntimeError(f"status reads answered {codes}, not only 200")
    return done / elapsed


async def run(clients: int, seconds: float, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ade-bench-auth-") as name:
        scratch = Path(name)
        env = {"ADE_QUEUE_SIZE": "10", "ADE_MAX_CONCURRENCY": "1"}
        servers = {
            "on": ServerProcess(scratch / "on" / "data", scratch / "on" / "logs", env),
            "off": ServerProcess(
                scratch / "off" / "data", scratch / "off" / "logs", {**env, "ADE_AUTH": "disabled"}
            ),
        }
        try:
            for server in servers.values():
                await server.start()
            key = (servers["on"].data_dir / "admin.key").read_text().strip()
            headers = {"on": {"Authorization": f"Bearer {key}"}, "off": {}}
            jobs = {
                mode: await _seed(server, scratch / mode, headers[mode])
                for mode, server in servers.items()
            }
            rates: dict[str, list[float]] = {"on": [], "off": []}
            for index in range(rounds):
                for mode in ("on", "off") if index % 2 == 0 else ("off", "on"):
                    rates[mode].append(
                        await _slice(servers[mode].url, jobs[mode], headers[mode], clients, seconds)
                    )
        finally:
            for server in servers.values():
                await server.stop()
    on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
    paired = statistics.median(a / b for a, b in zip(rates["on"], rates["off"], strict=True))
    return {
        "machine": machine_facts(),
        "clients": clients,
        "seconds_per_slice": seconds,
        "rounds": rounds,
        "requests_per_second": rates,
        "median_on": on,
        "median_off": off,
        "ratio_of_medians": on / off,
        "paired_ratio": paired,
        "cost": 1 - paired,
    }


def render(result: dict[str, Any]) -> str:
    machine = result["machine"]
    spread = {
        mode: f"{min(v):.0f}-{max(v):.0f}" for mode, v in result["requests_per_second"].items()
    }
    return "\n".join(
        [
            f"Measured {machine['date']} on {machine['cores']} cores (Python {machine['python']}): "
            f"{result['clients']} clients reading one finished job's status, "
            f"{result['rounds']} rounds of {result['seconds_per_slice']:.0f} s per server "
            "(order swapped every round).",
            "",
            "| | keys on (Bearer) | ADE_AUTH=disabled | ratio on / off |",
            "|---|---|---|---|",
            f"| status GET requests/s, median of rounds | {result['median_on']:.0f} | "
            f"{result['median_off']:.0f} | {result['ratio_of_medians']:.3f} |",
            f"| range over rounds | {spread['on']} | {spread['off']} | |",
            f"| median of per-round ratios | | | {result['paired_ratio']:.3f} |",
            "",
            f"Cost of the key check: {result['cost'] * 100:.1f} % of status GET throughput "
            "(1 - median per-round ratio).",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per slice")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    result = trio.run(run, args.clients, args.seconds, args.rounds)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
