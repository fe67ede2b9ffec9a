"""The job runtime: a dispatcher, N workers and a recorder on trio, behind one facade.

Typical use (``ade serve``, tests, benchmarks)::

    async with open_runtime(settings) as runtime:
        job = await runtime.submit(workspace_id="default", config_version_id=cfg,
                                   document_ids=[doc])
        final = await runtime.wait("default", job.id)

Leaving the block drains gracefully (see :meth:`Runtime.drain` and docs/operations.md).
"""

from __future__ import annotations

from ade.errors import DataDirLocked, ShuttingDown
from ade.runtime.ending import CANCELLED_MESSAGE, RESTART_MESSAGE, SHUTDOWN_MESSAGE, JobEnding
from ade.runtime.events import (
    TERMINAL_EVENT_TYPES,
    EventScan,
    read_events,
    scan_events,
)
from ade.runtime.recorder import Subscription
from ade.runtime.service import (
    Runtime,
    RuntimeStatistics,
    StatusTotals,
    open_runtime,
)
from ade.runtime.workers import JobRunner

__all__ = [
    "CANCELLED_MESSAGE",
    "RESTART_MESSAGE",
    "SHUTDOWN_MESSAGE",
    "TERMINAL_EVENT_TYPES",
    "DataDirLocked",
    "EventScan",
    "JobEnding",
    "JobRunner",
    "Runtime",
    "RuntimeStatistics",
    "ShuttingDown",
    "StatusTotals",
    "Subscription",
    "open_runtime",
    "read_events",
    "scan_events",
]
