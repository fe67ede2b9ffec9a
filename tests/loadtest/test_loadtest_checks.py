"""The file and process invariants, against real files and real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ade.loadtest._checks import check_events_file, reap_workers
from ade.loadtest._server import worker_processes


def _write(path: Path, events: list[dict], tail: str = "") -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + tail)
    return path


def _event(seq: int, type_: str, **detail: object) -> dict:
    return {
        "seq": seq,
        "ts": "2026-01-01T00:00:00+00:00",
        "job_id": "j1",
        "workspace_id": "default",
        "attempt": 1,
        "type": type_,
        "detail": detail,
    }


def test_a_complete_log_passes(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "events.ndjson",
        [_event(1, "enqueue"), _event(2, "start"), _event(3, "finish", status="success")],
    )
    assert check_events_file(path, "j1", "success") is None
    # A retry note pointing at the new job may follow the end; it changes no state.
    _write(
        path,
        [
            _event(1, "enqueue"),
            _event(2, "error", status="error"),
            _event(3, "retry", retry_job_id="j2"),
        ],
    )
    assert check_events_file(path, "j1", "error") is None


def test_each_defect_is_named(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    assert check_events_file(path, "j1", "success") == "j1: events.ndjson is missing"
    _write(path, [_event(1, "enqueue"), _event(2, "start")])
    assert check_events_file(path, "j1", "success") == "j1: events.ndjson has no terminal event"
    _write(path, [_event(1, "cancel", status="cancelled"), _event(2, "start")])
    assert check_events_file(path, "j1", "cancelled") == (
        "j1: events.ndjson line 2 ('start') follows the terminal event 'cancel'"
    )
    _write(path, [_event(1, "finish", status="success"), _event(2, "error", status="error")])
    assert check_events_file(path, "j1", "error") == (
        "j1: events.ndjson line 2 ('error') follows the terminal event 'finish'"
    )
    _write(path, [_event(1, "enqueue"), _event(2, "error", status="error")])
    assert check_events_file(path, "j1", "success") == (
        "j1: events.ndjson ends in 'error' but the job is 'success'"
    )
    _write(path, [_event(1, "enqueue")], tail='{"seq": 2, "ty')
    assert check_events_file(path, "j1", "success") == (
        "j1: events.ndjson does not end with a newline (torn last line)"
    )
    _write(path, [_event(1, "enqueue")], tail="not json\n")
    assert check_events_file(path, "j1", "success") == "j1: events.ndjson line 2 is not JSON"
    _write(path, [_event(2, "enqueue"), _event(2, "finish", status="success")])
    assert check_events_file(path, "j1", "success") == ("j1: events.ndjson line 2 seq 2 after 2")
    path.write_text("")
    assert check_events_file(path, "j1", "success") == (
        "j1: events.ndjson does not end with a newline (torn last line)"
    )


async def test_worker_scan_finds_and_reaps_only_this_data_dirs_workers(tmp_path: Path) -> None:
    ours = tmp_path / "data"
    other = tmp_path / "other"
    (ours / "jobs" / "y").mkdir(parents=True)
    other.mkdir()
    sleeper = "import time; time.sleep(60)"
    # argv carries the marker and the data dir the way `python -m ade.worker <job_dir>/...` does.
    by_path = subprocess.Popen([sys.executable, "-c", sleeper, "ade.worker", f"{ours}/jobs/x"])
    # ... or only the marker, running in its job directory (a relative run-request path).
    by_cwd = subprocess.Popen(
        [sys.executable, "-c", sleeper, "ade.worker", "run-request.json"], cwd=ours / "jobs" / "y"
    )
    theirs = subprocess.Popen([sys.executable, "-c", sleeper, "ade.worker", f"{other}/jobs/x"])
    unrelated = subprocess.Popen([sys.executable, "-c", sleeper, f"{ours}/jobs/x"])
    processes = (by_path, by_cwd, theirs, unrelated)
    try:
        found = worker_processes(ours)
        assert sorted(pid for pid, _ in found) == sorted([by_path.pid, by_cwd.pid])
        survivors = await reap_workers(ours, grace=0.2)
        assert sorted(int(line.split()[0]) for line in survivors) == sorted(
            [by_path.pid, by_cwd.pid]
        )
        assert by_path.wait(timeout=5) == -9
        assert by_cwd.wait(timeout=5) == -9
        assert worker_processes(ours) == []
        assert theirs.poll() is None and unrelated.poll() is None
    finally:
        for process in processes:
            process.kill()
            process.wait()
