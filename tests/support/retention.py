"""Helpers for the retention tests: a finished job with a directory on disk, and aging a path
past the age below which a file without a record is left alone (ade.retention)."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path

from ade.ids import new_id
from ade.layout import JobLayout
from ade.models import JobRecord, JobStatus
from ade.settings import Settings


def finished_job(
    settings: Settings,
    finished_at: datetime,
    *,
    workspace: str = "default",
    status: JobStatus = JobStatus.SUCCESS,
) -> JobRecord:
    """A finished job's record (not stored) and its directory: a read-only ``inputs/`` with
    one file, as the runtime leaves it, and an output."""
    job = JobRecord(
        id=new_id(),
        workspace_id=workspace,
        status=status,
        config_version_id="cfg0",
        document_ids=("d0",),
        runtime_network_access=False,
        attempt=1,
        created_at=finished_at - timedelta(seconds=2),
        started_at=finished_at - timedelta(seconds=1),
        finished_at=finished_at,
    )
    root = JobLayout.of(settings.jobs_dir, job.id).root
    (root / "inputs").mkdir(parents=True)
    (root / "inputs" / "d0").write_bytes(b"x" * 5000)
    (root / "inputs").chmod(0o555)
    (root / "normalized.xlsx").write_bytes(b"y" * 3000)
    return job


def age(path: Path, seconds: float = 3600) -> None:
    """Make ``path`` look ``seconds`` old (its modification time)."""
    then = time.time() - seconds
    os.utime(path, (then, then))
