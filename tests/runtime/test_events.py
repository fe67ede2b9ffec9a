"""events.ndjson: append whole lines, read tolerantly, survive a torn last line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from ade.models import JobEvent
from ade.runtime.events import (
    append_events,
    event_line,
    read_events,
    repair_tail,
    scan_events,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def event(seq: int, type_: str = "progress", **detail: object) -> JobEvent:
    return JobEvent(seq, T0, "job1", "ws", 1, type_, dict(detail))


def test_lines_are_one_json_object_each_with_every_field(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    append_events(path, [event(1, "enqueue"), event(2, "start")])
    append_events(path, [event(3, "pass_finished", **{"pass": "map", "fields": 2})])
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3 and all(line.endswith(b"\n") for line in lines)
    assert json.loads(lines[2]) == {
        "seq": 3,
        "ts": "2026-01-02T03:04:05+00:00",
        "job_id": "job1",
        "workspace_id": "ws",
        "attempt": 1,
        "type": "pass_finished",
        "detail": {"pass": "map", "fields": 2},
    }
    assert read_events(path) == [
        event(1, "enqueue"),
        event(2, "start"),
        event(3, "pass_finished", **{"pass": "map", "fields": 2}),
    ]
    assert [e.seq for e in read_events(path, after=2)] == [3]


def test_a_torn_last_line_is_skipped_and_repaired_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    append_events(path, [event(1, "enqueue"), event(2, "start")])
    whole = event_line(event(3, "pass_finished"))
    with path.open("ab") as handle:
        handle.write(whole[: len(whole) // 2])  # the service died mid-write
    scan = scan_events(path)
    assert [e.seq for e in scan.events] == [1, 2] and scan.skipped_lines == 1
    assert scan.last_seq == 2

    assert repair_tail(path) is True
    assert repair_tail(path) is False
    append_events(path, [event(3, "recovery")])
    scan = scan_events(path)
    # The torn fragment stays its own (skipped) line; the next event is intact.
    assert [(e.seq, e.type) for e in scan.events] == [(1, "enqueue"), (2, "start"), (3, "recovery")]
    assert scan.skipped_lines == 1


def test_a_torn_line_that_happens_to_be_valid_json_is_still_skipped(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    append_events(path, [event(1)])
    with path.open("ab") as handle:
        handle.write(b'{"seq": 2}')  # parses as JSON, but it has no newline and no fields
    assert [e.seq for e in read_events(path)] == [1]


def test_foreign_and_malformed_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    append_events(path, [event(1)])
    with path.open("ab") as handle:
        handle.write(b"[1, 2]\n\n{not json}\n" + b'{"seq": "x"}\n')
    append_events(path, [event(2)])
    scan = scan_events(path)
    assert [e.seq for e in scan.events] == [1, 2] and scan.skipped_lines == 3


def test_a_missing_file_is_an_empty_history(tmp_path: Path) -> None:
    scan = scan_events(tmp_path / "nope.ndjson")
    assert scan.events == () and scan.skipped_lines == 0 and scan.last_seq == 0
    assert repair_tail(tmp_path / "nope.ndjson") is False
    (tmp_path / "empty.ndjson").write_bytes(b"")
    assert repair_tail(tmp_path / "empty.ndjson") is False
