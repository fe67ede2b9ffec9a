"""Observability: request ids, log lines, counters and histograms kept as plain data.

The runtime and the stores keep their own counts in plain objects (:class:`Histogram`,
:class:`JobTelemetry`) and hand out frozen snapshots; only :mod:`ade.telemetry.metrics` (at
scrape time) turns them into Prometheus families. So deciding what to count stays apart from
the I/O of exporting it, and nothing here imports prometheus-client but that module.
"""

from __future__ import annotations

from ade.telemetry.context import current_request_id, request_scope
from ade.telemetry.histogram import Histogram, HistogramSnapshot

__all__ = ["Histogram", "HistogramSnapshot", "current_request_id", "request_scope"]
