"""Every job the harness saw accepted (202), and what it expects of each: plain data, no I/O."""

from __future__ import annotations

from typing import Any

import attrs

from ade.models import TERMINAL_STATUSES

__all__ = ["TERMINAL", "JobBudget", "Ledger", "TrackedJob"]

TERMINAL = frozenset(status.value for status in TERMINAL_STATUSES)


@attrs.define
class TrackedJob:
    job_id: str
    config_kind: str
    workbook_kind: str
    # "submit" or "retry" (a retry creates the job the server answered with).
    via: str
    accepted_at: float
    cancel_requested: bool = False
    # The last representation GET /jobs/{id} returned (final after the drain phase).
    record: dict[str, Any] | None = None

    @property
    def status(self) -> str | None:
        return None if self.record is None else self.record.get("status")

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class Ledger:
    """Jobs by id, in acceptance order. A replayed 202 (Idempotency-Key) maps to the same id."""

    def __init__(self) -> None:
        self.jobs: dict[str, TrackedJob] = {}

    def accept(self, job: TrackedJob) -> TrackedJob:
        return self.jobs.setdefault(job.job_id, job)

    def __len__(self) -> int:
        return len(self.jobs)

    def pending(self) -> list[TrackedJob]:
        return [job for job in self.jobs.values() if not job.terminal]


class JobBudget:
    """The ``--jobs K`` bound shared by all clients: each new submission takes one unit."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.taken = 0

    def take(self) -> bool:
        if self.limit is not None and self.taken >= self.limit:
            return False
        self.taken += 1
        return True
