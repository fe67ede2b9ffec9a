"""What the runtime counts and logs about jobs, decided from the recorder's plans (no I/O).

:class:`JobTelemetry` sees every plan the recorder carried out (the ``observe`` of
:func:`ade.runtime.recorder.run_recorder`) and returns the log lines to write; it keeps the
counts /metrics exports: jobs finished by status and workspace, job durations, queue waits.
A plan names ids, statuses, times and limits only; the lines built here never carry an error
message, a file name or a detail of a worker event (those can hold what a user uploaded).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs

from ade.models import TERMINAL_EVENT_TYPES, JobRecord, JobStatus
from ade.runtime.recorder import Plan
from ade.telemetry.histogram import JOB_BUCKETS, Histogram, HistogramSnapshot

__all__ = ["JobLogLine", "JobTelemetry", "JobTelemetrySnapshot", "ending_reason"]

# The lifecycle steps that get a log line (progress and pass events do not: one job has dozens).
_LOGGED = {
    "enqueue": "queued",
    "start": "started",
    "finish": "finished",
    "error": "failed",
    "cancel": "cancelled",
    "recovery": "recovered",
}


@attrs.frozen
class JobLogLine:
    message: str
    fields: dict[str, Any]


@attrs.frozen
class JobTelemetrySnapshot:
    finished: dict[tuple[str, str], int]  # (status, workspace) -> jobs
    duration: HistogramSnapshot
    queue_wait: HistogramSnapshot


def ending_reason(job: JobRecord) -> str:
    """Why a finished job ended, in one word: ``completed``, the limit that stopped it
    (``timeout``, ``memory``, ``cancelled``, ``shutdown``, ``restart``...) or ``failed``."""
    if job.status is JobStatus.SUCCESS:
        return "completed"
    return job.limit or "failed"


def _seconds(start: Any, end: Any) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


class JobTelemetry:
    def __init__(self) -> None:
        self._finished: Counter[tuple[str, str]] = Counter()
        self._duration = Histogram(JOB_BUCKETS)
        self._queue_wait = Histogram(JOB_BUCKETS)

    def observe(self, plan: Plan) -> list[JobLogLine]:
        """Count what ``plan`` changed and return its log lines (one per lifecycle event)."""
        lines: list[JobLogLine] = []
        record = plan.record or plan.claimed
        for event in plan.events:
            step = _LOGGED.get(event.type)
            if step is None:
                continue
            fields: dict[str, Any] = {
                "job_id": plan.job_id,
                "workspace_id": event.workspace_id,
                "attempt": event.attempt,
                "step": event.type,
            }
            status = event.detail.get("status")
            if isinstance(status, str):
                fields["status"] = status
            if event.type == "recovery":
                fields["action"] = event.detail.get("action")
            if event.type == "enqueue" and "request_id" in event.detail:
                fields["request_id"] = event.detail["request_id"]
            if record is not None and event.type == "start":
                wait = _seconds(record.created_at, record.started_at)
                if wait is not None:
                    fields["queue_wait_seconds"] = round(wait, 3)
            if (
                record is not None
                and record.status.is_terminal
                and event.type in TERMINAL_EVENT_TYPES
            ):
                fields["reason"] = ending_reason(record)
                duration = _seconds(record.started_at, record.finished_at)
                if duration is not None:
                    fields["duration_seconds"] = round(duration, 3)
            lines.append(JobLogLine(f"job {plan.job_id} {step}", fields))
        self._count(plan)
        return lines

    def _count(self, plan: Plan) -> None:
        record = plan.record or plan.claimed
        if record is None or plan.insert or plan.previous_status == record.status:
            return
        if record.status is JobStatus.RUNNING:
            wait = _seconds(record.created_at, record.started_at)
            if wait is not None:
                self._queue_wait.observe(wait)
        elif record.status.is_terminal:
            self._finished[(record.status.value, record.workspace_id)] += 1
            duration = _seconds(record.started_at, record.finished_at)
            if duration is not None:
                self._duration.observe(duration)

    def snapshot(self) -> JobTelemetrySnapshot:
        return JobTelemetrySnapshot(
            dict(self._finished), self._duration.snapshot(), self._queue_wait.snapshot()
        )
