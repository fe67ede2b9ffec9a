"""One load-test run from start to verdict.

Theory of operation
-------------------
1. Start a private ``ade serve`` on 127.0.0.1 (a free port, a fresh ADE_DATA_DIR) or target
   ``--url``. Upload one config package per kind (ok / fail / timeout / memory).
2. Load phase, bounded by ``--duration`` and ``--jobs``: N client tasks run job sessions
   (see ``_clients``); a monitor samples /api/v1/health for the queue depth; one websocket
   subscriber follows the workspace stream. With ``--chaos`` one task SIGKILLs the server at a
   random moment, snapshots the store (which jobs were running / queued at the kill), checks no
   worker survived, and restarts the server on the same data directory.
3. Drain phase, bounded by ``--drain-timeout``: every job that got a 202 is polled until it is
   terminal. A job that is not is *lost*.
4. Stop the server gracefully, then check the files (events.ndjson of every job) and /proc (no
   worker left) and build the report.
"""

from __future__ import annotations

import os
import random
import ssl
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import trio

from ade.auth.bootstrap import client_api_key
from ade.loadtest._checks import (
    StoreSnapshot,
    check_job_events,
    read_store,
    reap_these,
    reap_workers,
)
from ade.loadtest._clients import (
    Client,
    Problems,
    SessionAbandoned,
    Shared,
    client_loop,
    health_monitor,
    new_http_client,
    workspace_watcher,
)
from ade.loadtest._cluster import CHAOS_LEASE_SECONDS, PrivateCluster, node_message
from ade.loadtest._ledger import TERMINAL, JobBudget, Ledger, TrackedJob
from ade.loadtest._options import LoadTestOptions
from ade.loadtest._report import FAIL, PASS, SKIP, Invariant, Report
from ade.loadtest._server import ServerProcess, ServerStartError, free_port, worker_processes
from ade.loadtest._stats import RequestLog, summarize
from ade.loadtest._target import Target
from ade.loadtest._workload import Workload, build_workload
from ade.runtime.ending import RESTART_MESSAGE
from ade.settings import load_settings

__all__ = ["RECOVERY_MESSAGE", "machine_facts", "run_loadtest"]

# What recovery writes on a job that was running when the service died (issue 3).
# The message of a job the restarted service found running (defined by the runtime).
RECOVERY_MESSAGE = RESTART_MESSAGE
# How long workers may take to die after their server is gone (SIGKILL delivery, reaping).
_WORKER_GRACE_SECONDS = 5.0


