"""API benchmark: ADE's submit and status routes under 100 concurrent clients, next to the same
routes of a bare quart-trio app on the same machine in the same run.

    .venv/bin/python benchmarks/api.py                 # 100 clients, 60 s per server
    .venv/bin/python benchmarks/api.py --duration 3    # quick mode (tests, smoke runs)

What is measured, per server: half the clients loop ``POST .../jobs`` back to back (greedy: a
benchmark measures the admission path, so a 429 is answered and counted, not waited out), the
other half loop ``GET .../jobs/{id}``. ADE runs with ADE_QUEUE_SIZE=10 and ADE_MAX_CONCURRENCY=2,
so most submissions are refused with 429 once the queue is full while two workers run jobs. The
bare app parses the same JSON body, keeps jobs in a dict and answers 202 / 200: the floor that
quart-trio + hypercorn + this client put under any implementation. The ratios (ADE / bare) are
the figures to compare over time; absolute numbers depend on the machine and its load.

``--profile FILE`` also samples ADE's server process with py-spy (the ``[bench]`` extra) for the
whole run (``py-spy record --pid ... --format raw``, GIL-holding and idle threads included) and
prints the functions where it spent most samples, by self and by inclusive time.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from ade.loadtest import (
    LoadTestOptions,
    ServerProcess,
    build_workload,
    free_port,
    machine_facts,
    summarize,
)
from ade.wire import XLSX_MEDIA_TYPE

WORKSPACE = "default"
PREFIX = f"/api/v1/workspaces/{WORKSPACE}"
XLSX = XLSX_MEDIA_TYPE


# -- the bare quart-trio app -----------------------------------------------------------------


def serve_bare(port: int) -> None:
    """Same routes, no runtime: parse, store in a dict, answer."""
    import itertools

    from hypercorn.config import Config
    from hypercorn.trio import serve
    from quart import request
    from quart_trio import QuartTrio

    app = QuartTrio("bare")
    jobs: dict[str, dict[str, Any]] = {}
    counter = itertools.count(1)

    @app.post("/api/v1/workspaces/<workspace_id>/jobs")
    async def submit(workspace_id: str) -> Any:
        body = await request.get_json()
        if not isinstance(body, dict) or "config_version_id" not in body:
            return {"error": {"code": "bad_request", "message": "body", "details": []}}, 400
        job_id = f"job{next(counter):026d}"
        job = {
            "id": job_id,
            "workspace_id": workspace_id,
            "status": "queued",
            "config_version_id": body["config_version_id"],
            "document_ids": body.get("document_ids", []),
        }
        jobs[job_id] = job
        return job, 202, {"Location": f"/api/v1/workspaces/{workspace_id}/jobs/{job_id}"}

    @app.get("/api/v1/workspaces/<workspace_id>/jobs/<job_id>")
    async def status(workspace_id: str, job_id: str) -> Any:
        job = jobs.get(job_id)
        if job is None or job["workspace_id"] != workspace_id:
            return {"error": {"code": "not_found", "message": job_id, "details": None}}, 404
        return job

    @app.get("/api/v1/health")
    async def health() -> Any:
        return {"status": "ok"}

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    trio.run(serve, app, config)


# -- the load ------------------------------------------------------------------------------


@attrs.define
class Tally:
    """Everything one server's slices measured, added up."""

    seconds: float = 0.0
    submit_ms: dict[str, list[float]] = attrs.field(factory=dict)  # by status code
    status_codes: dict[str, int] = attrs.field(factory=dict)
    status_ms: list[float] = attrs.field(factory=list)
    transport_errors: int = 0

    def result(self) -> dict[str, Any]:
        every = [ms for values in self.submit_ms.values() for ms in values]
        summary = summarize(every)
        status_done = sum(self.status_codes.values())
        return {
            "seconds": self.seconds,
            "submit_count": summary.count,
            "submit_p50_ms": summary.p50,
            "submit_p99_ms": summary.p99,
            "submit_max_ms": summary.max,
            "submit_codes": {code: len(v) for code, v in sorted(self.submit_ms.items())},
            # Accepted (202) and refused (429) submissions take different paths: split them.
            "submit_p99_ms_by_code": {
                code: summarize(values).p99 for code, values in sorted(self.submit_ms.items())
            },
            "status_requests_per_second": status_done / self.seconds,
            "status_p50_ms": summarize(self.status_ms).p50,
            "status_p99_ms": summarize(self.status_ms).p99,
            "status_codes": dict(sorted(self.status_codes.items())),
            "transport_errors": self.transport_errors,
        }


