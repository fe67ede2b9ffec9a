"""Artifact assembly: the finished table plan, the issue log and the pass timings become
artifact.json (:class:`~ade.engine._artifact.Artifact`), and the run's summary: what hooks,
the job record and ``ade run`` show at a glance.

The outcome rule (docs/artifact.md): ``errors`` when any error-level issue was found (a
validator's error, a required value missing, a required field no written table provides);
else ``warnings`` when any warning was (rows outside any table, unrecognised or skipped
tables, transform and validator warnings); else ``clean``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import ade
from ade.engine._artifact import (
    ARTIFACT_SCHEMA,
    Artifact,
    ConfigRecord,
    CsvRecord,
    HookRecord,
    InputRecord,
    OutputRecord,
    SummaryRecord,
    TableRecord,
    UnmappedColumn,
)
from ade.engine._plan import EngineContext, TablePlan
from ade.engine._readers import InputFile

__all__ = ["OUTCOMES", "assemble", "outcome", "summary", "table_summaries"]

OUTCOMES = ("clean", "warnings", "errors")


def outcome(errors: int, warnings: int) -> str:
    return "errors" if errors else "warnings" if warnings else "clean"


def required_missing(ctx: EngineContext, plan: TablePlan) -> list[str]:
    return [
        f.name
        for f in ctx.package.fields
        if f.required and any(f.name in t.required_missing for t in plan.written)
    ]


def summary(ctx: EngineContext, plan: TablePlan) -> SummaryRecord:
    issues = ctx.issues
    return SummaryRecord(
        outcome=outcome(issues.errors, issues.warnings),
        errors=issues.errors,
        warnings=issues.warnings,
        rows_read=plan.rows_read,
        rows_written=plan.rows_written,
        rows_outside_tables=plan.rows_outside_tables,
        tables_found=len(plan.tables),
        tables_written=len(plan.written),
        unrecognised_tables=sum(not t.draft.recognised for t in plan.tables),
        required_missing=required_missing(ctx, plan),
    )


def table_summaries(plan: TablePlan) -> list[dict[str, Any]]:
    """The tables as hooks see them (names, ranges, counts; never cell values)."""
    return [
        {
            "id": t.id,
            "input": t.source.name,
            "sheet": t.sheet,
            "range": t.range,
            "header_row": t.draft.header_row,
            "data_rows": t.draft.data_rows,
            "recognised": t.draft.recognised,
            "status": t.status,
            "mapping": {
                c.field: {"column": c.letter, "header": c.header, "score": c.score}
                for c in t.columns
                if c.field is not None
            },
            "unmapped": [
                {"column": c.letter, "header": c.header} for c in t.columns if c.field is None
            ],
            "required_missing": list(t.required_missing),
        }
        for t in plan.tables
    ]


def assemble(
    ctx: EngineContext,
    plan: TablePlan,
    sources: list[InputFile],
    dialects: dict[int, CsvRecord | None],
    normalized_name: str,
    hooks: list[HookRecord],
    started: dt.datetime,
    finished: dt.datetime,
    seconds: float,
) -> Artifact:
    package = ctx.package
    assert plan.validation is not None
    tables = []
    unmapped = []
    for t in plan.tables:
        d = t.draft
        out_first = t.output_first_row
        tables.append(
            TableRecord(
                id=d.id,
                input=t.source.name,
                sheet=t.sheet,
                range=t.range,
                header_row=d.header_row,
                first_data_row=d.first_data_row,
                last_data_row=d.last_data_row,
                data_rows=d.data_rows,
                blank_rows=d.blank_rows,
                ended_by=d.ended_by,
                recognised=d.recognised,
                group_header_row=d.group_row,
                continues=d.continues,
                status=t.status,
                skip_reason=t.skip_reason,
                columns=t.columns,
                mapped_fields=[f.name for f in package.fields if f.name in t.field_sources],
                filled_fields=list(t.filled_fields),
                required_missing=t.required_missing,
                cells_outside_table=d.cells_outside,
                output_first_row=out_first,
                output_last_row=None if out_first is None else out_first + d.data_rows - 1,
            )
        )
        unmapped.extend(
            UnmappedColumn(
                table=d.id,
                column=c.letter,
                header=c.header,
                reason=c.unmapped_reason or "",
                output_header=c.output_header,
            )
            for c in t.columns
            if c.field is None
        )
    return Artifact(
        schema=ARTIFACT_SCHEMA,
        engine_version=ade.__version__,
        started_at=started.isoformat(),
        finished_at=finished.isoformat(),
        duration_seconds=round(seconds, 4),
        config=ConfigRecord(
            schema=package.schema,
            title=package.title,
            version=package.version,
            content_hash=package.content_hash,
        ),
        inputs=[
            InputRecord(
                index=s.index,
                name=s.name,
                format=s.format,
                reader=s.reader,
                size_bytes=s.size_bytes,
                sha256=s.sha256,
                csv=dialects.get(s.index),
                sheets=plan.sheets.get(s.index, []),
            )
            for s in sources
        ],
        tables=tables,
        unmapped_columns=unmapped,
        required_missing=required_missing(ctx, plan),
        transforms=plan.transforms,
        validation=plan.validation,
        issues=list(ctx.issues.issues),
        issues_truncated=ctx.issues.truncated,
        hooks=hooks,
        output=OutputRecord(
            path=normalized_name,
            sheet=package.writer.sheet_name,
            columns=plan.output_columns,
            rows_written=plan.rows_written,
        ),
        passes=ctx.progress.passes,
        summary=summary(ctx, plan),
    )
