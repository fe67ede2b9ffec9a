"""The decisions behind /metrics and the log lines, without a server: histograms, what a job's
plans are counted and logged as, the metric families of given snapshots, the log formats, the
request id and who may scrape."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta

import attrs
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ade.api.metrics import scrape_refusal
from ade.models import JobRecord, JobStatus
from ade.runtime.ending import JobEnding
from ade.runtime.recorder import RecorderState
from ade.runtime.service import RuntimeStatistics, StatusTotals
from ade.telemetry.context import accept_request_id
from ade.telemetry.histogram import Histogram
from ade.telemetry.jobs import JobTelemetry
from ade.telemetry.logs import JsonFormatter, TextFormatter, log_fields, resolve_log_format
from ade.telemetry.metrics import ServiceMetrics, Snapshots, families

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_histogram_counts_cumulatively_with_an_infinite_bucket() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 2.0, 9.0):
        histogram.observe(value)
    snap = histogram.snapshot()
    assert (snap.bounds, snap.counts, snap.count) == ((0.1, 1.0), (2, 3), 5)
    assert snap.total == pytest.approx(11.65)
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram((1.0, 0.5))


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _job(job_id: str = "j1", workspace: str = "ws") -> JobRecord:
    return JobRecord(
        id=job_id,
        workspace_id=workspace,
        status=JobStatus.QUEUED,
        config_version_id="cfg",
        document_ids=("d1",),
        runtime_network_access=False,
        attempt=1,
        created_at=T0,
    )


def test_job_plans_become_counts_and_lines_that_never_carry_a_message() -> None:
    clock = _Clock()
    state = RecorderState(now=clock)
    telemetry = JobTelemetry()
    lines = []

    def carry(plan):  # what the recorder does: commit, then observe
        state.commit(plan)
        lines.extend(telemetry.observe(plan))

    carry(state.plan_accept(_job(), request_id="rq-1"))
    clock.now = T0 + timedelta(seconds=3)
    carry(state.plan_start("j1"))
    carry(state.plan_progress("j1", "pass_started", {"pass": "detect", "cell": "SECRET-CELL"}))
    clock.now = T0 + timedelta(seconds=10)
    ending = JobEnding(
        status=JobStatus.ERROR,
        message="column 'SECRET-CELL' could not be read",
        limit="memory",
        duration_seconds=7.0,
    )
    carry(state.plan_finish("j1", ending))

    assert [line.message for line in lines] == ["job j1 queued", "job j1 started", "job j1 failed"]
    assert lines[0].fields == {
        "job_id": "j1",
        "workspace_id": "ws",
        "attempt": 1,
        "step": "enqueue",
        "status": "queued",
        "request_id": "rq-1",
    }
    assert lines[1].fields["queue_wait_seconds"] == 3.0
    assert lines[2].fields["status"] == "error"
    assert lines[2].fields["reason"] == "memory"
    assert lines[2].fields["duration_seconds"] == 7.0
    assert "SECRET" not in repr(lines)
    snap = telemetry.snapshot()
    assert snap.finished == {("error", "ws"): 1}
    assert (snap.duration.count, snap.duration.total) == (1, 7.0)
    assert (snap.queue_wait.count, snap.queue_wait.total) == (1, 3.0)


def test_a_cancelled_queued_job_counts_as_finished_without_a_duration() -> None:
    state = RecorderState(now=_Clock())
    telemetry = JobTelemetry()
    for make in (lambda: state.plan_accept(_job()), lambda: state.plan_cancel_queued("j1")):
        plan = make()
        state.commit(plan)
        lines = telemetry.observe(plan)
    assert lines[0].fields["reason"] == "cancelled"
    assert "duration_seconds" not in lines[0].fields
    snap = telemetry.snapshot()
    assert snap.finished == {("cancelled", "ws"): 1}
    assert (snap.duration.count, snap.queue_wait.count) == (0, 0)


def test_a_job_claimed_in_a_cluster_counts_its_queue_wait() -> None:
    clock = _Clock()
    state = RecorderState(now=clock, cluster=True)
    telemetry = JobTelemetry()
    claimed = attrs.evolve(_job(), status=JobStatus.RUNNING, started_at=T0 + timedelta(seconds=4))
    plan = state.plan_claimed_start(claimed, 1, "node-b")
    assert plan.record is None  # the claim already stored it
    state.commit(plan)
    (line,) = telemetry.observe(plan)
    assert line.fields["queue_wait_seconds"] == 4.0
    assert telemetry.snapshot().queue_wait.count == 1


def _stats(**changes: object) -> RuntimeStatistics:
    values: dict[str, object] = {
        "queued": 3,
        "reserved": 1,
        "running": 2,
        "capacity": 10,
        "workers": 2,
        "idle_workers": 0,
        "accepting": True,
        "totals": StatusTotals(queued=3, running=2, success=7),
        "recent_mean_duration_seconds": 1.5,
        "subscribers": 4,
        "dropped_subscribers": 1,
        "admission_refusals": 5,
        "worker_restarts": 2,
        "worker_start": "fork",
        "template_restarts": 3,
        "ahead_discards": 4,
    }
    values.update(changes)
    return RuntimeStatistics(**values)  # type: ignore[arg-type]


def _render(snapshots: Snapshots) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = ServiceMetrics().render(snapshots).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_families_of_given_snapshots() -> None:
    telemetry = JobTelemetry()
    state = RecorderState(now=_Clock())
    for make in (
        lambda: state.plan_accept(_job("a", "team")),
        lambda: state.plan_cancel_queued("a"),
    ):
        plan = make()
        state.commit(plan)
        telemetry.observe(plan)
    latency = Histogram((0.01, 0.1))
    latency.observe(0.005)
    latency.observe(0.05)
    samples = _render(
        Snapshots(
            runtime=_stats(),
            jobs=telemetry.snapshot(),
            store_kind="postgresql",
            store_latency=latency.snapshot(),
            sandbox_layers=(("seccomp", True), ("landlock", False)),
            data_dir_bytes=4096,
        )
    )
    assert samples[("ade_jobs_queued", ())] == 3
    assert samples[("ade_jobs_reserved", ())] == 1
    assert samples[("ade_jobs_running", ())] == 2
    assert samples[("ade_queue_capacity", ())] == 10
    assert samples[("ade_accepting", ())] == 1
    assert samples[("ade_jobs", (("status", "success"),))] == 7
    assert samples[("ade_admission_refusals_total", ())] == 5
    assert samples[("ade_worker_process_restarts_total", ())] == 2
    assert samples[("ade_worker_template_restarts_total", ())] == 3
    assert samples[("ade_worker_ahead_discards_total", ())] == 4
    assert samples[("ade_worker_start", (("mode", "fork"),))] == 1
    assert samples[("ade_websocket_subscribers", ())] == 4
    assert samples[("ade_websocket_subscribers_dropped_total", ())] == 1
    assert (
        samples[("ade_jobs_finished_total", (("status", "cancelled"), ("workspace", "team")))] == 1
    )
    assert (
        samples[
            ("ade_store_call_duration_seconds_bucket", (("le", "0.01"), ("store", "postgresql")))
        ]
        == 1
    )
    assert (
        samples[
            ("ade_store_call_duration_seconds_bucket", (("le", "+Inf"), ("store", "postgresql")))
        ]
        == 2
    )
    assert samples[("ade_sandbox_layer", (("layer", "seccomp"),))] == 1
    assert samples[("ade_sandbox_layer", (("layer", "landlock"),))] == 0
    assert samples[("ade_data_dir_bytes", ())] == 4096
    # Retention reports only when the sweep runs.
    assert not [name for name, _ in samples if name.startswith("ade_retention")]


def test_each_app_has_its_own_registry() -> None:
    first, second = ServiceMetrics(), ServiceMetrics()
    first.observe_request("/metrics", "GET", 200, 0.01)
    empty = Snapshots(runtime=_stats())
    assert 'ade_http_requests_total{method="GET",route="/metrics",status="200"} 1.0' in (
        first.render(empty).decode()
    )
    assert "ade_http_requests_total{" not in second.render(empty).decode()
    # Nothing went into the process-global registry.
    assert "ade_http_requests" not in generate_latest().decode()
    assert isinstance(first.registry, CollectorRegistry)
    assert list(families(empty))  # the collector itself needs no registry


def _record(message: str, **fields: object) -> logging.LogRecord:
    logger = logging.getLogger("ade.test")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        log_fields(logger, logging.INFO, message, **fields)
    finally:
        logger.removeHandler(handler)
    return records[0]


def test_the_two_log_formats() -> None:
    record = _record("GET /x 200", route="/x", status=200, key_id=None)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "GET /x 200"
    assert line["logger"] == "ade.test" and line["level"] == "info"
    assert (line["route"], line["status"]) == ("/x", 200)
    assert "key_id" not in line  # None fields are left out
    assert datetime.fromisoformat(line["ts"]).tzinfo is not None
    text = TextFormatter().format(record)
    assert text.endswith("INFO ade.test: GET /x 200 route=/x status=200")


def test_the_default_format_follows_the_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert resolve_log_format(None, Tty()) == "text"
    assert resolve_log_format(None, io.StringIO()) == "json"
    assert resolve_log_format("text", io.StringIO()) == "text"
    assert resolve_log_format("json", Tty()) == "json"


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("0af7651916cd43dd8448eb211c80319c", True),
        ("req-1.2:3_x", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("has space", False),
        ("", False),
        ("-leading-dash", False),
        ('quote"', False),
        (None, False),
    ],
)
def test_a_request_id_is_kept_only_when_sane(incoming: str | None, kept: bool) -> None:
    chosen = accept_request_id(incoming)
    if kept:
        assert chosen == incoming
    else:
        assert len(chosen) == 32 and int(chosen, 16) >= 0


def test_who_may_scrape() -> None:
    token = "t" * 20
    assert scrape_refusal(None, "127.0.0.1", None) is None
    assert scrape_refusal(None, "::1", None) is None
    assert scrape_refusal(None, "192.0.2.7", None)[:2] == (403, "forbidden")  # type: ignore[index]
    assert scrape_refusal(None, None, None)[:2] == (403, "forbidden")  # type: ignore[index]
    assert scrape_refusal(token, "192.0.2.7", f"Bearer {token}") is None
    assert scrape_refusal(token, "192.0.2.7", f"bearer {token}") is None
    for header in (None, f"Bearer {token}x", f"Basic {token}", token):
        assert scrape_refusal(token, "127.0.0.1", header)[:2] == (401, "unauthorized")  # type: ignore[index]
