"""JSON views of ADE's records, as the API returns them (links included)."""

from __future__ import annotations

from typing import Any

from ade.api.routing import WORKSPACE_PREFIX
from ade.models import ConfigVersion, Document, JobRecord
from ade.outcome import issues_line, outcome_of
from ade.serde import converter

__all__ = ["config_view", "document_view", "job_location", "job_view", "workspace_path"]


def workspace_path(workspace_id: str, rest: str = "") -> str:
    return WORKSPACE_PREFIX.replace("{workspace_id}", workspace_id) + rest


def job_location(job: JobRecord) -> str:
    return workspace_path(job.workspace_id, f"/jobs/{job.id}")


def job_view(job: JobRecord) -> dict[str, Any]:
    data: dict[str, Any] = converter.unstructure(job)
    # At a glance (ade.outcome): how clean a finished run is, and its issues in one line.
    data["outcome"] = outcome_of(job.summary)
    data["issues"] = issues_line(job.summary)
    base = job_location(job)
    data["links"] = {
        "self": base,
        "events": f"{base}/events",
        "artifact": f"{base}/artifact",
        "output": f"{base}/output",
        "retry": f"{base}/retry",
        "cancel": f"{base}/cancel",
    }
    return data


def document_view(document: Document) -> dict[str, Any]:
    data: dict[str, Any] = converter.unstructure(document)
    data["links"] = {
        "self": workspace_path(document.workspace_id, f"/documents/{document.id}"),
        "content": workspace_path(document.workspace_id, f"/documents/{document.id}/content"),
    }
    return data


def config_view(config: ConfigVersion) -> dict[str, Any]:
    data: dict[str, Any] = converter.unstructure(config)
    data["links"] = {"self": workspace_path(config.workspace_id, f"/configs/{config.id}")}
    return data
