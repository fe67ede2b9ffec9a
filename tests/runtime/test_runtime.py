"""The runtime end to end with the real job runner: sandboxed worker subprocess, engine, events.

These use EXEC's helpers for a tiny config package and workbook; everything is real."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from support import make_settings
from support.actors import (  # noqa: F401 - the fixture is used by pytest
    no_leaked_processes,
    processes_under,
    publish,
    wait_for_status,
)

from ade.models import JobStatus
from ade.runtime import TERMINAL_EVENT_TYPES, open_runtime
from ade.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", max_concurrency=2, queue_size=4)


async def test_a_tiny_job_runs_in_the_sandboxed_worker(settings: Settings, tmp_path: Path) -> None:
    config_id, document_id = await publish(settings, tmp_path)
    async with open_runtime(settings) as runtime:
        job = await runtime.submit(
            workspace_id="ws", config_version_id=config_id, document_ids=[document_id]
        )
        with trio.fail_after(30):
            final = await runtime.wait("ws", job.id)
        assert (final.status, final.error_message, final.exit_code) == (
            JobStatus.SUCCESS,
            None,
            0,
        )
        assert "rlimits" in final.sandbox_layers
        events = await runtime.read_events("ws", job.id)
    job_dir = settings.jobs_dir / job.id
    assert sorted(p.name for p in job_dir.iterdir()) == [
        ".venv",
        "artifact.json",
        "events.ndjson",
        "inputs",
        "normalized.xlsx",
        "run-request.json",
    ]
    assert (job_dir / ".venv").readlink() == Path(f"../../venvs/{config_id}/")
    types = [e.type for e in events]
    assert types[:2] == ["enqueue", "start"] and types[-1] == "finish"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    passes = [e.detail["pass"] for e in events if e.type == "pass_finished"]
    assert passes == ["detect", "map", "transform", "validate", "write"]
    assert sum(e.type in TERMINAL_EVENT_TYPES for e in events) == 1
    assert events[-1].detail["sandbox_layers"] == list(final.sandbox_layers)
    # The engine's summary reaches the record (through the store) and the finish event.
    summary = final.summary
    assert set(summary) == {
        "outcome",
        "errors",
        "warnings",
        "issue_count",
        "rows_read",
        "rows_written",
        "rows_outside_tables",
        "tables_found",
        "tables_written",
        "unrecognised_tables",
        "mapped_fields",
        "required_missing",
        "fails_job",
        "duration_seconds",
    }
    assert (summary["tables_found"], summary["rows_written"]) == (1, 3)
    assert (summary["outcome"], summary["rows_read"], summary["fails_job"]) == ("clean", 4, False)
    assert events[-1].detail["outcome"] == "clean"
    assert events[-1].detail["issues"] == "issues: 0 errors, 0 warnings, 0 rows outside any table"
    assert sorted(summary["mapped_fields"]) == ["amount", "name"]
    assert summary["required_missing"] == []
    assert events[-1].detail["summary"] == summary


async def test_cancelling_a_running_sandboxed_job_leaves_no_process(
    settings: Settings, tmp_path: Path
) -> None:
    config_id, document_id = await publish(settings, tmp_path, sleep=60)
    async with open_runtime(settings) as runtime:
        job = await runtime.submit(
            workspace_id="ws", config_version_id=config_id, document_ids=[document_id]
        )
        await wait_for_status(runtime, "ws", job.id, JobStatus.RUNNING)
        job_dir = settings.jobs_dir / job.id
        # Cancel once the worker is confined (its process group is known to the supervisor).
        with trio.fail_after(20):
            while "sandbox" not in [e.type for e in await runtime.read_events("ws", job.id)]:
                await trio.sleep(0.02)
        assert processes_under(job_dir) != []
        with trio.fail_after(5):
            cancelled = await runtime.cancel("ws", job.id)
        assert cancelled.status is JobStatus.CANCELLED
        assert processes_under(job_dir) == []
        assert [e.type for e in await runtime.read_events("ws", job.id)][-1] == "cancel"
