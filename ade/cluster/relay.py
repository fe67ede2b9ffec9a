"""Live events across nodes: another node's job events reach this node's subscribers.

Theory of operation
-------------------
The recorder of the node running a job stays the only writer of that job's ``events.ndjson``.
After it appends events it notifies channel ``ade_events`` with a *pointer*, never the event:
``"<node> <workspace> <job> <first seq> <last seq>"`` (a payload is capped at 8000 bytes by
PostgreSQL, an event detail is not). Every other node's relay receives the pointer and, when a
local subscriber or waiter cares about that job, reads the new lines from the shared data
directory (``seq`` above what it relayed last) and publishes them into its own hub, so a
websocket on node A streams a job running on node C exactly as if it ran on A.

Why reading from the file is exact: the pointer is sent after the lines were appended (and the
append is flushed before), and the shared filesystem must make a completed write visible to
readers on other nodes (docs/operations.md, "What the shared data directory must guarantee").
A lost or coalesced notification only delays delivery until the job's next one: the relay reads
everything after the last ``seq`` it published, not just the pointer's range, and subscribers
skip what they have already seen (``seq``), as they do for ``?after=`` replays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import attrs
import trio

from ade.layout import JobLayout
from ade.models import JobEvent
from ade.runtime.events import TERMINAL_EVENT_TYPES, read_events

__all__ = ["EventPointer", "EventRelay", "format_pointer", "parse_pointer"]

logger = logging.getLogger(__name__)


@attrs.frozen
class EventPointer:
    node_id: str
    workspace_id: str
    job_id: str
    first: int
    last: int


def format_pointer(pointer: EventPointer) -> str:
    return (
        f"{pointer.node_id} {pointer.workspace_id} {pointer.job_id} {pointer.first} {pointer.last}"
    )


def parse_pointer(payload: str) -> EventPointer | None:
    """None for a payload that is not a pointer (logged; never fatal)."""
    parts = payload.split(" ")
    if len(parts) != 5 or not parts[3].isdigit() or not parts[4].isdigit():
        return None
    return EventPointer(parts[0], parts[1], parts[2], int(parts[3]), int(parts[4]))


class Hub(Protocol):
    """What the relay needs from the node's event hub."""

    def wants(self, workspace_id: str, job_id: str) -> bool: ...

    def publish(self, event: JobEvent) -> None: ...


class EventRelay:
    """Publishes other nodes' events into ``hub``; one per node."""

    def __init__(
        self,
        hub: Hub,
        jobs_dir: Path,
        node_id: str,
        *,
        read: Callable[[Path, int], list[JobEvent]] | None = None,
    ) -> None:
        self._hub = hub
        self._jobs_dir = jobs_dir
        self._node_id = node_id
        self._read = read or (lambda path, after: read_events(path, after=after))
        # job id -> highest seq published here; dropped at the job's terminal event.
        self._relayed: dict[str, int] = {}
        self.relayed_total = 0

    async def handle(self, payload: str) -> None:
        pointer = parse_pointer(payload)
        if pointer is None:
            logger.warning("ignored a malformed event notification: %r", payload[:200])
            return
        if pointer.node_id == self._node_id:
            return  # our own recorder already published these
        if not self._hub.wants(pointer.workspace_id, pointer.job_id):
            self._relayed.pop(pointer.job_id, None)
            return
        after = self._relayed.get(pointer.job_id, pointer.first - 1)
        if pointer.last <= after:
            return
        try:
            path = JobLayout.of(self._jobs_dir, pointer.job_id).events
        except ValueError:
            logger.warning("ignored an event notification for job %r", pointer.job_id[:100])
            return
        events = await trio.to_thread.run_sync(self._read, path, after)
        for event in events:
            if event.job_id != pointer.job_id:
                continue  # never trust a path blindly: a log names its own job
            self._hub.publish(event)
            self.relayed_total += 1
            self._relayed[pointer.job_id] = event.seq
            if event.type in TERMINAL_EVENT_TYPES:
                self._relayed.pop(pointer.job_id, None)
                break
