"""The spool between passes: memory first, then bounded segment files, always read back
exactly."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from ade.engine import _spool
from ade.engine._spool import Spool


class Day(dt.date):
    """A date subclass: the spool must keep its type (pickled, never stored as an ordinal)."""


def test_memory_then_segments_then_nothing_left(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(_spool, "SEGMENT_BYTES", 4000)
    spool = Spool(tmp_path, "rows", memory_budget=3000)
    chunks = [
        ([i], [[f"value {i} {'x' * 900}"], [dt.datetime(2024, 1, 1) + dt.timedelta(days=i)]])
        for i in range(12)
    ]
    refs = [spool.write_columns(*chunk) for chunk in chunks]
    spool.finish_writing()
    assert [r.segment for r in refs][:3] == [-1, -1, -1]  # ~1 KB each: three fit in 3000 B
    assert refs[3].segment == 0
    assert max(r.segment for r in refs) >= 2  # segments roll over at SEGMENT_BYTES
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"rows.{i:04d}" for i in range(max(r.segment for r in refs) + 1)]
    assert all((tmp_path / f).stat().st_size <= 4000 for f in files)
    # Read back out of order, exactly.
    for i in (5, 0, 11, 3, 7):
        assert spool.read_columns(refs[i]) == chunks[i]
    spool.close()
    assert list(tmp_path.iterdir()) == []


def test_column_chunks_read_back_whole_or_only_the_columns_asked_for(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "rows", memory_budget=100)  # the second chunk goes to disk
    columns = [["a", "b"], [1, 2], [dt.datetime(2024, 1, 1), None]]
    refs = [spool.write_columns([3, 4], columns), spool.write_columns([5, 6], columns[::-1])]
    spool.finish_writing()
    assert [r.segment for r in refs] == [-1, 0]
    assert spool.read_columns(refs[0]) == ([3, 4], columns)
    assert spool.read_columns(refs[1], {0}) == ([5, 6], [columns[2], None, None])
    assert spool.read_columns(refs[0], {1, 2}) == ([3, 4], [None, [1, 2], columns[2]])
    spool.close()
    assert list(tmp_path.iterdir()) == []


def test_day_columns_come_back_as_the_same_types_and_values(tmp_path: Path) -> None:
    # Whole-day columns are stored as ordinals; everything else (times of day, time zones,
    # fold, subclasses, mixed types) must be pickled as it is. Each column reads back equal
    # and with every value of exactly the type written.
    utc = dt.UTC
    columns: list[list[object]] = [
        [dt.date(1, 1, 1), None, dt.date(9999, 12, 31), dt.date(1985, 3, 13)],
        [dt.datetime(1900, 3, 1), None, dt.datetime(2024, 2, 29), dt.datetime(1899, 12, 30)],
        [dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)],
        [None, None, None, None],
        [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, 0, 0, 0, 1), None, None],
        [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2, tzinfo=utc), None, None],
        [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2, fold=1), None, None],
        [dt.date(2024, 1, 1), dt.datetime(2024, 1, 2), None, None],
        [dt.date(2024, 1, 1), Day(2024, 1, 2), None, None],
        [Day(2024, 1, 1), None, None, None],
        ["2024-01-01", dt.date(2024, 1, 2), 3, None],
    ]
    spool = Spool(tmp_path, "rows", memory_budget=0)  # through the disk
    ref = spool.write_columns([1, 2, 3, 4], columns)
    spool.finish_writing()
    assert ref.days == ((dt.date, True), (dt.datetime, True), (dt.date, False), *[None] * 8)
    numbers, back = spool.read_columns(ref)
    assert numbers == [1, 2, 3, 4]
    assert back == columns
    for column, read in zip(columns, back, strict=True):
        assert read is not None
        assert [(type(v), getattr(v, "fold", None), getattr(v, "tzinfo", None)) for v in read] == [
            (type(v), getattr(v, "fold", None), getattr(v, "tzinfo", None)) for v in column
        ]
    spool.close()


def test_stored_columns_are_carried_into_another_spool_unchanged(tmp_path: Path) -> None:
    # Transform carries the columns no transform reads from the raw spool into the shaped one
    # as stored bytes: they must read back exactly, day columns included, next to columns
    # written from values.
    raw = Spool(tmp_path, "rows", memory_budget=0)
    shaped = Spool(tmp_path, "shaped", memory_budget=0)
    columns: list[list[object]] = [
        ["a", None, "c"],
        [dt.datetime(1985, 3, 13), None, dt.datetime(2001, 1, 2)],
        [1, 2.5, True],
    ]
    ref = raw.write_columns([7, 8, 9], columns)
    raw.finish_writing()
    numbers, decoded, stored = raw.read_split(ref, {0}, {1, 2})
    assert numbers == [7, 8, 9]
    assert decoded == {0: columns[0]}
    assert set(stored) == {1, 2}
    assert stored[1].days == (dt.datetime, True)
    out = shaped.write_columns(numbers, [["A", None, "C"], stored[2], stored[1], [None] * 3])
    shaped.finish_writing()
    assert out.days == (None, None, (dt.datetime, True), None)
    assert shaped.read_columns(out) == (
        [7, 8, 9],
        [["A", None, "C"], columns[2], columns[1], [None, None, None]],
    )
    raw.close()
    shaped.close()
