"""``events.ndjson``: each job's append-only lifecycle log, and a reader that survives crashes.

Format: one JSON object per line, UTF-8, ``\\n``-terminated, never rewritten::

    {"seq": 3, "ts": "2026-...+00:00", "job_id": "...", "workspace_id": "default",
     "attempt": 1, "type": "pass_finished", "detail": {"pass": "map", "fields": 4}}

Why the reader is tolerant: the service can die (SIGKILL, power loss) halfway through writing a
line. A torn last line must not make the whole history unreadable, so a line that is not one
complete JSON event is skipped (and counted). Why the writer repairs before appending: the next
line written after a crash would otherwise be glued onto the torn fragment and be lost with it;
:func:`repair_tail` terminates the fragment first so only the torn event is lost.

Only the recorder actor writes these files (one writer, so appends never interleave).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from ade.models import LIFECYCLE_EVENT_TYPES, TERMINAL_EVENT_TYPES, JobEvent
from ade.serde import converter

__all__ = [
    "LIFECYCLE_EVENT_TYPES",
    "TERMINAL_EVENT_TYPES",
    "EventScan",
    "append_events",
    "event_line",
    "read_events",
    "repair_tail",
    "scan_events",
]


def event_line(event: JobEvent) -> bytes:
    """One complete line. ``ensure_ascii`` keeps it to one write of plain bytes."""
    return (json.dumps(converter.unstructure(event), separators=(",", ":")) + "\n").encode()


def repair_tail(path: Path) -> bool:
    """Terminate a torn last line with ``\\n``; returns True if a repair was needed."""
    try:
        with path.open("rb+") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                return False
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) == b"\n":
                return False
            handle.write(b"\n")
            return True
    except FileNotFoundError:
        return False


def append_events(path: Path, events: Sequence[JobEvent]) -> None:
    """Append whole lines with one ``write`` on an ``O_APPEND`` descriptor.

    A single write of a few hundred bytes to a local file is not interleaved with anything and
    either lands or (on a crash) leaves a torn tail that the reader skips.
    """
    if not events:
        return
    payload = b"".join(event_line(event) for event in events)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(payload)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)


@attrs.frozen
class EventScan:
    events: tuple[JobEvent, ...]
    # Lines that were not one complete event (a torn tail after a crash, normally at most one).
    skipped_lines: int

    @property
    def last_seq(self) -> int:
        return self.events[-1].seq if self.events else 0


def _parse_line(line: bytes) -> JobEvent | None:
    try:
        raw: Any = json.loads(line)
        if not isinstance(raw, dict):
            return None
        return converter.structure(raw, JobEvent)
    except Exception:  # any malformed line is a torn or foreign line: skipped and counted
        return None


def _parse(lines: Iterable[bytes], after: int) -> EventScan:
    events: list[JobEvent] = []
    skipped = 0
    for line in lines:
        if not line.endswith(b"\n"):
            # The writer always ends a line; a line without its newline was cut short.
            skipped += 1
            continue
        if not line.strip():
            continue
        event = _parse_line(line)
        if event is None:
            skipped += 1
        elif event.seq > after:
            events.append(event)
    return EventScan(tuple(events), skipped)


def scan_events(path: Path, *, after: int = 0) -> EventScan:
    """Every complete event with ``seq > after`` in file order, plus how many lines were skipped.

    A missing file is an empty history (a job whose directory is gone has nothing to replay).
    """
    try:
        with path.open("rb") as handle:
            return _parse(handle, after)
    except FileNotFoundError:
        return EventScan((), 0)


def read_events(path: Path, *, after: int = 0) -> list[JobEvent]:
    """:func:`scan_events` without the bookkeeping: the events a replay sends."""
    return list(scan_events(path, after=after).events)
