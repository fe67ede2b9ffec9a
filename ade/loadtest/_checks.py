"""The file- and process-level invariants, checked after the load (and after a chaos kill).

They read what the server left on disk and in /proc rather than asking the server, because the
point is to catch the server believing something the files contradict.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from ade.layout import JobLayout
from ade.loadtest._clients import is_terminal_event
from ade.loadtest._server import worker_processes
from ade.models import JobStatus
from ade.settings import load_settings
from ade.store import open_store

__all__ = [
    "StoreSnapshot",
    "check_events_file",
    "check_job_events",
    "read_store",
    "reap_these",
    "reap_workers",
]


# Notes the runtime may append after a job's terminal event: a retry creates a new job and
# records its id on the old one. A note changes no state; anything else after the end would.
POST_TERMINAL_NOTES = frozenset({"retry"})


def check_events_file(path: Path, job_id: str, status: str) -> str | None:
    """None if ``path`` is a well-formed event log of a job that ended in ``status``; otherwise
    what is wrong, naming the line.

    Well-formed: every line one JSON event of this job, ``seq`` strictly increasing, exactly one
    terminal event, carrying the job's final status, followed by nothing but retry notes."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"{job_id}: events.ndjson is missing"
    except (OSError, UnicodeDecodeError) as exc:
        return f"{job_id}: events.ndjson unreadable ({type(exc).__name__})"
    if not text.endswith("\n"):
        return f"{job_id}: events.ndjson does not end with a newline (torn last line)"
    terminal: dict[str, Any] | None = None
    last_seq = 0
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            event = json.loads(line)
        except ValueError:
            return f"{job_id}: events.ndjson line {number} is not JSON"
        if not isinstance(event, dict) or "type" not in event or "seq" not in event:
            return f"{job_id}: events.ndjson line {number} lacks type/seq"
        if event.get("job_id", job_id) != job_id:
            return f"{job_id}: events.ndjson line {number} names job {event.get('job_id')}"
        if not isinstance(event["seq"], int) or event["seq"] <= last_seq:
            return f"{job_id}: events.ndjson line {number} seq {event['seq']} after {last_seq}"
        last_seq = event["seq"]
        if terminal is not None and event["type"] not in POST_TERMINAL_NOTES:
            return (
                f"{job_id}: events.ndjson line {number} ({event['type']!r}) follows the "
                f"terminal event {terminal['type']!r}"
            )
        if is_terminal_event(event):
            terminal = event
    if last_seq == 0:
        return f"{job_id}: events.ndjson is empty"
    if terminal is None:
        return f"{job_id}: events.ndjson has no terminal event"
    detail = terminal.get("detail") or {}
    ended = detail.get("status") if isinstance(detail, dict) else None
    if ended != status:
        return f"{job_id}: events.ndjson ends in {ended!r} but the job is {status!r}"
    return None


@attrs.frozen
class StoreSnapshot:
    """Job id -> (status, error_message) for every job in the store."""

    jobs: dict[str, tuple[str, str | None]]

    def with_status(self, status: str) -> set[str]:
        return {job_id for job_id, (value, _) in self.jobs.items() if value == status}


async def read_store(data_dir: Path, database_url: str | None = None) -> StoreSnapshot:
    """Every job record, read straight from the server's SQLite store (WAL lets us read while
    a server runs, and after a SIGKILL the file is as the last commit left it) or from the
    cluster's PostgreSQL database (``database_url``)."""
    settings = load_settings({}, data_dir=data_dir, database_url=database_url)
    store = await trio.to_thread.run_sync(open_store, settings)
    try:
        jobs: dict[str, tuple[str, str | None]] = {}
        for status in JobStatus:
            for job in await store.jobs_with_status(status):
                jobs[job.id] = (job.status.value, job.error_message)
        return StoreSnapshot(jobs)
    finally:
        await store.aclose()


def check_job_events(data_dir: Path, snapshot: StoreSnapshot) -> tuple[int, list[str]]:
    """Check events.ndjson of every terminal job in ``snapshot``; (files checked, problems).

    Jobs still queued are not checked here: a graceful stop may leave them for the next start,
    and the lost-jobs invariant already follows every job the harness saw accepted."""
    problems: list[str] = []
    checked = 0
    jobs_dir = load_settings({}, data_dir=data_dir).jobs_dir
    for job_id, (status, _) in sorted(snapshot.jobs.items()):
        if not JobStatus(status).is_terminal:
            continue
        checked += 1
        problem = check_events_file(JobLayout.of(jobs_dir, job_id).events, job_id, status)
        if problem is not None:
            problems.append(problem)
    return checked, problems


async def reap_workers(data_dir: Path, grace: float, *, kill: bool = True) -> list[str]:
    """Wait up to ``grace`` seconds for this data dir's workers to vanish and return the ones
    that remain as "pid cmdline"; SIGKILL them unless ``kill`` is false (so the harness itself
    leaks nothing)."""
    alive = await _wait_gone(lambda: worker_processes(data_dir), grace)
    if kill:
        _kill(alive)
    return [f"{pid} {cmdline[:200]}" for pid, cmdline in alive]


async def reap_these(data_dir: Path, survivors: list[str], grace: float) -> list[str]:
    """Like :func:`reap_workers` for the given "pid cmdline" entries only (the workers of a
    killed server, not the new ones of its successor); SIGKILLs what remains."""
    wanted = {int(entry.split(" ", 1)[0]) for entry in survivors}

    def still() -> list[tuple[int, str]]:
        return [(pid, cmd) for pid, cmd in worker_processes(data_dir) if pid in wanted]

    alive = await _wait_gone(still, grace)
    _kill(alive)
    return [f"{pid} {cmdline[:200]}" for pid, cmdline in alive]


async def _wait_gone(
    probe: Callable[[], list[tuple[int, str]]], grace: float
) -> list[tuple[int, str]]:
    deadline = time.monotonic() + grace
    while True:
        alive = probe()
        if not alive or time.monotonic() >= deadline:
            return alive
        await trio.sleep(0.05)


def _kill(processes: list[tuple[int, str]]) -> None:
    for pid, _ in processes:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
