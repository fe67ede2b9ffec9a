"""Pass 1's decisions: where the tables are. A plain object fed one classified row at a time;
no I/O, so tests drive it with small grids (tests/engine/test_locator.py).

Theory of operation (docs/config-packages.md explains it to config authors):

* Every non-blank row ends up in exactly one place, its **kind** in :attr:`TableLocator.kinds`:
  a table's header, group header or data (``table_header``, ``table_group_header``,
  ``table_data``), an unrecognised table's header or data, a header that got no data, a data
  row outside any table (``outside_table``), or the row type the detectors gave it (``other``,
  ``totals``, ...). :meth:`TableLocator.finish` checks that the kinds add up to the rows read.
* A ``header`` row opens a *header block*. Its column layout is decided once the first
  ``layout_rows`` data rows are in (or the block ends): the span of its filled header cells is
  split wherever a band of columns is empty in the header *and* in every one of those rows, so
  side-by-side tables become separate tables while a blank header cell over a filled data
  column stays an unnamed column of one table. Two neighbouring parts are joined again when
  they are one table split by an empty column: no header text in both, and the same records
  (9 in 10 of the rows filling either fill both, ``MIN_JOIN_ROWS`` rows at least). A column
  with no header cell just beside the header's span that at least half the rows fill (a
  pandas index, an unnamed notes column) is an unnamed column of the table. Buffered rows
  are then replayed into the tables.
* ``data`` rows extend the open tables. Blank rows do not end a table by themselves: a table
  stays open across up to ``max_blank_rows`` blank rows (its cells blank, or the whole row) and
  continues when the next row is data of the same shape (at least as many filled cells inside
  the open tables' columns as outside). A header, a row of any other type, or a longer gap ends
  it; ``ended_by`` records what did (``blank``: more blank rows than the tolerance).
* A row of two or more text cells directly above a header, with fewer cells than the header, is
  a **group header** (stacked headers, e.g. ``Contact | Hours | Pay`` over merged cells): each
  group label is joined to the leaf headers from its column to the next label
  (``Contact / Email``).
* A row of two or more text cells that no header detector recognised, followed (within the
  blank tolerance) by data rows under it, is an **unrecognised table**: found structurally,
  reported with its range and header texts, never silently dropped.
* A table that a note, a section label or a totals row interrupts (at most
  ``MAX_INTERRUPTIONS`` such rows, blank rows within the tolerance) and that goes on below with
  data rows of its shape (filling at least half its columns) **continues** as a new table with
  the same header (``continues`` names the first part): the interrupting row still ends the
  first part, as it should, and no member below it is lost. A row of two or more text cells
  above the data rows makes them an unrecognised table instead (it looks like their header).
  Such rows between a header and its first data row (``Members by branch`` / ``North
  branch`` under the header) do not end it either: the table has not started.
* Data rows that no table claims are ``outside_table`` rows; cells of a claimed row outside
  every table's columns are counted. Both are reported through ``on_issue`` (row numbers and
  counts only, never values).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

__all__ = [
    "GROUP_HEADER",
    "HEADER",
    "HEADER_WITHOUT_DATA",
    "LAYOUT_ROWS",
    "OUTSIDE",
    "TABLE_DATA",
    "UNRECOGNISED_DATA",
    "UNRECOGNISED_HEADER",
    "TableDraft",
    "TableLocator",
    "header_text",
]

HEADER = "table_header"
GROUP_HEADER = "table_group_header"
TABLE_DATA = "table_data"
UNRECOGNISED_HEADER = "unrecognised_table_header"
UNRECOGNISED_DATA = "unrecognised_table_data"
HEADER_WITHOUT_DATA = "header_without_data"
OUTSIDE = "outside_table"

# Data rows seen before a header block's column layout is fixed: enough to see which columns
# are empty all the way down in practice, small enough that buffering them costs nothing.
LAYOUT_ROWS = 100
# Data rows it takes to tell one table split by an empty column from two tables side by side.
MIN_JOIN_ROWS = 3
# Non-blank rows (notes, section labels, totals) that may interrupt a table that then goes on.
MAX_INTERRUPTIONS = 2

IssueCallback = Callable[[str, int, int], None]  # (code, row number, count)


@attrs.define
class TableDraft:
    """A table being found. ``data_rows`` and the sample grow as rows arrive."""

    id: str
    header_row: int
    first_column: int  # 1-based, inclusive
    last_column: int
    headers: list[str | None]
    header_parts: list[list[str]]  # per column: [group, leaf], [leaf] or []
    recognised: bool = True
    group_row: int | None = None
    continues: str | None = None  # the table this one continues after an interruption
    data_rows: int = 0
    first_data_row: int = 0
    last_data_row: int = 0
    blank_rows: int = 0  # blank rows (for this table's columns) between its data rows
    pending_blank: int = 0  # blank rows since its last data row
    ended_by: str = "open"
    cells_outside: int = 0  # filled cells of its rows right of every table's columns
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


def _filled(values: list[Any]) -> int:
    return len(values) - values.count(None)


def _span(values: list[Any]) -> tuple[int, int]:
    """1-based first and last filled column of a row with at least one filled cell."""
    first = next(i for i, v in enumerate(values, start=1) if v is not None)
    last = len(values)
    while values[last - 1] is None:
        last -= 1
    return first, last


def _all_text(values: list[Any]) -> bool:
    return all(type(v) is str for v in values if v is not None)


@attrs.define
class _Row:
    number: int
    row_type: str
    values: list[Any]


@attrs.define
class _Resume:
    """Tables that a non-data row ended, which data rows of their shape may continue."""

    tables: list[TableDraft]
    last_row: int
    interruptions: int = 1


@attrs.define
class _Block:
    """A header row whose column layout is not decided yet, with the data rows seen so far."""

    header: _Row
    recognised: bool
    group: _Row | None
    first: int
    last: int
    rows: list[tuple[int, list[Any]]] = attrs.field(factory=list)
    interruptions: int = 0  # non-data rows between the header and its first data row
    last_interruption: int = 0


class TableLocator:
    """Feed the non-blank rows of one sheet in order (:meth:`feed`), then :meth:`finish`.

    Data rows are buffered per table and handed over in chunks: ``on_chunk(table, row_numbers,
    rows)`` when ``chunk_rows`` are buffered and when the table ends; then
    ``on_table_end(table)`` for each table that got data rows."""

    def __init__(
        self,
        new_table_id: Callable[[], str],
        *,
        sample_rows: int,
        chunk_rows: int,
        max_blank_rows: int,
        on_chunk: Callable[[TableDraft, list[int], list[list[Any]]], None],
        on_table_end: Callable[[TableDraft], None],
        on_issue: IssueCallback,
        layout_rows: int = LAYOUT_ROWS,
    ) -> None:
        self.new_table_id = new_table_id
        self.sample_rows = sample_rows
        self.chunk_rows = chunk_rows
        self.max_blank_rows = max_blank_rows
        self.layout_rows = layout_rows
        self.on_chunk = on_chunk
        self.on_table_end = on_table_end
        self.on_issue = on_issue
        self.kinds: dict[str, int] = {}
        self.row_types: dict[str, int] = {}  # what the detectors said, blank rows included
        self.rows_read = 0
        self.blank_rows = 0
        self.tables: list[TableDraft] = []
        self.last_row = 0
        self._block: _Block | None = None
        self._open: list[TableDraft] = []
        self._header_tables: list[TableDraft] = []  # every table of the current header
        self._header: _Block | None = None  # the current header (decided or not)
        self._last_table_row = 0
        self._pending: _Row | None = None
        self._resume: _Resume | None = None
        self._last_kind: str | None = None

    # -- what classification may ask -------------------------------------------------------------

    def table_open(self, row_number: int) -> bool:
        """Whether a table would still take a data row at ``row_number`` (blank rows within the
        tolerance keep it open): the row detectors' ``in_table`` argument."""
        if self._block is None and not self._open:
            return False
        return row_number - self._last_table_row - 1 <= self.max_blank_rows

    # -- feeding ---------------------------------------------------------------------------------

    def feed(self, row_number: int, row_type: str, values: list[Any]) -> None:
        self.rows_read += 1
        self.row_types[row_type] = self.row_types.get(row_type, 0) + 1
        gap = row_number - self.last_row - 1
        self.last_row = row_number
        if gap > 0:
            self.blank_rows += gap
            self.row_types["blank"] = self.row_types.get("blank", 0) + gap
            self._blank(gap)
        if row_type == "data":
            # The common case first: a data row right under an open table's last row.
            if gap or self._block is not None or not self._open:
                self._data(row_number, values, gap > 0)
            elif not self._claim(row_number, values):
                self._unclaimed(row_number, values, False)
        elif row_type == "header":
            self._new_header(_Row(row_number, row_type, values))
        else:
            self._settle_pending()
            block = self._block
            if block is not None and not block.rows and block.interruptions < MAX_INTERRUPTIONS:
                # A label or note right under a header: the table has not started yet.
                block.interruptions += 1
                block.last_interruption = row_number
                self._last_table_row = row_number
                self._place(row_type)
                return
            resume = self._resume
            if resume is not None:
                if row_number - resume.last_row - 1 > self.max_blank_rows:
                    self._resume = None
                else:
                    resume.interruptions += 1
                    resume.last_row = row_number
                    if resume.interruptions > MAX_INTERRUPTIONS:
                        self._resume = None
            self._close_all(row_type)
            self._non_table_row(_Row(row_number, row_type, values), may_head=row_type == "other")

    def finish(self) -> None:
        self._close_all("end_of_sheet")
        self._settle_pending()
        placed = sum(self.kinds.values())
        if placed != self.rows_read:  # the engine's first law; a failure here is an ADE bug
            raise AssertionError(f"row accounting: {placed} rows placed, {self.rows_read} read")

    # -- rows ------------------------------------------------------------------------------------

    def _place(self, kind: str, n: int = 1) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + n
        self._last_kind = kind

    def _blank(self, gap: int) -> None:
        if self._block is not None:
            if self.last_row - self._last_table_row - 1 > self.max_blank_rows:
                self._close_all("blank")
            return
        if self._open:
            for table in self._open:
                table.pending_blank += gap
            self._drop_ended()

    def _new_header(self, row: _Row) -> None:
        self._resume = None
        pending = self._pending
        self._pending = None
        group = None
        if pending is not None and self._is_group(pending, row):
            group = pending
        elif pending is not None:
            self._settle(pending)
        self._close_all("header")
        first, last = _span(row.values)
        self._block = _Block(row, True, group, first, last)
        self._header = self._block
        self._header_tables = []
        self._last_table_row = row.number

    def _is_group(self, pending: _Row, header: _Row) -> bool:
        if pending.number != header.number - 1 or not _all_text(pending.values):
            return False
        filled = _filled(pending.values)
        if filled < 2 or filled >= _filled(header.values):
            return False
        first, last = _span(pending.values)
        h_first, h_last = _span(header.values)
        return h_first <= first and last <= h_last

    def _data(self, row_number: int, values: list[Any], after_gap: bool) -> None:
        if (self._block is not None or self._open) and self._take(row_number, values, after_gap):
            return
        self._unclaimed(row_number, values, after_gap)

    def _unclaimed(self, row_number: int, values: list[Any], after_gap: bool) -> None:
        """A data row that no open header block or table took."""
        if after_gap and (self._block is not None or self._open):
            self._close_all("blank")
        if self._block is not None or self._open:
            # Tables stay open (the row is in other columns): this row is outside them.
            self._settle_pending()
            self._settle(_Row(row_number, "data", values))
            return
        pending = self._pending
        if pending is not None and self._heads(pending, row_number, values):
            self._pending = None
            self._resume = None
            first, last = _span(pending.values)
            self._block = _Block(pending, False, None, first, last)
            self._header = self._block
            self._header_tables = []
            self._last_table_row = pending.number
            self._take(row_number, values, after_gap)
            return
        resume = self._resume
        self._resume = None
        if resume is not None and self._continues(resume, row_number, values):
            self._settle_pending()
            self._open = [
                TableDraft(
                    self.new_table_id(),
                    t.header_row,
                    t.first_column,
                    t.last_column,
                    list(t.headers),
                    [list(p) for p in t.header_parts],
                    recognised=t.recognised,
                    group_row=t.group_row,
                    continues=t.continues or t.id,
                )
                for t in resume.tables
            ]
            self._header_tables = list(self._open)  # their header row is placed already
            self._claim(row_number, values)
            return
        self._settle_pending()
        self._non_table_row(_Row(row_number, "data", values), may_head=self._last_kind != OUTSIDE)

    def _continues(self, resume: _Resume, row_number: int, values: list[Any]) -> bool:
        if row_number - resume.last_row - 1 > self.max_blank_rows:
            return False
        inside = sum(_filled(values[t.first_column - 1 : t.last_column]) for t in resume.tables)
        width = sum(t.width for t in resume.tables)
        return inside >= 2 and 2 * inside >= width and inside >= _filled(values) - inside

    def _heads(self, pending: _Row, row_number: int, values: list[Any]) -> bool:
        """Whether ``pending`` (a text row nobody recognised) is the header of a table whose
        first data row is ``values``."""
        if row_number - pending.number - 1 > self.max_blank_rows:
            return False
        first, last = _span(pending.values)
        inside = _filled(values[first - 1 : last])
        return inside >= 2 and inside >= _filled(values) - inside

    def _non_table_row(self, row: _Row, *, may_head: bool) -> None:
        """A row outside every table: it may still head an unrecognised table or be a group
        header (decided by the next row), else it is placed now."""
        if may_head and _filled(row.values) >= 2 and _all_text(row.values):
            self._pending = row
            return
        self._settle(row)

    def _settle(self, row: _Row) -> None:
        if row.row_type == "data":
            self._place(OUTSIDE)
            self.on_issue("row_outside_table", row.number, 1)
        else:
            self._place(row.row_type)

    def _settle_pending(self) -> None:
        if self._pending is not None:
            pending = self._pending
            self._pending = None
            self._settle(pending)

    # -- tables ----------------------------------------------------------------------------------

    def _take(self, row_number: int, values: list[Any], after_gap: bool) -> bool:
        """Give a data row to the open header block or tables; False if none takes it."""
        block = self._block
        if block is not None:
            inside = _filled(values[block.first - 1 : block.last])
            if not inside or (after_gap and inside < _filled(values) - inside):
                return False
            block.rows.append((row_number, values))
            self._last_table_row = row_number
            if len(block.rows) >= self.layout_rows:
                self._decide()
            return True
        if after_gap:
            inside = sum(_filled(values[t.first_column - 1 : t.last_column]) for t in self._open)
            if inside < _filled(values) - inside:
                return False
        return self._claim(row_number, values)

    def _decide(self) -> None:
        """Fix the header block's column layout (see the module docstring) and replay its rows."""
        block = self._block
        assert block is not None
        self._block = None
        header = block.header.values
        # The whole width the rows use, not only the header's span: a column of data with no
        # header cell next to the header (a pandas index, a notes column nobody named) is an
        # unnamed column of the table, not cells outside it.
        # Outside the header's span a column counts when at least half the rows (two or more)
        # fill it; a stray cell in one row stays outside the table and is reported.
        first, last = 1, max([block.last, *(len(values) for _, values in block.rows)])
        fills = [0] * last
        for _, values in block.rows:
            for c, value in enumerate(values):
                if value is not None:
                    fills[c] += 1
        edge = max(2, (len(block.rows) + 1) // 2)
        occupied = [
            (c < len(header) and header[c] is not None)
            or (fills[c] > 0 if block.first <= c + 1 <= block.last else fills[c] >= edge)
            for c in range(last)
        ]
        segments: list[tuple[int, int]] = []
        start = None
        for offset, used in enumerate([*occupied, False]):
            if used and start is None:
                start = first + offset
            elif not used and start is not None:
                segments.append((start, first + offset - 1))
                start = None
        segments = _join_split_records(segments, header, block.rows)
        group = block.group.values if block.group is not None else None
        for seg_first, seg_last in segments:
            cells = header[seg_first - 1 : seg_last]
            cells += [None] * (seg_last - seg_first + 1 - len(cells))  # unnamed, right of it
            if not _filled(cells):
                continue  # data under no header cell at all: those cells are outside
            headers, parts = _joined_headers(cells, group, seg_first)
            self._open.append(
                TableDraft(
                    self.new_table_id(),
                    block.header.number,
                    seg_first,
                    seg_last,
                    headers,
                    parts,
                    recognised=block.recognised,
                    group_row=None if block.group is None else block.group.number,
                )
            )
        self._header_tables = list(self._open)
        previous = max(block.header.number, block.last_interruption)
        for row_number, values in block.rows:
            gap = row_number - previous - 1
            previous = row_number
            if gap and self._open:
                for table in self._open:
                    table.pending_blank += gap
                self._drop_ended()
            if not self._claim(row_number, values):
                self._place(OUTSIDE)
                self.on_issue("row_outside_table", row_number, 1)

    def _claim(self, row_number: int, values: list[Any]) -> bool:
        # Runs once per data row. The common case first: one open table whose columns hold the
        # whole row, and no blank rows pending; the row is kept as it came (no slice).
        tables = self._open
        if len(tables) == 1:
            table = tables[0]
            if (
                table.first_column == 1
                and len(values) <= table.last_column
                and not table.pending_blank
                and len(values) != values.count(None)
            ):
                missing = table.last_column - len(values)
                self._add(table, row_number, values + [None] * missing if missing else values)
                self._last_table_row = row_number
                kind = self._last_kind = TABLE_DATA if table.recognised else UNRECOGNISED_DATA
                kinds = self.kinds
                kinds[kind] = kinds.get(kind, 0) + 1  # self._place(kind), spelled out
                return True
        claimed = 0
        ended = False
        recognised = False
        for table in tables:
            cells = values[table.first_column - 1 : table.last_column]
            filled = len(cells) - cells.count(None)
            if not filled:
                table.pending_blank += 1
                ended = ended or table.pending_blank > self.max_blank_rows
                continue
            claimed += filled
            recognised = recognised or table.recognised
            missing = table.width - len(cells)
            if missing:
                cells.extend([None] * missing)
            if table.pending_blank:
                table.blank_rows += table.pending_blank
                table.pending_blank = 0
            self._add(table, row_number, cells)
        if not claimed:
            if ended:
                self._drop_ended()
            return False
        self._last_table_row = row_number
        kind = self._last_kind = TABLE_DATA if recognised else UNRECOGNISED_DATA
        kinds = self.kinds
        kinds[kind] = kinds.get(kind, 0) + 1
        outside = len(values) - values.count(None) - claimed
        if outside:
            owner = next(t for t in self._open if t.pending_blank == 0)
            owner.cells_outside += outside
            self.on_issue("cells_outside_table", row_number, outside)
        if ended:
            self._drop_ended()
        return True

    def _add(self, table: TableDraft, row_number: int, cells: list[Any]) -> None:
        """``cells`` (the table's columns of the row, its width long) become a data row."""
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

    def _drop_ended(self) -> None:
        still = []
        for table in self._open:
            if table.pending_blank > self.max_blank_rows:
                self._close(table, "blank")
            else:
                still.append(table)
        self._open = still
        if not still:
            self._end_header()

    def _flush(self, table: TableDraft) -> None:
        if table.pending_rows:
            self.on_chunk(table, table.pending_numbers, table.pending_rows)
            table.pending_numbers = []
            table.pending_rows = []

    def _close_all(self, ended_by: str) -> None:
        if self._block is not None:
            self._decide()
        for table in self._open:
            self._close(table, ended_by)
        ended = [t for t in self._open if t.data_rows]
        if ended and ended_by not in ("header", "blank", "end_of_sheet"):
            self._resume = _Resume(ended, self.last_row)
        self._open = []
        self._end_header()

    def _close(self, table: TableDraft, ended_by: str) -> None:
        table.ended_by = ended_by
        if table.data_rows:
            self._flush(table)
            self.tables.append(table)
            self.on_table_end(table)

    def _end_header(self) -> None:
        """Place the header (and group header) row once every table under it has ended."""
        header = self._header
        if header is None:
            return
        self._header = None
        found = any(t.data_rows for t in self._header_tables)
        if not found:
            # A header with no data; an unrecognised one goes back to what it was.
            if header.recognised:
                self._place(HEADER_WITHOUT_DATA)
            else:
                self._settle(header.header)
            if header.group is not None:
                self._settle(header.group)
            return
        self._place(HEADER if header.recognised else UNRECOGNISED_HEADER)
        if header.group is not None:
            self._place(GROUP_HEADER)


def _join_split_records(
    segments: list[tuple[int, int]], header: list[Any], rows: list[tuple[int, list[Any]]]
) -> list[tuple[int, int]]:
    """Join neighbouring segments that are one table split by an empty column (a column
    deleted or left for later): both have header cells, no header text appears in both (side
    by side tables repeat their headers), and their rows are the same records: at least 9 in
    10 of the rows that fill either fill both (a table beside another one rarely ends on the
    same row). At least ``MIN_JOIN_ROWS`` rows are needed to tell. The empty columns become
    unnamed columns of the joined table. Joining two real side-by-side tables of the same length
    costs less than splitting one: the right one's columns ride along as unmapped columns of
    the same rows, where a split writes each record twice, half empty."""
    if len(segments) < 2 or len(rows) < MIN_JOIN_ROWS:
        return segments
    joined = [segments[0]]
    for seg in segments[1:]:
        if _same_records(joined[-1], seg, header, rows):
            joined[-1] = (joined[-1][0], seg[1])
        else:
            joined.append(seg)
    return joined


def _same_records(
    left: tuple[int, int],
    right: tuple[int, int],
    header: list[Any],
    rows: list[tuple[int, list[Any]]],
) -> bool:
    def texts(seg: tuple[int, int]) -> set[str]:
        cells = (header_text(v) for v in header[seg[0] - 1 : seg[1]])
        return {c.casefold() for c in cells if c is not None}

    left_texts, right_texts = texts(left), texts(right)
    if not left_texts or not right_texts or left_texts & right_texts:
        return False
    both = either = 0
    for _, values in rows:
        in_left = _filled(values[left[0] - 1 : left[1]]) > 0
        in_right = _filled(values[right[0] - 1 : right[1]]) > 0
        either += in_left or in_right
        both += in_left and in_right
    return 10 * both >= 9 * either


def _joined_headers(
    cells: list[Any], group: list[Any] | None, first: int
) -> tuple[list[str | None], list[list[str]]]:
    """Leaf headers joined with the group label above them (``Contact / Email``)."""
    headers: list[str | None] = []
    parts: list[list[str]] = []
    label: str | None = None
    for offset, cell in enumerate(cells):
        column = first + offset
        if group is not None and column <= len(group) and group[column - 1] is not None:
            label = header_text(group[column - 1])
        leaf = header_text(cell)
        own = [p for p in (label, leaf) if p is not None]
        parts.append(own)
        headers.append(" / ".join(own) if own else None)
    return headers, parts
