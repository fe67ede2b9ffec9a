"""What running jobs at a lower CPU priority buys: status GET latency while CPU-bound jobs run,
``ADE_WORKER_NICE=0`` against ``10``, same run.

    .venv/bin/python benchmarks/priority.py                 # 10 s per slice, 4 slices
    .venv/bin/python benchmarks/priority.py --duration 4    # quick

Per slice: a fresh ``ade serve`` (fork mode, ADE_MAX_CONCURRENCY=2) with the slice's nice
value; one client reads one job's status (``GET /jobs/{id}``) back to back for ``duration``
seconds while the server is idle, then again while two jobs spin on the CPU (one per worker,
on a 2-core machine: every core busy). Slices alternate (0, 10, 10, 0, ...) so the shared
machine's load hits both alike. Reported: p50 / p99 of the status reads, idle and busy.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
import trio

from ade.loadtest import LoadTestOptions, ServerProcess, build_workload, summarize
from ade.loadtest._workload import sample_package
from ade.wire import XLSX_MEDIA_TYPE

PREFIX = "/api/v1/workspaces/default"
SPIN_SECONDS = 120  # longer than any slice: the jobs are cancelled when it ends
SPIN_HOOK = f"""
import time


def on_job_start(inputs, manifest):
    end = time.monotonic() + {SPIN_SECONDS}
    while time.monotonic() < end:
        pass
"""


def spin_config_zip() -> bytes:
    """The bundled sample package plus an on_job_start hook that spins on the CPU."""
    folder = sample_package()
    files = {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    manifest = json.loads(files["manifest.json"])
    hooks = manifest.setdefault("hooks", {})
    entries = hooks.get("on_job_start", [])
    entries = [entries] if isinstance(entries, str) else list(entries)
    hooks["on_job_start"] = ["hooks/spin.py:on_job_start", *entries]
    files["hooks/spin.py"] = SPIN_HOOK.encode()
    files["manifest.json"] = json.dumps(manifest).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


async def read_status(http: httpx.AsyncClient, job_id: str, seconds: float) -> list[float]:
    latencies: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter()
        response = await http.get(f"{PREFIX}/jobs/{job_id}")
        response.raise_for_status()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def one_slice(scratch: Path, nice: int, seconds: float) -> tuple[list[float], list[float]]:
    env = {
        "ADE_MAX_CONCURRENCY": "2",
        "ADE_QUEUE_SIZE": "4",
        "ADE_WORKER_START": "fork",
        "ADE_WORKER_NICE": str(nice),
        "ADE_JOB_TIMEOUT_SECONDS": str(SPIN_SECONDS * 2),
        "ADE_WORKER_CPU_SECONDS": str(SPIN_SECONDS * 2),
        "ADE_SHUTDOWN_GRACE_SECONDS": "1",
    }
    server = ServerProcess(scratch / "data", scratch / "logs", env)
    workload = build_workload(LoadTestOptions(), scratch / "workload")
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60.0) as http:
            config = await http.post(
                f"{PREFIX}/configs",
                files={"package": ("spin.zip", spin_config_zip(), "application/zip")},
            )
            config.raise_for_status()
            document = await http.post(
                f"{PREFIX}/documents",
                files={"file": ("tiny.xlsx", workload.workbooks["tiny"], XLSX_MEDIA_TYPE)},
            )
            document.raise_for_status()
            body = {
                "config_version_id": config.json()["id"],
                "document_ids": [document.json()["id"]],
            }
            jobs = [(await http.post(f"{PREFIX}/jobs", json=body)).json()["id"] for _ in range(2)]
            # Busy first (the jobs start at once), then idle: the same job's status once both
            # jobs are cancelled.
            deadline = time.monotonic() + 60
            while True:
                runtime = (await http.get("/api/v1/health")).json()["runtime"]
                if runtime["running"] == 2:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("the spinning jobs did not start")
                await trio.sleep(0.1)
            await trio.sleep(1.0)  # past the jobs' start-up: now they only spin
            busy = await read_status(http, jobs[0], seconds)
            for job in jobs:
                await http.post(f"{PREFIX}/jobs/{job}/cancel")
            while (await http.get("/api/v1/health")).json()["runtime"]["running"]:
                await trio.sleep(0.1)
            idle = await read_status(http, jobs[0], seconds)
    finally:
        await server.stop()
    return idle, busy


async def run(seconds: float, slices: int) -> dict[int, tuple[list[float], list[float]]]:
    results: dict[int, tuple[list[float], list[float]]] = {0: ([], []), 10: ([], [])}
    for index in range(slices):
        nice = (0, 10, 10, 0)[index % 4]
        with tempfile.TemporaryDirectory(prefix="ade-priority-") as name:
            idle, busy = await one_slice(Path(name), nice, seconds)
        results[nice][0].extend(idle)
        results[nice][1].extend(busy)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--slices", type=int, default=4, help="slices (alternating 0, 10, ...)")
    args = parser.parse_args(argv)
    results = trio.run(run, args.duration, args.slices)
    print("| ADE_WORKER_NICE | status GET, idle p50 / p99 | while 2 jobs spin p50 / p99 | reads |")
    print("|---|---|---|---|")
    for nice, (idle, busy) in results.items():
        a, b = summarize(idle), summarize(busy)
        print(
            f"| {nice} | {a.p50:.1f} / {a.p99:.1f} ms | {b.p50:.1f} / {b.p99:.1f} ms "
            f"| {a.count} / {b.count} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
