"""A job's directory as an object: every file name in ``jobs/<job_id>/`` is defined here, once.

The layout promised to operators (docs/operations.md, docs/job-execution.md)::

    jobs/<job_id>/
      inputs/            the job's documents, hard-linked from the document store (else copied)
      run-request.json   the exact parameters handed to the worker subprocess
      .venv -> ../../venvs/<config_id>/
      tmp/               only while the worker runs: TMPDIR, HOME, and tmp/output/ for the engine
      artifact.json, normalized.xlsx   published from tmp/output/ after a successful run
      events.ndjson      the lifecycle log (written by the recorder only)

Paths inside the run request are relative to the job directory (the worker's cwd), so those are
kept here as relative names too (:data:`TMP_DIR`, :data:`OUTPUT_DIR`, ...). Import-light on
purpose: the worker subprocess, the engine and the API all use it.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from ade.ids import is_id

__all__ = [
    "ARTIFACT_FILE",
    "EVENTS_FILE",
    "INPUTS_DIR",
    "NORMALIZED_FILE",
    "OUTPUT_DIR",
    "PUBLISHED_FILES",
    "REQUEST_FILE",
    "SNAPSHOT_PATH",
    "TMP_DIR",
    "VENV_LINK",
    "JobLayout",
    "is_safe_id",
]

INPUTS_DIR = "inputs"
REQUEST_FILE = "run-request.json"
VENV_LINK = ".venv"
# The frozen config package, through the .venv link (see ade.configs.prepare).
SNAPSHOT_PATH = f"{VENV_LINK}/ade-build/snapshot"
TMP_DIR = "tmp"
OUTPUT_DIR = f"{TMP_DIR}/output"
NORMALIZED_FILE = "normalized.xlsx"
ARTIFACT_FILE = "artifact.json"
EVENTS_FILE = "events.ndjson"
# What a successful worker leaves in tmp/output/ and the supervisor publishes.
PUBLISHED_FILES = (NORMALIZED_FILE, ARTIFACT_FILE)


def is_safe_id(value: str) -> bool:
    """True for an id that is one plain path component (job, document and config ids)."""
    return is_id(value)


@attrs.frozen
class JobLayout:
    """Where each file of one job lives. ``root`` is ``jobs/<job_id>``."""

    root: Path

    @classmethod
    def of(cls, jobs_dir: Path, job_id: str) -> JobLayout:
        """The layout of ``job_id`` under ``jobs_dir``; ValueError for an id that is not one
        safe path component (it must never name a path outside ``jobs_dir``)."""
        if not is_safe_id(job_id):
            raise ValueError(f"job id {job_id!r} is not a safe path component")
        return cls(jobs_dir / job_id)

    @property
    def job_id(self) -> str:
        return self.root.name

    @property
    def inputs(self) -> Path:
        return self.root / INPUTS_DIR

    @property
    def request(self) -> Path:
        return self.root / REQUEST_FILE

    @property
    def venv_link(self) -> Path:
        return self.root / VENV_LINK

    @property
    def tmp(self) -> Path:
        return self.root / TMP_DIR

    @property
    def output_dir(self) -> Path:
        """Where the engine writes, under tmp/ (the only writable place of the job)."""
        return self.root / OUTPUT_DIR

    @property
    def artifact(self) -> Path:
        return self.root / ARTIFACT_FILE

    @property
    def normalized(self) -> Path:
        return self.root / NORMALIZED_FILE

    @property
    def events(self) -> Path:
        return self.root / EVENTS_FILE
