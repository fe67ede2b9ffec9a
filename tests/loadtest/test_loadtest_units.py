"""Percentiles, request counting and option parsing: the harness's arithmetic, driven directly."""

from __future__ import annotations

import pytest
import trio

from ade.loadtest._ledger import JobBudget, Ledger, TrackedJob
from ade.loadtest._options import LoadTestOptions, OptionsError, parse_mix
from ade.loadtest._stats import RequestLog, percentile, summarize


def test_nearest_rank_percentiles_name_real_observations() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0


def test_percentile_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)
    with pytest.raises(ValueError, match="fraction"):
        percentile([1.0], 0.0)


def test_summarize_sorts_and_handles_no_samples() -> None:
    summary = summarize([30.0, 10.0, 20.0])
    assert (summary.count, summary.p50, summary.p95, summary.p99, summary.max) == (
        3,
        20.0,
        30.0,
        30.0,
        30.0,
    )
    empty = summarize([])
    assert (empty.count, empty.p50, empty.max) == (0, None, None)


def test_request_log_separates_outage_and_finds_5xx() -> None:
    log = RequestLog()
    log.record("POST /jobs", "202")
    log.record("POST /jobs", "202")
    log.record("POST /jobs", "429")
    log.record("GET /jobs/{id}", "503", during_outage=True)
    log.record("GET /jobs/{id}", "transport:ConnectError", during_outage=True)
    log.record("GET /health", "transport:ReadTimeout")
    assert log.by_route() == {
        "GET /health": {"transport:ReadTimeout": 1},
        "POST /jobs": {"202": 2, "429": 1},
    }
    assert log.outage_by_route() == {"GET /jobs/{id}": {"503": 1, "transport:ConnectError": 1}}
    assert log.total() == 6
    # A 5xx counts even while the server was being killed; transport errors only outside it.
    assert log.server_errors() == {"GET /jobs/{id} 503": 1}
    assert log.transport_errors() == {"GET /health transport:ReadTimeout": 1}


def test_parse_mix_normalises_and_names_bad_parts() -> None:
    assert parse_mix("--configs", "ok=3,fail=1", ("ok", "fail", "timeout")) == {
        "ok": 0.75,
        "fail": 0.25,
        "timeout": 0.0,
    }
    with pytest.raises(OptionsError, match="--configs: 'boom=1' is not KIND=WEIGHT"):
        parse_mix("--configs", "boom=1", ("ok", "fail"))
    with pytest.raises(OptionsError, match="weight 'x' of ok is not a number"):
        parse_mix("--configs", "ok=x", ("ok",))
    with pytest.raises(OptionsError, match="at least one weight must be > 0"):
        parse_mix("--workbooks", "tiny=0", ("tiny", "large"))


def test_options_refuse_chaos_against_a_foreign_server_and_non_loopback_urls() -> None:
    with pytest.raises(OptionsError, match="--chaos needs a server the harness starts"):
        LoadTestOptions(url="http://127.0.0.1:8000", chaos=True)
    with pytest.raises(OptionsError, match="loopback"):
        LoadTestOptions(url="http://10.0.0.1:8000")
    with pytest.raises(OptionsError, match="--clients must be > 0"):
        LoadTestOptions(clients=0)
    with pytest.raises(OptionsError, match="--cancel-fraction must be between 0 and 1"):
        LoadTestOptions(cancel_fraction=1.5)


def test_budget_and_ledger() -> None:
    budget = JobBudget(2)
    assert [budget.take(), budget.take(), budget.take()] == [True, True, False]
    assert JobBudget(None).take()
    ledger = Ledger()
    first = ledger.accept(
        TrackedJob("j1", "ok", "tiny", "submit", 0.0, record={"status": "queued"})
    )
    # An Idempotency-Key replay answers with the same id: still one job.
    assert ledger.accept(TrackedJob("j1", "ok", "tiny", "submit", 1.0)) is first
    assert len(ledger) == 1
    assert ledger.pending() == [first]
    first.record = {"status": "success"}
    assert ledger.pending() == []


def test_queue_depth_is_queued_plus_reserved() -> None:
    from ade.loadtest._clients import queue_depth_of

    health = {"status": "ok", "runtime": {"queued": 7, "reserved": 2, "capacity": 10}}
    assert queue_depth_of(health) == (9, 10)
    assert queue_depth_of({"runtime": {"capacity": 10}}) == (None, 10)
    assert queue_depth_of({"status": "ok"}) == (None, None)


async def test_outage_windows_cover_requests_that_overlap_them() -> None:
    from ade.loadtest._target import Target

    target = Target("http://127.0.0.1:1/", "default")
    assert target.api == "http://127.0.0.1:1/api/v1/workspaces/default"
    assert target.ws_api == "ws://127.0.0.1:1/api/v1/workspaces/default"
    assert not target.overlaps_outage(0.0, 1e12)
    target.mark_down()
    ((start, end),) = target.outages
    assert end is None and not target.is_up
    # An outage still open covers everything from its start on.
    assert target.overlaps_outage(start - 1, start) and target.overlaps_outage(start + 5, start + 6)
    assert not target.overlaps_outage(start - 2, start - 1)
    target.mark_up("http://127.0.0.1:2")
    ((start, end),) = target.outages
    assert end is not None and target.is_up and target.base_url == "http://127.0.0.1:2"
    assert not target.overlaps_outage(end + 1, end + 2)
    with trio.fail_after(1):
        await target.wait_up()


def test_table_and_json_render_a_failed_chaos_run() -> None:
    import json

    from ade.loadtest import FAIL, PASS, Invariant, Report, format_table, report_json

    report = Report(
        machine={"cores": 2, "date": "2026-01-01 00:00 UTC", "python": "3.11.7"},
        settings={
            "target": "x", "clients": 1, "duration": 1.0, "jobs": None,
            "greedy": False, "chaos": True, "seed": 1,
        },
        duration_seconds=1.5,
        requests_by_route={"POST /jobs": {"202": 1}},
        outage_requests_by_route={"GET /jobs/{id}": {"transport:ConnectError": 2}},
        requests_total=3,
        submit_latency_ms=summarize([5.0]),
        job_latency_seconds=summarize([]),
        jobs={"accepted": 1, "retries": 0, "cancels_requested": 0,
              "by_status": {"queued": 1}, "by_kind": {"ok": {"queued": 1}}},
        jobs_per_second=0.0,
        queue={"max_depth_seen": 1, "queue_size": 10, "samples": 3},
        chaos={"killed_at_seconds": 0.4, "restart_seconds": None,
               "running_at_kill": [], "queued_at_kill": ["j1"]},
        invariants=(
            Invariant("zero 5xx", PASS),
            Invariant("chaos: the server was killed and restarted", FAIL, "the restart failed"),
        ),
    )  # fmt: skip
    table = format_table(report)
    assert "GET /jobs/{id} (outage)" in table and "transport:ConnectError" in table
    assert "p50 5.0" in table and "job end-to-end s (n=0):  p50 -" in table
    assert "chaos: SIGKILL at 0.4 s with 0 running and 1 queued; the restart FAILED" in table
    assert "[FAIL] chaos: the server was killed and restarted — the restart failed" in table
    assert table.endswith("RESULT: FAIL")
    data = json.loads(report_json(report))
    assert data["passed"] is False
    assert data["invariants"][1] == {
        "name": "chaos: the server was killed and restarted",
        "result": "FAIL",
        "detail": "the restart failed",
    }
