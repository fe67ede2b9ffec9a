"""The run's result: one frozen value, rendered as a terminal table or as JSON."""

from __future__ import annotations

import json
from typing import Any

import attrs

from ade.loadtest._stats import LatencySummary

__all__ = ["FAIL", "PASS", "SKIP", "Invariant", "Report", "format_table", "report_json"]

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@attrs.frozen
class Invariant:
    name: str
    result: str  # PASS | FAIL | SKIP
    detail: str = ""


@attrs.frozen
class Report:
    machine: dict[str, Any]
    settings: dict[str, Any]
    duration_seconds: float
    requests_by_route: dict[str, dict[str, int]]
    outage_requests_by_route: dict[str, dict[str, int]]
    requests_total: int
    submit_latency_ms: LatencySummary
    job_latency_seconds: LatencySummary
    jobs: dict[str, Any]
    jobs_per_second: float
    queue: dict[str, Any]
    chaos: dict[str, Any] | None
    invariants: tuple[Invariant, ...]

    @property
    def passed(self) -> bool:
        return all(invariant.result != FAIL for invariant in self.invariants)


def report_json(report: Report) -> str:
    data = attrs.asdict(report, recurse=True)
    data["passed"] = report.passed
    return json.dumps(data, indent=2, sort_keys=False, default=str)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(report: Report) -> str:
    lines: list[str] = []
    machine = report.machine
    lines.append(
        f"ADE load test — {machine['date']} — {machine['cores']} cores — "
        f"Python {machine['python']} — {report.duration_seconds:.1f} s"
    )
    settings = report.settings
    lines.append(
        "  "
        + ", ".join(
            f"{key}={settings[key]}"
            for key in ("target", "clients", "duration", "jobs", "greedy", "chaos", "seed")
        )
    )
    lines.append("")
    lines.append(f"{'route':<28} {'status':<26} {'count':>8}")
    for title, table in (
        ("", report.requests_by_route),
        (" (outage)", report.outage_requests_by_route),
    ):
        for route, outcomes in table.items():
            for outcome, count in outcomes.items():
                lines.append(f"{route + title:<28} {outcome:<26} {count:>8}")
    lines.append(f"{'total':<55} {report.requests_total:>8}")
    lines.append("")
    s = report.submit_latency_ms
    lines.append(
        f"submit latency ms (n={s.count}):  p50 {_num(s.p50)}  p95 {_num(s.p95)}  "
        f"p99 {_num(s.p99)}  max {_num(s.max)}"
    )
    j = report.job_latency_seconds
    lines.append(
        f"job end-to-end s (n={j.count}):  p50 {_num(j.p50, 2)}  p95 {_num(j.p95, 2)}  "
        f"p99 {_num(j.p99, 2)}  max {_num(j.max, 2)}"
    )
    jobs = report.jobs
    lines.append(
        f"jobs: {jobs['accepted']} accepted ({jobs['retries']} retries), "
        f"{jobs['cancels_requested']} cancels requested, by status {jobs['by_status']}; "
        f"{report.jobs_per_second:.2f} jobs/s"
    )
    lines.append(f"jobs by config kind: {jobs['by_kind']}")
    queue = report.queue
    lines.append(
        f"queue: highest depth seen {queue['max_depth_seen']} of ADE_QUEUE_SIZE "
        f"{queue['queue_size']} ({queue['samples']} /api/v1/health samples)"
    )
    if report.chaos is not None:
        chaos = report.chaos
        if chaos["killed_at_seconds"] is None:
            lines.append("chaos: the kill never happened")
        else:
            back = (
                f"back after {chaos['restart_seconds']:.2f} s"
                if chaos["restart_seconds"] is not None
                else "the restart FAILED"
            )
            victim = chaos.get("killed_node")
            if victim is not None:
                back = "left dead; the other nodes rescue its jobs"
            lines.append(
                f"chaos: SIGKILL{' ' + victim if victim else ''} at "
                f"{chaos['killed_at_seconds']:.1f} s with {len(chaos['running_at_kill'])} running "
                f"{'on it ' if victim else ''}and "
                f"{len(chaos['queued_at_kill'])} queued; {back}"
            )
    lines.append("")
    for invariant in report.invariants:
        detail = f" — {invariant.detail}" if invariant.detail else ""
        lines.append(f"[{invariant.result}] {invariant.name}{detail}")
    lines.append("")
    lines.append("RESULT: " + ("PASS" if report.passed else "FAIL"))
    return "\n".join(lines)
