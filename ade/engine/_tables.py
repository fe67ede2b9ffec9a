"""Pass 1's decisions: which rows form tables. A plain object fed one classified row at a time.

Rules (docs/config-packages.md explains them to config authors):

* A ``header`` row opens tables. Its filled cells are split into segments wherever two or
  more empty cells separate them, so side-by-side tables become separate tables; each segment
  spans from its first to its last header cell (a table may start in any column).
* ``data`` rows extend the open tables. A table ends at the first row that is not data for it:
  a blank row (or a data row whose cells in the table's columns are all empty), a header row,
  or a row of any other type (notes, totals, ...). The row that ended it is recorded.
* A header row that gets no data row is not a table (``headers_without_data``); data rows with
  no open table are counted as ``orphan_data_rows`` — never silently merged into a table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["SheetScan", "TableDraft", "header_segments"]

# Two or more empty header cells in a row separate side-by-side tables; a single empty header
# cell is an unnamed column inside one table.
SEGMENT_GAP = 2


@attrs.define
class TableDraft:
    """A table being found. ``data_rows`` and the sample grow as rows arrive."""

    id: str
    header_row: int
    first_column: int  # 1-based, inclusive
    last_column: int
    headers: list[str | None]
    data_rows: int = 0
    first_data_row: int = 0
    last_data_row: int = 0
    ended_by: str = "open"  # set when the table ends: what ended it
    cells_outside_header: int = 0
    sample: list[list[Any]] = attrs.field(factory=list)
    # Data rows not yet handed to on_chunk (at most chunk_rows of them).
    pending_numbers: list[int] = attrs.field(factory=list)
    pending_rows: list[list[Any]] = attrs.field(factory=list)

    @property
    def width(self) -> int:
        return self.last_column - self.first_column + 1


def header_text(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        value = value.isoformat()
    text = " ".join(str(value).split())
    return text or None


def header_segments(values: list[Any]) -> list[tuple[int, int]]:
    """(first, last) 1-based column spans of a header row's filled cells, split at gaps."""
    segments: list[tuple[int, int]] = []
    start = last = 0
    for column, value in enumerate(values, start=1):
        if value is None:
            continue
        if start and column - last - 1 < SEGMENT_GAP:
            last = column
            continue
        if start:
            segments.append((start, last))
        start = last = column
    if start:
        segments.append((start, last))
    return segments


class SheetScan:
    """Feeds rows of one sheet. Data rows are buffered per table and handed over in chunks:
    ``on_chunk(table, row_numbers, rows)`` when ``chunk_rows`` are buffered and when the table
    ends; then ``on_table_end(table)`` for each table that got data rows."""

    def __init__(
        self,
        new_table_id: Callable[[], str],
        sample_rows: int,
        chunk_rows: int,
        on_chunk: Callable[[TableDraft, list[int], list[list[Any]]], None],
        on_table_end: Callable[[TableDraft], None],
    ) -> None:
        self.new_table_id = new_table_id
        self.sample_rows = sample_rows
        self.chunk_rows = chunk_rows
        self.on_chunk = on_chunk
        self.on_table_end = on_table_end
        self.open: list[TableDraft] = []
        self.row_counts: dict[str, int] = {}
        self.rows_read = 0
        self.headers_without_data = 0
        self.orphan_data_rows = 0
        self.tables: list[TableDraft] = []
        self.last_row = 0

    def count(self, row_type: str, n: int = 1) -> None:
        self.row_counts[row_type] = self.row_counts.get(row_type, 0) + n

    def gap(self, row_number: int) -> bool:
        """Account for blank rows before ``row_number``; True if there were any."""
        blank = row_number - self.last_row - 1
        self.last_row = row_number
        if blank > 0:
            self.count("blank", blank)
            self.close_all("blank")
            return True
        return False

    def feed(self, row_number: int, row_type: str, values: list[Any]) -> None:
        self.rows_read += 1
        counts = self.row_counts
        counts[row_type] = counts.get(row_type, 0) + 1
        if row_type == "data":
            self._data(row_number, values)
        elif row_type == "header":
            self.close_all("header")
            for first, last in header_segments(values):
                headers = [header_text(v) for v in values[first - 1 : last]]
                self.open.append(TableDraft(self.new_table_id(), row_number, first, last, headers))
        else:
            self.close_all(row_type)

    def _data(self, row_number: int, values: list[Any]) -> None:
        open_tables = self.open
        if not open_tables:
            self.orphan_data_rows += 1
            return
        claimed = 0
        closed = False
        spans_row = False  # a table's span covers every cell of the row: nothing outside
        for table in open_tables:
            first = table.first_column
            cells = values[first - 1 : table.last_column]
            filled = len(cells) - cells.count(None)
            if not filled:
                self._close(table, "blank")
                closed = True
                continue
            if first == 1 and len(values) <= table.last_column:
                spans_row = True
            claimed += filled
            missing = table.width - len(cells)
            if missing:
                cells.extend([None] * missing)
            count = table.data_rows = table.data_rows + 1
            if count == 1:
                table.first_data_row = row_number
            table.last_data_row = row_number
            if count <= self.sample_rows:
                table.sample.append(cells)
            pending = table.pending_rows
            pending.append(cells)
            table.pending_numbers.append(row_number)
            if len(pending) >= self.chunk_rows:
                self._flush(table)
        if closed:
            open_tables = self.open = [t for t in open_tables if t.ended_by == "open"]
        if spans_row:
            return
        outside = len(values) - values.count(None) - claimed
        if outside and open_tables:
            open_tables[0].cells_outside_header += outside
        elif outside:
            self.orphan_data_rows += 1

    def _flush(self, table: TableDraft) -> None:
        if table.pending_rows:
            self.on_chunk(table, table.pending_numbers, table.pending_rows)
            table.pending_numbers = []
            table.pending_rows = []

    def close_all(self, ended_by: str) -> None:
        for table in self.open:
            self._close(table, ended_by)
        self.open = []

    def _close(self, table: TableDraft, ended_by: str) -> None:
        table.ended_by = ended_by
        if not table.data_rows:
            self.headers_without_data += 1
            return
        self._flush(table)
        self.tables.append(table)
        self.on_table_end(table)

    def finish(self) -> None:
        self.close_all("end_of_sheet")
