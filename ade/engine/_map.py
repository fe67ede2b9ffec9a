"""Pass 2, map: score every table column against every field from its header and sample only,
let :func:`~ade.engine._mapping.decide_mapping` pick one column per field, and fix the output
column plan (fields in manifest order, then unmapped columns in the order first seen) before a
single output row is written. Tables whose rows will not be written (nothing mapped, or an
unrecognised table the manifest says to report only) become ``map`` warnings.
"""

from __future__ import annotations

from ade.engine._artifact import ColumnRecord, OutputColumn, RuleScore
from ade.engine._cells import column_letter
from ade.engine._mapping import decide_mapping
from ade.engine._plan import EngineContext, PlannedTable, TablePlan
from ade.engine._returns import column_votes
from ade.errors import InputError

__all__ = ["EXCEL_MAX_COLUMNS", "EXCEL_MAX_ROWS", "map_tables"]

EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_COLUMNS = 16_384


def map_tables(ctx: EngineContext, plan: TablePlan) -> None:
    package = ctx.package
    fields = package.fields
    threshold = package.engine.mapping_threshold
    writer = package.writer
    unmapped_headers: set[str] = set()
    unmapped_order: list[str] = []
    labels = {f.label for f in fields}
    with ctx.progress.running("map") as stats:
        for table in plan.tables:
            draft = table.draft
            letters = [column_letter(draft.first_column + i) for i in range(draft.width)]
            scores, rules = _score_columns(ctx, table, letters)
            decisions = decide_mapping(draft.headers, scores, fields, threshold, letters)
            table.field_sources = {d.field: d.index for d in decisions if d.field is not None}
            table.required_missing = [
                f.name for f in fields if f.required and f.name not in table.field_sources
            ]
            _decide_status(ctx, table)
            seen_here: set[str] = set()
            for d in decisions:
                header = draft.headers[d.index]
                output_header = None
                if d.field is None and table.status == "written" and writer.append_unmapped:
                    shown = header if header is not None else letters[d.index]
                    output_header = _unique(f"{writer.unmapped_prefix}{shown}", labels | seen_here)
                    seen_here.add(output_header)
                    if output_header not in unmapped_headers:
                        unmapped_headers.add(output_header)
                        unmapped_order.append(output_header)
                table.columns.append(
                    ColumnRecord(
                        index=d.index,
                        letter=letters[d.index],
                        header=header,
                        header_parts=list(draft.header_parts[d.index]),
                        status="mapped" if d.field is not None else "unmapped",
                        field=d.field,
                        score=None if d.score is None else round(d.score, 6),
                        rules=rules[d.index],
                        unmapped_reason=d.unmapped_reason,
                        output_header=(
                            package.field(d.field).label if d.field is not None else output_header
                        ),
                    )
                )
        _output_plan(plan, fields, unmapped_order)
        stats["tables"] = len(plan.tables)
        stats["tables_written"] = len(plan.written)
        stats["mapped_columns"] = sum(len(t.field_sources) for t in plan.tables)
        stats["unmapped_columns"] = sum(
            1 for t in plan.tables for c in t.columns if c.field is None
        )


def _decide_status(ctx: EngineContext, table: PlannedTable) -> None:
    draft = table.draft
    if not draft.recognised:
        headers = ", ".join(repr(h) for h in draft.headers if h is not None)
        written = ctx.package.engine.unrecognised_tables == "write"
        _warn(
            ctx,
            table,
            "unrecognised_table",
            f"table {table.range} has a header row ({headers}) that the config's header "
            f"detectors do not recognise; its {draft.data_rows} data row(s) are "
            + ("written" if written else "not written (manifest engine.unrecognised_tables)"),
        )
        if not written:
            table.status = "skipped"
            table.skip_reason = "unrecognised table (manifest engine.unrecognised_tables: report)"
            return
        if table.field_sources or ctx.package.writer.append_unmapped:
            return
    elif table.field_sources:
        return
    table.status = "skipped"
    table.skip_reason = "no column scored at or above the mapping threshold"
    _warn(
        ctx,
        table,
        "table_skipped",
        f"table {table.range}: no column maps to a field; its {draft.data_rows} data row(s) "
        "are not written",
    )


def _warn(ctx: EngineContext, table: PlannedTable, code: str, message: str) -> None:
    ctx.issues.add(table.issue("map", table.draft.header_row, None, None, code, "warning", message))


def _output_plan(plan: TablePlan, fields: tuple, unmapped_order: list[str]) -> None:
    plan.output_columns = [
        OutputColumn(i, column_letter(i + 1), f.label, "field", f.name)
        for i, f in enumerate(fields)
    ]
    for header in unmapped_order:
        i = len(plan.output_columns)
        plan.output_columns.append(OutputColumn(i, column_letter(i + 1), header, "unmapped", None))
    index_of = {c.header: c.index for c in plan.output_columns if c.kind == "unmapped"}
    next_row = 2  # row 1 holds the headers
    for table in plan.tables:
        table.output_sources = [None] * len(plan.output_columns)
        if table.status != "written":
            continue
        for i, f in enumerate(fields):
            table.output_sources[i] = table.field_sources.get(f.name)
        for column in table.columns:
            if column.field is None and column.output_header is not None:
                table.output_sources[index_of[column.output_header]] = column.index
        table.output_first_row = next_row
        next_row += table.draft.data_rows
    if next_row - 1 > EXCEL_MAX_ROWS or len(plan.output_columns) > EXCEL_MAX_COLUMNS:
        # Checked before writing: Excel cannot open a sheet past these limits.
        raise InputError(
            f"the normalized output would be {next_row - 1} rows by "
            f"{len(plan.output_columns)} columns; an Excel sheet holds at most "
            f"{EXCEL_MAX_ROWS} rows and {EXCEL_MAX_COLUMNS} columns"
        )


def _score_columns(
    ctx: EngineContext, table: PlannedTable, letters: list[str]
) -> tuple[list[dict[str, float]], list[list[RuleScore]]]:
    draft = table.draft
    package = ctx.package
    field_names = frozenset(package.field_names)
    scores: list[dict[str, float]] = []
    rules: list[list[RuleScore]] = []
    for index in range(draft.width):
        column_scores: dict[str, float] = {}
        contributions: list[RuleScore] = []
        sample = [row[index] for row in draft.sample]
        for spec in package.fields:
            available = {
                "header": draft.headers[index],
                "header_parts": list(draft.header_parts[index]),
                "values": list(sample),
                "column_index": index,
                "column_letter": letters[index],
                "field": spec.name,
                "label": spec.label,
                "synonyms": list(spec.synonyms),
                "field_type": spec.type,
                "sheet_name": table.sheet,
                "input_name": table.source.name,
                "table_id": draft.id,
            }
            for fn in ctx.code.column_detectors[spec.name]:
                result = fn.call("map", available)
                for field, delta in column_votes(fn, spec, result, field_names):
                    if delta:
                        column_scores[field] = column_scores.get(field, 0.0) + delta
                        contributions.append(RuleScore(fn.rule, field, round(delta, 6)))
        scores.append(column_scores)
        rules.append(contributions)
    return scores, rules


def _unique(header: str, taken: set[str]) -> str:
    if header not in taken:
        return header
    n = 2
    while f"{header} ({n})" in taken:
        n += 1
    return f"{header} ({n})"