async def drive(
    tally: Tally,
    base: str,
    body: dict[str, Any],
    status_id: str,
    clients: int,
    duration: float,
    rate: float | None = None,
) -> None:
    """One slice: half the clients submit, half read one job's status.

    Closed loop (``rate`` None): each client sends its next request as soon as the last one is
    answered, so latency is bounded below by clients / throughput. Open loop: the clients
    together send ``rate`` requests per second on a fixed schedule (each client one request
    every ``clients / rate`` seconds, the clients staggered), and a request's latency counts
    from the moment it was *due*, so a server that falls behind is charged for the wait
    (no coordinated omission)."""
    # One AsyncClient per simulated user: a single shared httpx pool collapses under 100
    # concurrent requests (see ade.loadtest._clients.new_http_client).
    tls = ssl.create_default_context()
    async with contextlib.AsyncExitStack() as stack:
        pool = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=base, verify=tls, timeout=60)
            )
            for _ in range(clients)
        ]
        # Warm every connection so the timed window does not include TCP set-up.
        async with trio.open_nursery() as nursery:
            for http in pool:
                nursery.start_soon(http.get, f"{PREFIX}/jobs/{status_id}")

        # The client's own full collections (60-80 ms with 100 connection pools) would be
        # charged to whichever server is being measured: what exists now stays out of them.
        gc.freeze()
        interval = clients / rate if rate else 0.0
        clock_zero = trio.current_time()  # trio's clock: the one sleep_until reads

        async def due(index: int, sent: int) -> float:
            """Closed loop: now. Open loop: this client's next slot (slept until)."""
            if not rate:
                return trio.current_time()
            slot = clock_zero + (index / clients + sent) * interval
            await trio.sleep_until(slot)
            return slot

        async def submitter(http: httpx.AsyncClient, index: int) -> None:
            sent = 0
            while True:
                started = await due(index, sent)
                sent += 1
                try:
                    response = await http.post(f"{PREFIX}/jobs", json=body)
                except httpx.TransportError:
                    tally.transport_errors += 1
                    continue
                elapsed_ms = (trio.current_time() - started) * 1000
                tally.submit_ms.setdefault(str(response.status_code), []).append(elapsed_ms)

        async def poller(http: httpx.AsyncClient, index: int) -> None:
            sent = 0
            while True:
                started = await due(index, sent)
                sent += 1
                try:
                    response = await http.get(f"{PREFIX}/jobs/{status_id}")
                except httpx.TransportError:
                    tally.transport_errors += 1
                    continue
                tally.status_ms.append((trio.current_time() - started) * 1000)
                code = str(response.status_code)
                tally.status_codes[code] = tally.status_codes.get(code, 0) + 1

        started = time.monotonic()
        with trio.move_on_after(duration):
            async with trio.open_nursery() as nursery:
                for index, http in enumerate(pool):
                    nursery.start_soon(submitter if index % 2 == 0 else poller, http, index)
        tally.seconds += time.monotonic() - started


@attrs.frozen
class Target:
    name: str
    base: str
    body: dict[str, Any]
    status_id: str


