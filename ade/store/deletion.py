"""What both stores say when a deletion is refused, and the tables :meth:`existing_ids` knows.

A row is deleted in one transaction together with the check that nothing active needs it, so a
refusal and a deletion can never both happen; the files go afterwards (ade.retention).
"""

from __future__ import annotations

from collections.abc import Sequence

from ade.errors import Conflict
from ade.models import JobRecord, JobStatus

__all__ = [
    "ACTIVE_STATUSES",
    "FINISHED_STATUSES",
    "ID_TABLES",
    "MAX_NAMED",
    "in_use",
    "not_finished",
]

ACTIVE_STATUSES = tuple(status.value for status in JobStatus if not status.is_terminal)
FINISHED_STATUSES = tuple(status.value for status in JobStatus if status.is_terminal)
# kind -> table; documents and configs are looked up by id alone (ids are global: documents by
# construction, config ids by content, whichever workspace holds them).
ID_TABLES = {"job": "jobs", "document": "documents", "config": "config_versions"}
# A refusal names at most this many of the jobs in the way.
MAX_NAMED = 5


def not_finished(job: JobRecord) -> Conflict:
    return Conflict(
        f"job {job.id} is {job.status.value}; only a finished job can be deleted (cancel it first)",
        {"job_id": job.id, "status": job.status.value},
    )


def in_use(kind: str, id_: str, job_ids: Sequence[str]) -> Conflict:
    field = "document_id" if kind == "document" else "config_version_id"
    shown = "document" if kind == "document" else "config version"
    return Conflict(
        f"{shown} {id_} is used by queued or running job(s) {', '.join(job_ids)}; "
        "delete it once they have finished",
        {field: id_, "job_ids": list(job_ids)},
    )
