"""The shared table plan: what pass 1 found and what each later pass decided about it.

Each pass module (``_locate``, ``_map``, ``_transform``, ``_validate``, ``_write``) reads the
plan and fills in its own part; ``_assemble`` turns the finished plan into artifact.json. The
:class:`EngineContext` is what every pass reads and never changes: the package, its loaded code,
the progress reporter and the issue log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs

from ade.configs.package import ConfigPackage
from ade.engine._artifact import (
    ColumnRecord,
    IssueRecord,
    OutputColumn,
    PassRecord,
    SheetRecord,
    TransformRecord,
    ValidationRecord,
)
from ade.engine._cells import a1, a1_range
from ade.engine._code import LoadedConfig
from ade.engine._issues import IssueLog, new_issue
from ade.engine._locator import OUTSIDE, TableDraft
from ade.engine._readers import InputFile
from ade.engine._spool import ChunkRef

__all__ = [
    "CHUNK_ROWS",
    "PROGRESS_EVERY_ROWS",
    "EngineContext",
    "PlannedTable",
    "Progress",
    "ProgressCallback",
    "TablePlan",
    "table_range",
]

CHUNK_ROWS = 1000
PROGRESS_EVERY_ROWS = 100_000
ProgressCallback = Callable[[str, dict[str, Any]], None]


class Progress:
    """Pass timings for the artifact, and progress events for whoever listens."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.passes: list[PassRecord] = []

    def emit(self, event: str, detail: dict[str, Any]) -> None:
        if self.callback is not None:
            self.callback(event, detail)

    def rows(self, pass_name: str, before: int, after: int) -> None:
        """A ``pass_progress`` event each time the row count crosses a multiple of 100k."""
        if before // PROGRESS_EVERY_ROWS != after // PROGRESS_EVERY_ROWS:
            self.emit("pass_progress", {"pass": pass_name, "rows": after})

    @contextmanager
    def running(self, name: str) -> Iterator[dict[str, int]]:
        stats: dict[str, int] = {}
        self.emit("pass_started", {"pass": name})
        started = time.perf_counter()
        yield stats
        seconds = round(time.perf_counter() - started, 4)
        self.passes.append(PassRecord(name, seconds, dict(stats)))
        self.emit("pass_finished", {"pass": name, "seconds": seconds, **stats})


@attrs.define
class EngineContext:
    package: ConfigPackage
    code: LoadedConfig
    progress: Progress
    issues: IssueLog
    memory_limit_mb: int | None = None


@attrs.define
class PlannedTable:
    """A found table with everything later passes decide about it."""

    draft: TableDraft
    source: InputFile
    sheet: str
    chunks: list[ChunkRef]
    columns: list[ColumnRecord] = attrs.field(factory=list)
    field_sources: dict[str, int] = attrs.field(factory=dict)  # field -> table column index
    output_sources: list[int | None] = attrs.field(factory=list)  # output col -> table column
    # Fields a transform filled (no column of their own) -> the column whose transform did.
    filled_from: dict[str, int] = attrs.field(factory=dict)
    status: str = "written"
    skip_reason: str | None = None
    required_missing: list[str] = attrs.field(factory=list)
    output_first_row: int | None = None
    out_chunks: list[tuple[ChunkRef, int]] = attrs.field(factory=list)  # (ref, first out row)
    # Per field: the state its ``profile`` built over the whole column, read by its transform
    # and validate (the column-level decisions; docs/config-packages.md).
    states: dict[str, dict[str, Any]] = attrs.field(factory=dict)

    @property
    def id(self) -> str:
        return self.draft.id

    @property
    def filled_fields(self) -> list[str]:
        return list(self.filled_from)

    def source_of(self, field: str) -> int | None:
        """The table column a field's values come from (its own, or the one that filled it)."""
        index = self.field_sources.get(field)
        return self.filled_from.get(field) if index is None else index

    @property
    def range(self) -> str:
        return table_range(self.draft)

    def issue(
        self,
        pass_name: str,
        row: int,
        column_index: int | None,
        field: str | None,
        code: str,
        severity: str,
        message: str,
        output_row: int | None = None,
    ) -> IssueRecord:
        """An issue about a cell of this table (or its header row, ``column_index=None``)."""
        cell = None if column_index is None else a1(self.draft.first_column + column_index, row)
        return new_issue(
            pass_name,
            self.source.name,
            code,
            severity,
            message,
            sheet=self.sheet,
            row=row,
            table=self.draft.id,
            cell=cell,
            field=field,
            output_row=output_row,
        )


@attrs.define
class TablePlan:
    tables: list[PlannedTable] = attrs.field(factory=list)
    sheets: dict[int, list[SheetRecord]] = attrs.field(factory=dict)  # by input index
    output_columns: list[OutputColumn] = attrs.field(factory=list)
    transforms: list[TransformRecord] = attrs.field(factory=list)
    validation: ValidationRecord | None = None
    rows_written: int = 0
    rows_read: int = 0
    table_ids: int = 0

    def new_table_id(self) -> str:
        self.table_ids += 1
        return f"t{self.table_ids}"

    @property
    def written(self) -> list[PlannedTable]:
        return [t for t in self.tables if t.status == "written"]

    @property
    def rows_outside_tables(self) -> int:
        return sum(s.accounting.get(OUTSIDE, 0) for ss in self.sheets.values() for s in ss)


def table_range(d: TableDraft) -> str:
    """From the header row (a continued table: from its first data row) to the last data row."""
    first = d.header_row if d.continues is None else d.first_data_row
    return a1_range(d.first_column, first, d.last_column, d.last_data_row or d.header_row)
