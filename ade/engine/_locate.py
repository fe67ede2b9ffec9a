"""Pass 1, locate: read every sheet of every input once, classify each row with the package's
row detectors, and let a :class:`~ade.engine._locator.TableLocator` place it. The data rows a
table claims go to the raw spool in chunks (column-major); the first ``sample_rows`` stay in
memory for mapping. Rows outside any table become ``locate`` issues (sheet and row, never
values); the per-sheet accounting goes into the plan's sheet records.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ade.engine import _plan
from ade.engine._artifact import CsvRecord, IssueRecord, SheetRecord
from ade.engine._classify import row_classifier
from ade.engine._issues import new_issue
from ade.engine._locator import UNRECOGNISED_HEADER, TableDraft, TableLocator
from ade.engine._plan import CHUNK_ROWS, EngineContext, PlannedTable, TablePlan
from ade.engine._readers import InputFile, open_sheets
from ade.engine._spool import Spool
from ade.errors import InputError

__all__ = ["MAX_TABLES", "locate"]

# Each table keeps its header and a sample in memory until mapping; this bounds that memory
# for pathological sheets (thousands of one-row "tables").
MAX_TABLES = 5000

_ISSUE_MESSAGES = {
    "row_outside_table": "data row outside any table: it is not in the output",
    "cells_outside_table": "{n} filled cell(s) of this row lie outside the table's columns "
    "and are not in the output",
    "undecodable_bytes": "bytes at offset {n} are not valid UTF-8; each undecodable "
    "sequence is U+FFFD in the output",
}
_SEVERITIES = {"undecodable_bytes": "error"}


def _issue(source: InputFile, sheet: str, code: str, row: int, n: int) -> IssueRecord:
    """A locate issue: where (input, sheet, row) and a count or offset, never a value."""
    severity = _SEVERITIES.get(code, "warning")
    message = _ISSUE_MESSAGES[code].format(n=n)
    return new_issue("locate", source.name, code, severity, message, sheet=sheet, row=row)


def locate(
    ctx: EngineContext, plan: TablePlan, sources: list[InputFile], raw: Spool
) -> dict[int, CsvRecord | None]:
    """Fill ``plan.tables`` and ``plan.sheets``; returns each input's CSV dialect (or None)."""
    dialects: dict[int, CsvRecord | None] = {}
    with ctx.progress.running("detect") as stats:
        for source in sources:
            sheets, close = open_sheets(source, ctx.memory_limit_mb)
            records: list[SheetRecord] = []
            try:
                for sheet in sheets:
                    dialects[source.index] = sheet.csv
                    records.append(
                        _locate_sheet(
                            ctx, plan, source, sheet.name, sheet.index, sheet.rows(), raw, stats
                        )
                    )
                    for row, offset in sheet.decode_errors:
                        ctx.issues.add(_issue(source, sheet.name, "undecodable_bytes", row, offset))
            finally:
                close()
            plan.sheets[source.index] = records
        raw.finish_writing()
        stats["tables"] = len(plan.tables)
        stats["rows_outside_tables"] = plan.rows_outside_tables
    return dialects


def _locate_sheet(
    ctx: EngineContext,
    plan: TablePlan,
    source: InputFile,
    sheet_name: str,
    sheet_index: int,
    rows: Generator[tuple[int, list[Any]], None, None],
    raw: Spool,
    stats: dict[str, int],
) -> SheetRecord:
    package = ctx.package
    found: list[PlannedTable] = []
    by_id: dict[str, PlannedTable] = {}

    def on_chunk(draft: TableDraft, numbers: list[int], chunk: list[list[Any]]) -> None:
        table = by_id.get(draft.id)
        if table is None:
            table = by_id[draft.id] = PlannedTable(draft, source, sheet_name, [])
        table.chunks.append(raw.write_columns(numbers, _columns(chunk)))

    def on_table_end(draft: TableDraft) -> None:
        if len(plan.tables) + len(found) >= MAX_TABLES:
            raise InputError(_too_many_tables(plan, source, sheet_name, draft.last_data_row))
        found.append(by_id[draft.id])

    def on_issue(code: str, row: int, count: int) -> None:
        ctx.issues.add(_issue(source, sheet_name, code, row, count))

    locator = TableLocator(
        plan.new_table_id,
        sample_rows=package.engine.sample_rows,
        chunk_rows=CHUNK_ROWS,
        max_blank_rows=package.engine.max_blank_rows_in_table,
        on_chunk=on_chunk,
        on_table_end=on_table_end,
        on_issue=on_issue,
    )
    field_labels = {f.name: [f.label, *f.synonyms] for f in package.fields}
    classify = row_classifier(package, ctx.code, field_labels, source.name, sheet_name)
    previous: str | None = None
    total = stats.get("rows", 0)
    table_open = locator.table_open
    feed = locator.feed
    every = _plan.PROGRESS_EVERY_ROWS
    for row_number, values in rows:
        if row_number - locator.last_row > 1:
            previous = "blank"
        row_type = classify(row_number, values, previous, table_open(row_number))
        feed(row_number, row_type, values)
        previous = row_type
        total += 1
        if total % every == 0:
            ctx.progress.emit("pass_progress", {"pass": "detect", "rows": total})
    locator.finish()
    stats["rows"] = total
    stats["sheets"] = stats.get("sheets", 0) + 1
    plan.rows_read += locator.rows_read
    found.sort(key=lambda t: int(t.draft.id[1:]))
    plan.tables.extend(found)
    return SheetRecord(
        name=sheet_name,
        index=sheet_index,
        outcome=_outcome(locator, found),
        rows_read=locator.rows_read,
        blank_rows=locator.blank_rows,
        row_counts=dict(sorted(locator.row_types.items())),
        accounting=dict(sorted(locator.kinds.items())),
        tables=[t.id for t in found],
    )


def _outcome(locator: TableLocator, found: list[PlannedTable]) -> str:
    if any(t.draft.recognised for t in found):
        return "tables_found"
    if found:
        return "unrecognised_tables_only"
    if locator.rows_read == 0:
        return "empty"
    if locator.row_types.get("header", 0) == 0 and not locator.kinds.get(UNRECOGNISED_HEADER):
        return "no_header_row"
    return "no_table"


def _too_many_tables(plan: TablePlan, source: InputFile, sheet_name: str, row: int) -> str:
    where = f"sheet {sheet_name!r}, row {row}"
    # The limit is on the run, not per input: say so when earlier inputs count too.
    if plan.tables and plan.tables[0].source.index != source.index:
        what = (
            f"the inputs have more than {MAX_TABLES} tables together (the limit "
            f"was reached in input {source.name!r}, {where})"
        )
    else:
        what = f"input {source.name!r} has more than {MAX_TABLES} tables ({where})"
    return f"{what}; ADE stops there"


def _columns(rows: list[list[Any]]) -> list[list[Any]]:
    """Row-major chunk -> column-major: transforms and validators take a column at a time,
    and a column of like values pickles and unpickles faster than rows of mixed ones."""
    return [list(column) for column in zip(*rows, strict=True)]