def machine_facts() -> dict[str, Any]:
    """What every printed figure carries: core count, date, interpreter."""
    return {
        "cores": os.cpu_count(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": sys.version.split()[0],
        "platform": sys.platform,
    }


@attrs.define
class _QueueWatch:
    queue_size: int
    max_depth: int | None = None
    samples: int = 0

    def sample(self, depth: int | None, capacity: int | None) -> None:
        self.samples += 1
        if capacity is not None:
            self.queue_size = capacity
        if depth is not None and (self.max_depth is None or depth > self.max_depth):
            self.max_depth = depth


@attrs.define
class _Chaos:
    killed_at: float | None = None
    restart_seconds: float | None = None
    running: set[str] = attrs.field(factory=set)
    queued: set[str] = attrs.field(factory=set)
    # Workers of the killed server alive 5 s after the kill, and still alive once the
    # restarted server answered (its recovery should have ended them).
    surviving_workers: list[str] = attrs.field(factory=list)
    surviving_restart: list[str] = attrs.field(factory=list)
    restart_error: str | None = None
    done: trio.Event = attrs.field(factory=trio.Event)
    # Cluster chaos: the node killed (and left dead).
    node: str | None = None


def _server_env(options: LoadTestOptions) -> dict[str, str]:
    return {
        "ADE_QUEUE_SIZE": str(options.queue_size),
        "ADE_MAX_CONCURRENCY": str(options.max_concurrency),
        "ADE_JOB_TIMEOUT_SECONDS": str(options.job_timeout),
        "ADE_WORKER_MEM_MB": str(options.worker_mem_mb),
        # A load test should not wait half a minute for a drain on every stop.
        "ADE_SHUTDOWN_GRACE_SECONDS": "2",
    }


async def _upload_configs(context: Client, workload: Workload) -> dict[str, str]:
    ids: dict[str, str] = {}
    for kind, package in workload.config_zips.items():
        if context.options.config_mix.get(kind, 0) <= 0:
            continue
        response = await context.request(
            "POST /configs",
            "POST",
            "/configs",
            files={"package": (f"loadtest-{kind}.zip", package, "application/zip")},
        )
        # 201 prepared now, 200 the same content was prepared before (idempotent by hash).
        if response.status_code not in (200, 201):
            raise SessionAbandoned(
                f"POST /configs of the {kind!r} package answered {response.status_code}: "
                f"{response.text[:500]}"
            )
        ids[kind] = str(context.body("POST /configs", response)["id"])
    return ids


async def _chaos(
    options: LoadTestOptions,
    server: ServerProcess,
    target: Target,
    chaos: _Chaos,
    rng: random.Random,
    started: float,
) -> None:
    try:
        await trio.sleep(rng.uniform(0.3, 0.6) * options.duration)
        target.mark_down()
        server.kill()
        chaos.killed_at = time.monotonic() - started
        snapshot = await read_store(server.data_dir)
        chaos.running = snapshot.with_status("running")
        chaos.queued = snapshot.with_status("queued")
        # Left alive on purpose: the restarted service's recovery is what should end them.
        chaos.surviving_workers = await reap_workers(
            server.data_dir, _WORKER_GRACE_SECONDS, kill=False
        )
        try:
            chaos.restart_seconds = await server.start()
        except ServerStartError:
            # The old port may still be held (TIME_WAIT); any free port will do.
            server.port = free_port()
            try:
                chaos.restart_seconds = await server.start()
            except ServerStartError as exc:
                # Reported as a failed invariant; clients keep waiting, the drain times out
                # and every pending job is reported lost.
                chaos.restart_error = str(exc)
                return
        target.mark_up(server.url)
        chaos.surviving_restart = await reap_these(
            server.data_dir, chaos.surviving_workers, _WORKER_GRACE_SECONDS
        )
    finally:
        chaos.done.set()


async def _cluster_chaos(
    options: LoadTestOptions,
    cluster: PrivateCluster,
    target: Target,
    chaos: _Chaos,
    rng: random.Random,
    started: float,
) -> None:
    """SIGKILL one random node and leave it dead: the survivors must rescue its jobs."""
    try:
        await trio.sleep(rng.uniform(0.3, 0.6) * options.duration)
        victim = rng.choice(sorted(cluster.servers))
        target.mark_down()
        cluster.kill(victim)
        chaos.killed_at = time.monotonic() - started
        chaos.node = victim
        target.mark_up(cluster.urls())
        jobs = await trio.to_thread.run_sync(cluster.jobs_by_node)
        chaos.running = {j for j, (s, _, node) in jobs.items() if s == "running" and node == victim}
        chaos.queued = {j for j, (s, _, _) in jobs.items() if s == "queued"}
        # The rescuer (a survivor on this machine) kills the victim's job processes once the
        # lease has expired; give it the lease, a heartbeat round and the usual grace.
        await trio.sleep(CHAOS_LEASE_SECONDS * 4 / 3 + _WORKER_GRACE_SECONDS)
        chaos.surviving_workers = [
            line
            for _, line in worker_processes(cluster.data_dir)
            if any(job_id in line for job_id in chaos.running)
        ]
    finally:
        chaos.done.set()


async def _drain(context: Client, timeout: float) -> None:
    """Poll every accepted job until it is terminal or ``timeout`` seconds have passed."""
    limiter = trio.CapacityLimiter(8)
    # trio's clock, not time.monotonic(): trio deadlines live on their own (offset) clock.
    deadline = trio.current_time() + timeout

    async def settle(job: TrackedJob) -> None:
        async with limiter:
            while trio.current_time() < deadline:
                try:
                    job.record = await context.job(job.job_id)
                except SessionAbandoned:
                    pass  # counted; try again until the deadline
                if job.terminal:
                    return
                await trio.sleep(context.options.poll_interval)

    with trio.move_on_at(deadline):
        async with trio.open_nursery() as nursery:
            for job in context.ledger.pending():
                nursery.start_soon(settle, job)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _job_figures(ledger: Ledger) -> tuple[list[float], float]:
    """(end-to-end seconds per terminal job, jobs/s) from the server's own timestamps."""
    latencies: list[float] = []
    firsts: list[datetime] = []
    lasts: list[datetime] = []
    for job in ledger.jobs.values():
        if not job.terminal or job.record is None:
            continue
        created = _parse_time(job.record.get("created_at"))
        finished = _parse_time(job.record.get("finished_at"))
        if created is None or finished is None:
            continue
        latencies.append((finished - created).total_seconds())
        firsts.append(created)
        lasts.append(finished)
    if not latencies:
        return latencies, 0.0
    span = (max(lasts) - min(firsts)).total_seconds()
    return latencies, (len(latencies) / span if span > 0 else 0.0)


def _invariants(
    context: Client,
    queue: _QueueWatch,
    chaos: _Chaos | None,
    events: tuple[int, list[str]] | None,
    events_skip_reason: str,
    workers_left: list[str] | None,
    stop_status: int | None,
) -> list[Invariant]:
    checks: list[Invariant] = []
    errors = context.log.server_errors()
    checks.append(
        Invariant(
            "zero 5xx", FAIL if errors else PASS, ", ".join(f"{k}: {v}" for k, v in errors.items())
        )
    )
    lost = [job for job in context.ledger.jobs.values() if not job.terminal]
    checks.append(
        Invariant(
            "zero lost jobs",
            FAIL if lost else PASS,
            f"{len(context.ledger)} accepted, all terminal"
            if not lost
            else f"{len(lost)} of {len(context.ledger)} not terminal: "
            + ", ".join(f"{job.job_id} ({job.status})" for job in lost[:10]),
        )
    )
    if queue.max_depth is None:
        checks.append(
            Invariant(
                "queue bound never exceeded", FAIL, "/api/v1/health never reported a queue depth"
            )
        )
    else:
        over = queue.max_depth > queue.queue_size
        checks.append(
            Invariant(
                "queue bound never exceeded",
                FAIL if over else PASS,
                f"highest depth {queue.max_depth} of {queue.queue_size} in {queue.samples} samples",
            )
        )
    if events is None:
        checks.append(
            Invariant(
                "every events.ndjson parses and ends in its terminal event",
                SKIP,
                events_skip_reason,
            )
        )
    else:
        checked, problems = events
        checks.append(
            Invariant(
                "every events.ndjson parses and ends in its terminal event",
                FAIL if problems or checked == 0 else PASS,
                f"{checked} files checked" + (": " + "; ".join(problems[:10]) if problems else ""),
            )
        )
    if workers_left is None:
        checks.append(
            Invariant(
                "no worker process left after the server stops",
                SKIP,
                "the harness did not start the server (--url), so it never stops it",
            )
        )
    else:
        checks.append(
            Invariant(
                "no worker process left after the server stops",
                FAIL if workers_left else PASS,
                "; ".join(workers_left[:5]) if workers_left else "none in /proc",
            )
        )
    if workers_left is not None:
        checks.append(
            Invariant(
                "the server stops gracefully on SIGTERM",
                PASS if stop_status == 0 else FAIL,
                f"exit status {stop_status}"
                + ("" if stop_status == 0 else " (negative: killed by that signal)"),
            )
        )
    transport = context.log.transport_errors()
    checks.append(
        Invariant(
            "no request failed without a response (outside a chaos outage)",
            FAIL if transport else PASS,
            ", ".join(f"{k}: {v}" for k, v in transport.items()),
        )
    )
    problems = context.problems
    protocol = []
    if problems.missing_retry_after:
        protocol.append(f"{problems.missing_retry_after} 429s without Retry-After")
    protocol += problems.bad_streams[:5] + problems.bad_bodies[:5]
    checks.append(
        Invariant(
            "429s carry Retry-After; streams end in the terminal event; bodies are well-formed",
            FAIL if protocol else PASS,
            "; ".join(protocol),
        )
    )
    if chaos is not None:
        checks.extend(_chaos_invariants(context.ledger, chaos))
    return checks


def _chaos_invariants(ledger: Ledger, chaos: _Chaos) -> list[Invariant]:
    if chaos.killed_at is None:
        return [
            Invariant("chaos: the server was killed and restarted", FAIL, "the kill never happened")
        ]
    lease = (
        ""
        if chaos.node is None
        else f" (the lease, {CHAOS_LEASE_SECONDS:g} s, a heartbeat round and the grace)"
    )
    if chaos.restart_error is not None:
        return [
            Invariant(
                "chaos: the server was killed and restarted",
                FAIL,
                f"the restart failed: {chaos.restart_error[-1500:]}",
            )
        ]
    records = {job_id: job.record or {} for job_id, job in ledger.jobs.items()}
    survivors = chaos.surviving_workers
    # One node: the restarted server's recovery; a cluster: a survivor's rescue, naming it.
    expected = RECOVERY_MESSAGE if chaos.node is None else node_message(chaos.node)
    wrong_running = []
    for job_id in sorted(chaos.running):
        record = records.get(job_id)
        if record is None:
            continue  # accepted by the server but the 202 never reached us (killed in flight)
        if record.get("status") != "error" or record.get("error_message") != expected:
            wrong_running.append(
                f"{job_id}: {record.get('status')} {record.get('error_message')!r}"
            )
    wrong_queued = []
    for job_id in sorted(chaos.queued):
        record = records.get(job_id)
        if record is None:
            continue
        if record.get("status") not in TERMINAL or record.get("error_message") == expected:
            wrong_queued.append(f"{job_id}: {record.get('status')} {record.get('error_message')!r}")
    return [
        Invariant(
            "chaos: no worker of the killed server outlives it",
            FAIL if survivors else PASS,
            (
                f"{len(survivors)} still running {_WORKER_GRACE_SECONDS:.0f} s after the SIGKILL"
                f"{lease}, {len(chaos.surviving_restart)} of them still after the restart: "
                + "; ".join(survivors[:3])
            )
            if survivors
            else f"none in /proc {_WORKER_GRACE_SECONDS:.0f} s after the SIGKILL{lease}",
        ),
        Invariant(
            "chaos: jobs running at the kill end in error with the recovery message"
            if chaos.node is None
            else f"chaos: jobs running on the killed {chaos.node} end in error naming it",
            FAIL if wrong_running else PASS,
            f"{len(chaos.running)} running at the kill"
            + ("; " + "; ".join(wrong_running[:5]) if wrong_running else ""),
        ),
        Invariant(
            "chaos: jobs queued at the kill complete after the restart"
            if chaos.node is None
            else "chaos: jobs queued at the kill complete on the other nodes",
            FAIL if wrong_queued else PASS,
            f"{len(chaos.queued)} queued at the kill"
            + ("; " + "; ".join(wrong_queued[:5]) if wrong_queued else ""),
        ),
    ]


def loadtest_api_key(options: LoadTestOptions, data_dir: Path | None) -> str | None:
    """The key the harness sends: --api-key (or ADE_API_KEY), else the admin key in the
    target's data dir (the private server's, which its first start created; or --data-dir)."""
    if options.api_key:
        return options.api_key
    environment = os.environ.get("ADE_API_KEY")
    if environment and options.url is not None:
        return environment
    if data_dir is None:
        return None
    return client_api_key(load_settings({}, data_dir=data_dir))


async def run_loadtest(options: LoadTestOptions) -> Report:
    """Run one load test; never raises for a failed invariant (the report says FAIL)."""
    rng = random.Random(options.seed)
    with tempfile.TemporaryDirectory(prefix="ade-loadtest-") as scratch_name:
        scratch = Path(scratch_name)
        server: ServerProcess | None = None
        cluster: PrivateCluster | None = None
        base_url: str | list[str]
        if options.nodes > 1:
            cluster = PrivateCluster(
                options.postgres_url, scratch, options.nodes, _server_env(options)
            )
            data_dir: Path | None = cluster.data_dir
        elif options.url is None:
            server = ServerProcess(scratch / "data", scratch / "logs", _server_env(options))
            data_dir = server.data_dir
        else:
            data_dir = options.data_dir
        try:
            if cluster is not None:
                await cluster.start()
                base_url = cluster.urls()
            elif server is not None:
                await server.start()
                base_url = server.url
            else:
                base_url = str(options.url)
            return await _run_against(options, rng, scratch, server, cluster, base_url, data_dir)
        finally:
            # Shielded: after Ctrl+C or a crash the run is being cancelled, and the servers
            # (in their own sessions, so the terminal's SIGINT never reached them) must go.
            with trio.CancelScope(shield=True):
                if server is not None:
                    await server.stop()
                    await reap_workers(server.data_dir, 0.0)
                if cluster is not None:
                    await cluster.stop()
                    await reap_workers(cluster.data_dir, 0.0)
                    await cluster.drop()


async def _run_against(
    options: LoadTestOptions,
    rng: random.Random,
    scratch: Path,
    server: ServerProcess | None,
    cluster: PrivateCluster | None,
    base_url: str | list[str],
    data_dir: Path | None,
) -> Report:
    target = Target(base_url, options.workspace)
    api_key = loadtest_api_key(options, data_dir if options.url is None else options.data_dir)
    workload = await trio.to_thread.run_sync(build_workload, options, scratch / "workload")
    tls = ssl.create_default_context()
    shared = Shared(
        options=options,
        target=target,
        log=RequestLog(),
        ledger=Ledger(),
        budget=JobBudget(options.jobs),
        problems=Problems(),
        config_ids={},
        workbooks=workload.workbooks,
        api_key=api_key,
    )
    # The harness's own requests (set-up, health samples, the workspace stream, the drain)
    # go through a client of their own, counted like everyone else's.
    async with new_http_client(options, tls, api_key) as control_http:
        control = Client(shared, control_http)
        shared.config_ids = await _upload_configs(control, workload)
        queue = _QueueWatch(queue_size=options.queue_size)
        chaos = _Chaos() if options.chaos else None
        started = time.monotonic()
        async with trio.open_nursery() as background:
            background.start_soon(health_monitor, control, queue.sample)
            background.start_soon(workspace_watcher, control)
            if chaos is not None and server is not None:
                background.start_soon(_chaos, options, server, target, chaos, rng, started)
            if chaos is not None and cluster is not None:
                background.start_soon(_cluster_chaos, options, cluster, target, chaos, rng, started)
            with trio.move_on_after(options.duration):
                async with trio.open_nursery() as clients:
                    for _ in range(options.clients):
                        clients.start_soon(client_loop, shared, tls, random.Random(rng.random()))
            if chaos is not None:
                # The kill may fall after the K jobs were all submitted: let it happen anyway.
                await chaos.done.wait()
            load_seconds = time.monotonic() - started
            await _drain(control, options.drain_timeout)
            background.cancel_scope.cancel()
        elapsed = time.monotonic() - started
    context = control

    events: tuple[int, list[str]] | None = None
    events_skip = ""
    workers_left: list[str] | None = None
    snapshot: StoreSnapshot | None = None
    stop_status: int | None = None
    if server is not None:
        stop_status = await server.stop()
        workers_left = await reap_workers(server.data_dir, _WORKER_GRACE_SECONDS)
    if cluster is not None:
        statuses = await cluster.stop()
        # Every live node must stop gracefully: the first non-zero status is reported.
        stop_status = next((s for s in statuses.values() if s != 0), 0)
        workers_left = await reap_workers(cluster.data_dir, _WORKER_GRACE_SECONDS)
    if data_dir is not None:
        snapshot = await read_store(data_dir, None if cluster is None else cluster.database_url)
        events = await trio.to_thread.run_sync(check_job_events, data_dir, snapshot)
    else:
        events_skip = "--url without --data-dir: the server's files are out of reach"

    latencies, jobs_per_second = _job_figures(context.ledger)
    by_status: dict[str, int] = {}
    by_kind: dict[str, dict[str, int]] = {}
    for job in context.ledger.jobs.values():
        status = job.status or "unknown"
        by_status[status] = by_status.get(status, 0) + 1
        kind = by_kind.setdefault(job.config_kind, {})
        kind[status] = kind.get(status, 0) + 1
    return Report(
        machine=machine_facts(),
        settings={
            "target": (
                f"{options.nodes} ade serve nodes on PostgreSQL (started by the harness)"
                if cluster is not None
                else "ade serve (started by the harness)"
                if server is not None
                else options.url
            ),
            "nodes": options.nodes,
            "clients": options.clients,
            "duration": options.duration,
            "jobs": options.jobs,
            "greedy": options.greedy,
            "chaos": options.chaos,
            "seed": options.seed,
            "workbook_mix": options.workbook_mix,
            "config_mix": options.config_mix,
            "queue_size": options.queue_size,
            "max_concurrency": options.max_concurrency,
            "job_timeout": options.job_timeout,
            "worker_mem_mb": options.worker_mem_mb,
        },
        duration_seconds=elapsed,
        requests_by_route=context.log.by_route(),
        outage_requests_by_route=context.log.outage_by_route(),
        requests_total=context.log.total(),
        submit_latency_ms=summarize(context.log.submit_latencies_ms),
        job_latency_seconds=summarize(latencies),
        jobs={
            "accepted": len(context.ledger),
            "submitted": shared.budget.taken,
            "retries": shared.retries,
            "cancels_requested": shared.cancels,
            "by_status": dict(sorted(by_status.items())),
            "by_kind": dict(sorted(by_kind.items())),
            "load_phase_seconds": load_seconds,
            "retry_after_waited_seconds": shared.retry_after_waited,
            "websocket_events": shared.ws_events,
            "jobs_in_store": None if snapshot is None else len(snapshot.jobs),
        },
        jobs_per_second=jobs_per_second,
        queue={
            "max_depth_seen": queue.max_depth,
            "queue_size": queue.queue_size,
            "samples": queue.samples,
        },
        chaos=None
        if chaos is None
        else {
            "killed_at_seconds": chaos.killed_at,
            "restart_seconds": chaos.restart_seconds,
            "running_at_kill": sorted(chaos.running),
            "queued_at_kill": sorted(chaos.queued),
            "surviving_workers": chaos.surviving_workers,
            "surviving_restart": chaos.surviving_restart,
            "restart_error": chaos.restart_error,
            "killed_node": chaos.node,
        },
        invariants=tuple(
            _invariants(context, queue, chaos, events, events_skip, workers_left, stop_status)
        ),
    )