async def start_ade(scratch: Path) -> tuple[ServerProcess, Target]:
    env = {
        # Not about keys: benchmarks/auth.py measures what the key check costs.
        "ADE_AUTH": "disabled",
        "ADE_QUEUE_SIZE": "10",
        "ADE_MAX_CONCURRENCY": "2",
        "ADE_SHUTDOWN_GRACE_SECONDS": "2",
    }
    server = ServerProcess(scratch / "data", scratch / "logs", env)
    workload = build_workload(LoadTestOptions(), scratch / "workload")
    await server.start()
    async with httpx.AsyncClient(base_url=server.url, timeout=60.0) as http:
        config = await http.post(
            f"{PREFIX}/configs",
            files={"package": ("ok.zip", workload.config_zips["ok"], "application/zip")},
        )
        config.raise_for_status()
        document = await http.post(
            f"{PREFIX}/documents", files={"file": ("tiny.xlsx", workload.workbooks["tiny"], XLSX)}
        )
        document.raise_for_status()
        body = {"config_version_id": config.json()["id"], "document_ids": [document.json()["id"]]}
        first = await http.post(f"{PREFIX}/jobs", json=body)
        first.raise_for_status()
    return server, Target("ade", server.url, body, first.json()["id"])


async def start_bare(scratch: Path) -> tuple[subprocess.Popen[bytes], Target]:
    port = free_port()
    with (scratch / "bare.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, __file__, "--serve-bare", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=5.0) as http:
        deadline = time.monotonic() + 30
        while True:
            try:
                if (await http.get("/api/v1/health")).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    process.kill()
                    process.wait()
                    raise RuntimeError(f"the bare app did not start; see {log.name}") from None
            await trio.sleep(0.05)
        body = {"config_version_id": "cfg", "document_ids": ["doc"]}
        first = await http.post(f"{PREFIX}/jobs", json=body)
    return process, Target("bare", base, body, first.json()["id"])


async def wait_idle(server: ServerProcess, limit: float = 60.0) -> None:
    """Let ADE's queue drain before the bare app's slice: its workers would take the CPU."""
    async with httpx.AsyncClient(timeout=10.0) as http:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            runtime = (await http.get(f"{server.url}/api/v1/health")).json()["runtime"]
            if runtime["queued"] + runtime["reserved"] + runtime["running"] == 0:
                return
            await trio.sleep(0.2)


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` (and its threads) until stopped with SIGINT."""
    py_spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [
            str(py_spy),
            "record",
            "--pid",
            str(pid),
            "--rate",
            "250",
            "--format",
            "raw",
            "--threads",
            "--idle",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_profiler(process: subprocess.Popen[bytes]) -> None:
    import signal

    process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# Leaf frames of threads waiting, not working: trio's idle thread-cache workers block on a lock
# in C, which py-spy does not see as idle.
_IDLE_LEAVES = ("WorkerThread._work (", "epoll", "wait (threading")


def profile_summary(raw: Path, top: int = 25) -> str:
    """The busiest functions of a ``py-spy --format raw`` file (folded stacks with counts),
    idle samples (threads waiting in a lock or on epoll) left out."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        leaf = frames[-1]
        if any(idle in leaf for idle in _IDLE_LEAVES):
            continue
        count = int(count_text)
        total += count
        own[leaf] = own.get(leaf, 0) + count
        for frame in {f.split(" (")[0] for f in frames}:
            inclusive[frame] = inclusive.get(frame, 0) + count
    lines = [f"{total} busy samples"]
    for title, table in (("self", own), ("inclusive", inclusive)):
        lines.append(f"-- {title}")
        for frame, count in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"{100 * count / max(total, 1):5.1f}%  {frame}")
    return "\n".join(lines)


async def run(
    clients: int,
    duration: float,
    slices: int,
    profile: Path | None = None,
    rate: float | None = None,
) -> dict[str, Any]:
    """Alternate the two servers in ``slices`` slices each (ADE, bare, bare, ADE, ...), so a
    change in the shared machine's load during the run hits both alike."""
    tallies = {"ade": Tally(), "bare": Tally()}
    with tempfile.TemporaryDirectory(prefix="ade-bench-api-") as name:
        scratch = Path(name)
        server, ade = await start_ade(scratch)
        assert server.process is not None
        profiler = start_profiler(server.process.pid, profile) if profile else None
        try:
            bare_process, bare = await start_bare(scratch)
            try:
                for index in range(slices):
                    for target in (ade, bare) if index % 2 == 0 else (bare, ade):
                        if target is bare:
                            await wait_idle(server)
                        await drive(
                            tallies[target.name],
                            target.base,
                            target.body,
                            target.status_id,
                            clients,
                            duration / slices,
                            rate,
                        )
            finally:
                bare_process.terminate()
                bare_process.wait()
        finally:
            if profiler is not None:
                stop_profiler(profiler)
            await server.stop()
    ade_result, bare_result = tallies["ade"].result(), tallies["bare"].result()
    return {
        "machine": machine_facts(),
        "clients": clients,
        "duration": duration,
        "slices": slices,
        "rate": rate,
        "ade": ade_result,
        "bare": bare_result,
        "ratios": {
            "submit_p50": ade_result["submit_p50_ms"] / bare_result["submit_p50_ms"],
            "submit_p99": ade_result["submit_p99_ms"] / bare_result["submit_p99_ms"],
            # < 1 means ADE serves fewer status reads per second than the bare app.
            "status_rps": ade_result["status_requests_per_second"]
            / bare_result["status_requests_per_second"],
        },
    }


def render(result: dict[str, Any]) -> str:
    ade, bare, machine = result["ade"], result["bare"], result["machine"]
    load = (
        f"an open loop of {result['rate']:g} requests/s over {result['clients']} clients"
        if result.get("rate")
        else f"{result['clients']} concurrent clients (closed loop)"
    )
    lines = [
        f"Measured {machine['date']} on {machine['cores']} cores (Python {machine['python']}): "
        f"{load} for {result['duration']:.0f} s per server "
        f"(in {result['slices']} alternating slices), half submitting, half reading one job's "
        "status; ADE with ADE_QUEUE_SIZE=10, ADE_MAX_CONCURRENCY=2.",
        "",
        "| | ADE | bare quart-trio | ratio ADE / bare |",
        "|---|---|---|---|",
        f"| submit p50 (ms) | {ade['submit_p50_ms']:.1f} | {bare['submit_p50_ms']:.1f} | "
        f"{result['ratios']['submit_p50']:.2f} |",
        f"| submit p99 (ms) | {ade['submit_p99_ms']:.1f} | {bare['submit_p99_ms']:.1f} | "
        f"{result['ratios']['submit_p99']:.2f} |",
        f"| status GET p50 / p99 (ms) | {ade['status_p50_ms']:.1f} / {ade['status_p99_ms']:.1f} | "
        f"{bare['status_p50_ms']:.1f} / {bare['status_p99_ms']:.1f} | |",
        f"| status GET requests/s | {ade['status_requests_per_second']:.0f} | "
        f"{bare['status_requests_per_second']:.0f} | {result['ratios']['status_rps']:.2f} |",
        f"| submit p99 by answer (ms) | {_by_code(ade)} | {_by_code(bare)} | |",
        f"| submit answers | {_codes(ade['submit_codes'])} | {_codes(bare['submit_codes'])} | |",
        f"| status answers | {_codes(ade['status_codes'])} | {_codes(bare['status_codes'])} | |",
    ]
    return "\n".join(lines)


def _by_code(result: dict[str, Any]) -> str:
    return ", ".join(f"{code}: {p99:.1f}" for code, p99 in result["submit_p99_ms_by_code"].items())


def _codes(codes: dict[str, int]) -> str:
    return ", ".join(f"{count} x {code}" for code, count in sorted(codes.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per server")
    parser.add_argument(
        "--slices", type=int, default=2, help="alternating slices per server (default 2)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        help="open loop: requests per second over all clients, latency counted from when each "
        "request was due (default: closed loop, each client back to back)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument(
        "--profile", type=Path, help="sample ADE's server with py-spy into this raw file"
    )
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0
    result = trio.run(run, args.clients, args.duration, args.slices, args.profile, args.rate)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(render(result))
    if args.profile:
        print()
        print(profile_summary(args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
