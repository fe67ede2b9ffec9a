"""The worker <-> supervisor protocol (ade.worker.protocol): what crosses the events pipe is
checked field by field, and both ends share one rule for event names and one set of limit
messages."""

from __future__ import annotations

import pytest

from ade.worker.protocol import (
    EVENT_LINE_LIMIT,
    WorkerResult,
    decode_event,
    encode_event,
    is_event_type,
    limit_message,
)


def test_a_result_line_is_checked_field_by_field() -> None:
    """The events pipe is writable by config code: a result line that is not well formed is
    no result at all, and the run is judged by its exit status."""
    line = WorkerResult("success", summary={"rows_written": 3}).to_detail()
    assert line == {"status": "success", "code": "success", "summary": {"rows_written": 3}}
    assert WorkerResult.from_detail(line) == WorkerResult("success", summary={"rows_written": 3})
    failure = WorkerResult("fsize", "file size limit of 1 MiB exceeded", {"limit": "fsize"})
    assert WorkerResult.from_detail(failure.to_detail()) == failure
    for forged in (
        {"code": "granted"},
        {"code": "success", "summary": ["not", "a", "dict"]},
        {"code": "config_error", "message": 42},
        {"code": "internal", "detail": "x"},
    ):
        assert WorkerResult.from_detail(forged) is None
    assert WorkerResult.from_detail({"code": "internal", "message": "m" * 5000}) == WorkerResult(
        "internal", "m" * 1000
    )


def test_one_rule_for_event_names_on_both_ends() -> None:
    longest = "a" * 64
    assert is_event_type("pass_finished") and is_event_type(longest)
    for bad in ("a" * 65, "Pass", "1st", "", "pass-finished", None):
        assert not is_event_type(bad)
    assert decode_event(encode_event(longest, {"n": 1})) == (longest, {"n": 1})
    with pytest.raises(ValueError, match="bad event type"):
        encode_event("a" * 65, {})
    # The supervisor's side refuses what the worker's side would never write.
    assert decode_event(b'{"type": "Finish", "detail": {}}') is None
    assert decode_event(b'{"type": "x", "detail": []}') is None
    assert decode_event(b'{"type": "x", "detail": {}, "extra": 1}') is None
    assert decode_event(b"x" * (EVENT_LINE_LIMIT + 1)) is None


def test_limit_messages_name_the_limit_and_its_size() -> None:
    assert limit_message("memory", 256) == "memory limit of 256 MiB exceeded"
    assert limit_message("fsize", 10) == "file size limit of 10 MiB exceeded"
    assert limit_message("cpu", 1.5) == "CPU limit of 1.5 s exceeded"
    assert limit_message("timeout", 30.0) == "timed out after 30 s"
    with pytest.raises(ValueError, match="no message for limit"):
        limit_message("cancelled", 0)
