"""How a job ended: :class:`JobEnding`, the one type from the supervisor to the job record.

The supervisor turns what it observed of the worker (its :class:`~ade.worker.protocol.WorkerResult`,
exit status, limits) into a ``JobEnding``; a worker actor builds one itself when the job was
stopped from outside or the runner could not start it. The recorder writes it, unchanged, into
the :class:`~ade.models.JobRecord` and the job's terminal event (``finish``, ``error`` or
``cancel``). The engine's summary travels inside it (``summary``).

The messages of the endings that do not come from the worker (cancel, shutdown, restart) are
defined here, once.
"""

from __future__ import annotations

from typing import Any

import attrs

from ade.models import JobStatus
from ade.worker.protocol import Limit

__all__ = [
    "CANCELLED_MESSAGE",
    "MAX_DIAGNOSTICS",
    "RESTART_MESSAGE",
    "SHUTDOWN_MESSAGE",
    "JobEnding",
    "cap_diagnostics",
    "crashed_ending",
    "node_message",
    "stopped_ending",
]

RESTART_MESSAGE = "interrupted by a service restart; retry to run again"
SHUTDOWN_MESSAGE = "interrupted by service shutdown; retry to run again"
CANCELLED_MESSAGE = "cancelled on request"


def node_message(node_id: str) -> str:
    """A job whose node died in a cluster (the message names the node)."""
    return f"interrupted: node {node_id} stopped responding; retry to run again"


# Diagnostics are for operators; kept short enough to sit in one events.ndjson line.
MAX_DIAGNOSTICS = 2000


@attrs.frozen
class JobEnding:
    """How one run of a job ended (no cell values anywhere)."""

    status: JobStatus  # SUCCESS, ERROR or CANCELLED
    # User-facing; None on success. Names the limit, file/function/pass — never cell values.
    message: str | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    # Which limit fired (ade.worker.protocol.Limit): "timeout", "cpu", "memory", "fsize", or
    # "cancelled" / "shutdown" when the job was stopped from outside.
    limit: str | None = None
    sandbox_layers: tuple[str, ...] = ()
    duration_seconds: float = 0.0
    # The tail of the worker's stderr (tracebacks), at most MAX_DIAGNOSTICS characters:
    # diagnostics only, never shown as the message.
    diagnostics: str | None = None
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    # Why a job was stopped from outside: "user" (cancel) or "shutdown"; None if it ended itself.
    stopped_by: str | None = None
    # The engine's end-of-run summary (docs/api.md); empty when the engine did not finish.
    summary: dict[str, Any] = attrs.field(factory=dict)
    # How the job's process was started ("fork" or "spawn"); None when none was started.
    worker_start: str | None = None


def cap_diagnostics(text: str | None) -> str | None:
    """The last :data:`MAX_DIAGNOSTICS` characters (the end of a traceback says the most)."""
    return text[-MAX_DIAGNOSTICS:] if text else None


def stopped_ending(reason: str, duration_seconds: float) -> JobEnding:
    """The job was stopped from outside: a user's cancel, or shutdown after the grace period."""
    if reason == "user":
        return JobEnding(
            JobStatus.CANCELLED,
            message=CANCELLED_MESSAGE,
            limit=Limit.CANCELLED,
            duration_seconds=duration_seconds,
            stopped_by="user",
        )
    return JobEnding(
        JobStatus.ERROR,
        message=SHUTDOWN_MESSAGE,
        limit=Limit.SHUTDOWN,
        duration_seconds=duration_seconds,
        stopped_by="shutdown",
    )


def crashed_ending(exc: Exception, duration_seconds: float) -> JobEnding:
    """The runner itself raised (it could not even launch the job)."""
    return JobEnding(
        JobStatus.ERROR,
        message=f"worker could not start: {type(exc).__name__}",
        duration_seconds=duration_seconds,
        diagnostics=f"{type(exc).__name__}: {exc}"[:MAX_DIAGNOSTICS],
    )
