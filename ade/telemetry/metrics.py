"""``GET /metrics``: the Prometheus text format, from snapshots taken at scrape time.

Theory of operation
-------------------
Each app owns a :class:`ServiceMetrics` with its own ``CollectorRegistry`` (never the global
one: several apps in one process, as in the tests, would collide). Only what happens in the HTTP
layer is counted here, as it happens (requests by route template, method and status, with their
durations). Everything else already exists as a frozen snapshot and is read when Prometheus
scrapes: :meth:`ade.runtime.Runtime.statistics` (queue, workers, refusals, restarts,
subscribers), the runtime's :class:`~ade.telemetry.jobs.JobTelemetry` (finished jobs,
durations, queue waits), the store's latency histogram, the retention sweep's counts and the
sandbox layers. :func:`families` turns those snapshots into metric families and is pure: a test
drives it with made-up snapshots.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import attrs
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ade.telemetry.histogram import FAST_BUCKETS, HistogramSnapshot

__all__ = ["CONTENT_TYPE", "ServiceMetrics", "Snapshots", "families"]

# The classic text format every Prometheus version reads (prometheus-client's newer default,
# version=1.0.0, is the same text for metric names like ours but older servers refuse it).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@attrs.frozen
class Snapshots:
    """Everything /metrics reports besides the HTTP counters, as of one scrape."""

    runtime: Any  # ade.runtime.RuntimeStatistics (or any object with its fields)
    jobs: Any | None = None  # ade.telemetry.jobs.JobTelemetrySnapshot
    store_kind: str = "sqlite"
    store_latency: HistogramSnapshot | None = None
    sandbox_layers: tuple[tuple[str, bool], ...] = ()
    retention: Any | None = None  # ade.retention.SweepStatistics
    data_dir_bytes: int | None = None


def _histogram(
    name: str, doc: str, labels: list[str], series: Iterable[tuple[list[str], HistogramSnapshot]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, snap in series:
        buckets = [(_bound(b), c) for b, c in zip(snap.bounds, snap.counts, strict=True)]
        buckets.append(("+Inf", snap.count))
        family.add_metric(values, buckets, snap.total)
    return family


def _bound(value: float) -> str:
    return repr(float(value))


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def families(snap: Snapshots) -> Iterator[Metric]:
    """The metric families of one scrape (pure: snapshots in, families out)."""
    stats = snap.runtime
    yield _gauge("ade_jobs_queued", "Jobs waiting in the queue", stats.queued)
    yield _gauge(
        "ade_jobs_reserved", "Submissions in progress holding a queue slot", stats.reserved
    )
    yield _gauge("ade_jobs_running", "Jobs running on this node", stats.running)
    yield _gauge("ade_queue_capacity", "ADE_QUEUE_SIZE: jobs allowed to wait", stats.capacity)
    yield _gauge("ade_workers", "Worker actors on this node (ADE_MAX_CONCURRENCY)", stats.workers)
    yield _gauge("ade_workers_idle", "Workers waiting for a job", stats.idle_workers)
    yield _gauge(
        "ade_accepting",
        "1 while submissions are accepted, 0 while draining",
        1 if stats.accepting else 0,
    )
    totals = GaugeMetricFamily("ade_jobs", "Jobs in the store by status", labels=["status"])
    for status, count in attrs.asdict(stats.totals).items():
        totals.add_metric([status], count)
    yield totals
    yield CounterMetricFamily(
        "ade_admission_refusals",
        "Submissions refused with 429 because the queue was full",
        value=stats.admission_refusals,
    )
    yield CounterMetricFamily(
        "ade_worker_process_restarts",
        "Worker processes replaced after their runner failed",
        value=stats.worker_restarts,
    )
    yield CounterMetricFamily(
        "ade_worker_template_restarts",
        "Fork templates (or spawn standbys) restarted after dying or misbehaving",
        value=stats.template_restarts,
    )
    yield CounterMetricFamily(
        "ade_worker_ahead_discards",
        "Processes confined ahead of a job that could not serve it (the job ran in a fresh one)",
        value=stats.ahead_discards,
    )
    mode = GaugeMetricFamily(
        "ade_worker_start",
        "How job processes start (ADE_WORKER_START): 1 for the mode in use",
        labels=["mode"],
    )
    mode.add_metric([stats.worker_start], 1)
    yield mode
    yield _gauge("ade_websocket_subscribers", "Live event stream subscribers", stats.subscribers)
    yield CounterMetricFamily(
        "ade_websocket_subscribers_dropped",
        "Event stream subscribers dropped for falling behind",
        value=stats.dropped_subscribers,
    )
    if snap.jobs is not None:
        finished = CounterMetricFamily(
            "ade_jobs_finished",
            "Jobs finished, by status and workspace",
            labels=["status", "workspace"],
        )
        for (status, workspace), count in sorted(snap.jobs.finished.items()):
            finished.add_metric([status, workspace], count)
        yield finished
        yield _histogram(
            "ade_job_duration_seconds",
            "Run time of finished jobs (start to end)",
            [],
            [([], snap.jobs.duration)],
        )
        yield _histogram(
            "ade_job_queue_wait_seconds",
            "Time from submission to start",
            [],
            [([], snap.jobs.queue_wait)],
        )
    if snap.store_latency is not None:
        yield _histogram(
            "ade_store_call_duration_seconds",
            "Store calls (pool wait and transaction included)",
            ["store"],
            [([snap.store_kind], snap.store_latency)],
        )
    if snap.sandbox_layers:
        layers = GaugeMetricFamily(
            "ade_sandbox_layer",
            "1 if the sandbox layer is in force for jobs here",
            labels=["layer"],
        )
        for name, available in snap.sandbox_layers:
            layers.add_metric([name], 1 if available else 0)
        yield layers
    if snap.retention is not None:
        yield CounterMetricFamily(
            "ade_retention_deleted_jobs",
            "Finished jobs deleted by the retention sweep",
            value=snap.retention.deleted_jobs,
        )
        yield CounterMetricFamily(
            "ade_retention_removed_orphans",
            "Files no record named, removed by the retention sweep",
            value=snap.retention.removed_orphans,
        )
        yield CounterMetricFamily(
            "ade_retention_sweeps", "Retention sweeps run", value=snap.retention.runs
        )
    if snap.data_dir_bytes is not None:
        yield _gauge(
            "ade_data_dir_bytes",
            "Disk used by ADE_DATA_DIR (refreshed every five minutes)",
            snap.data_dir_bytes,
        )


class _SnapshotCollector:
    """Reports the snapshots of the scrape in progress (set just before the registry is read;
    the exporter runs synchronously, so no other scrape can change them meanwhile)."""

    def __init__(self) -> None:
        self.current: Snapshots | None = None

    def collect(self) -> Iterator[Metric]:
        if self.current is not None:
            yield from families(self.current)

    def describe(self) -> list[Metric]:
        return []  # unknown until scraped; registering must not take a snapshot


class ServiceMetrics:
    """The registry of one app: HTTP counters plus the snapshot collector."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._requests = Counter(
            "ade_http_requests",
            "HTTP requests and websocket connections, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "ade_http_request_duration_seconds",
            "Time to answer a request (a websocket: its whole connection)",
            ["route", "method"],
            buckets=FAST_BUCKETS,
            registry=self.registry,
        )
        self._snapshots = _SnapshotCollector()
        self.registry.register(self._snapshots)  # type: ignore[arg-type]

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._requests.labels(route, method, str(status)).inc()
        self._duration.labels(route, method).observe(seconds)

    def render(self, snapshots: Snapshots) -> bytes:
        self._snapshots.current = snapshots
        try:
            return generate_latest(self.registry)
        finally:
            self._snapshots.current = None
