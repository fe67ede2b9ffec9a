"""The harness end to end: a real `ade serve` subprocess on 127.0.0.1, real clients, real files.

Kept short (a few seconds of load each) so tests/loadtest stays within about a minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ade.loadtest import RECOVERY_MESSAGE, LoadTestOptions, main, run_loadtest

ROOT = Path(__file__).resolve().parents[2]

REPORT_KEYS = {
    "machine",
    "settings",
    "duration_seconds",
    "requests_by_route",
    "outage_requests_by_route",
    "requests_total",
    "submit_latency_ms",
    "job_latency_seconds",
    "jobs",
    "jobs_per_second",
    "queue",
    "chaos",
    "invariants",
    "passed",
}
LATENCY_KEYS = {"count", "p50", "p95", "p99", "max"}
INVARIANTS = [
    "zero 5xx",
    "zero lost jobs",
    "queue bound never exceeded",
    "every events.ndjson parses and ends in its terminal event",
    "no worker process left after the server stops",
    "the server stops gracefully on SIGTERM",
    "no request failed without a response (outside a chaos outage)",
    "429s carry Retry-After; streams end in the terminal event; bodies are well-formed",
]


def _failed(report: dict) -> list[str]:
    return [f"{i['name']}: {i['detail']}" for i in report["invariants"] if i["result"] != "PASS"]


def test_short_run_through_the_cli_holds_every_invariant() -> None:
    completed = subprocess.run(
        [
            sys.executable, "-c", "import sys; from ade.cli import main; sys.exit(main())",
            # --jobs ends the run; --duration is only the safety bound on a busy machine.
            "loadtest", "--clients", "6", "--duration", "60", "--jobs", "12", "--seed", "11",
            "--configs", "ok=6,fail=1,timeout=1,memory=1", "--workbooks", "tiny=3,large=1",
            "--large-rows", "300", "--job-timeout", "5", "--cancel-fraction", "0",
            "--retry-fraction", "1", "--queue-size", "3", "--json",
        ],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = json.loads(completed.stdout)
    assert set(report) == REPORT_KEYS
    assert report["passed"] is True, _failed(report)
    assert [i["name"] for i in report["invariants"]] == INVARIANTS
    assert report["machine"]["cores"] == os.cpu_count()
    assert set(report["submit_latency_ms"]) == LATENCY_KEYS
    assert set(report["job_latency_seconds"]) == LATENCY_KEYS
    jobs = report["jobs"]
    assert jobs["submitted"] == 12
    # Every submission and every retry was accepted and ended; the end-to-end latency of each
    # came from the server's own timestamps.
    assert jobs["accepted"] == 12 + jobs["retries"]
    assert report["job_latency_seconds"]["count"] == jobs["accepted"]
    assert report["requests_by_route"]["POST /jobs"]["202"] == 12
    assert report["requests_by_route"]["POST /documents"]["201"] == 12
    assert report["submit_latency_ms"]["count"] == sum(
        report["requests_by_route"]["POST /jobs"].values()
    )
    # Each misbehaving package fails its job; nothing was cancelled in this run.
    for kind in ("fail", "timeout", "memory"):
        assert set(jobs["by_kind"].get(kind, {"error": 0})) == {"error"}, jobs["by_kind"]
    assert set(jobs["by_kind"]["ok"]) == {"success"}, jobs["by_kind"]
    assert 0 < report["queue"]["max_depth_seen"] <= report["queue"]["queue_size"] == 3
    assert report["queue"]["samples"] > 0
    assert report["jobs_per_second"] > 0
    assert report["chaos"] is None


def chaos_options(**changes: Any) -> LoadTestOptions:
    """A short chaos run: sleeping ("timeout") jobs keep the workers busy at the kill."""
    values: dict[str, Any] = {
        "clients": 6,
        "duration": 6,
        "chaos": True,
        "config_mix": {"ok": 0.7, "fail": 0.0, "timeout": 0.3, "memory": 0.0},
        "workbook_mix": {"tiny": 1.0, "large": 0.0},
        "job_timeout": 4,
        "cancel_fraction": 0.0,
        "retry_fraction": 0.0,
        "queue_size": 4,
        "drain_timeout": 60,
        **changes,
    }
    return LoadTestOptions(**values)


async def test_chaos_run_recovers_every_job_across_a_sigkill() -> None:
    report = await run_loadtest(chaos_options(seed=3))
    failed = [f"{i.name}: {i.detail}" for i in report.invariants if i.result != "PASS"]
    assert report.passed, failed
    assert report.chaos is not None
    assert report.chaos["killed_at_seconds"] is not None
    assert report.chaos["restart_seconds"] is not None
    names = [i.name for i in report.invariants]
    assert names[-2:] == [
        "chaos: jobs running at the kill end in error with the recovery message",
        "chaos: jobs queued at the kill complete after the restart",
    ]
    # Timeout jobs hold both workers for 4 s, so the kill always finds work in flight.
    assert report.chaos["running_at_kill"] or report.chaos["queued_at_kill"]
    assert RECOVERY_MESSAGE == "interrupted by a service restart; retry to run again"


def test_a_job_that_outlives_the_drain_is_reported_lost_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # One sleeping job, a 30 s job timeout and a 1 s drain: the job cannot be terminal in time.
    status = main(
        [
            "--clients", "1", "--jobs", "1", "--duration", "2", "--configs", "timeout=1",
            "--job-timeout", "30", "--drain-timeout", "1", "--seed", "1",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 1, out
    assert "[FAIL] zero lost jobs — 1 of 1 not terminal: " in out
    assert "RESULT: FAIL" in out


def test_usage_errors_exit_2_and_name_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--clients", "0"]) == 2
    assert "--clients must be > 0" in capsys.readouterr().err
    assert main(["--configs", "ok=1,bogus=2"]) == 2
    assert "--configs: 'bogus=2' is not KIND=WEIGHT" in capsys.readouterr().err
    assert main(["--url", "http://127.0.0.1:1", "--chaos"]) == 2
    assert "--chaos needs a server the harness starts" in capsys.readouterr().err


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, start time in clock ticks) of each child of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append((int(entry.name), fields[19]))
    return found


def test_sigterm_stops_the_harness_and_the_server_it_started() -> None:
    harness = subprocess.Popen(
        [sys.executable, "-c", "import sys; from ade.cli import main; sys.exit(main())",
         "loadtest", "--clients", "2", "--duration", "60", "--configs", "ok=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        servers: list[tuple[int, str]] = []
        while not servers and time.monotonic() < deadline:
            time.sleep(0.1)
            servers = _children(harness.pid)
        assert servers, "the harness never started its server"
        time.sleep(2)  # let the load begin
        harness.send_signal(signal.SIGTERM)
        _, err = harness.communicate(timeout=60)
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
    assert harness.returncode == 130, err[-2000:]
    assert "ade loadtest: interrupted; the server it started was stopped" in err
    for pid, started in servers:
        assert _state(pid, started) in (None, "Z"), f"server {pid} still running"


def _state(pid: int, started: str) -> str | None:
    """The process state letter, or None if there is no such process — or if the pid now
    belongs to another process (pid_max is 32768 here: a busy machine reuses pids within
    seconds, so the start time tells the server from a newcomer)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0] if fields[19] == started else None


async def test_a_three_node_cluster_run_rescues_the_killed_node_s_jobs() -> None:
    # `ade loadtest --nodes 3 --chaos`: a private cluster on a PostgreSQL database of its own;
    # one random node is SIGKILLed and left dead, the two others rescue and finish its work.
    from support.postgres import ADMIN_URL, require_postgres

    require_postgres()
    report = await run_loadtest(
        chaos_options(
            seed=5, nodes=3, postgres_url=ADMIN_URL, max_concurrency=1, cancel_fraction=0.1
        )
    )
    failed = [f"{i.name}: {i.detail}" for i in report.invariants if i.result != "PASS"]
    assert report.passed, failed
    assert report.chaos is not None
    victim = report.chaos["killed_node"]
    assert victim in ("node-1", "node-2", "node-3")
    assert [i.name for i in report.invariants][-2:] == [
        f"chaos: jobs running on the killed {victim} end in error naming it",
        "chaos: jobs queued at the kill complete on the other nodes",
    ]
    assert report.settings["nodes"] == 3
