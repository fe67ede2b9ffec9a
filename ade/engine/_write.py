"""Pass 5, write: stream the output-shaped chunks into normalized.xlsx, straight into the zip
(:mod:`ade.engine._xlsx_stream`). The row count is known from the plan before the first row."""

from __future__ import annotations

from pathlib import Path

from ade.engine._plan import EngineContext, TablePlan
from ade.engine._spool import Spool
from ade.engine._xlsx_stream import StreamingXlsxWriter

__all__ = ["write"]


def write(ctx: EngineContext, plan: TablePlan, shaped: Spool, path: Path) -> None:
    package = ctx.package
    with ctx.progress.running("write") as stats:
        types = [
            package.field(c.field).type if c.field is not None else None
            for c in plan.output_columns
        ]
        written = plan.written
        writer = StreamingXlsxWriter(
            path,
            package.writer.sheet_name,
            [c.header for c in plan.output_columns],
            types,
            sum(t.draft.data_rows for t in written),
        )
        finished = False
        try:
            for table in written:
                for ref, _ in table.out_chunks:
                    _, out = shaped.read_columns(ref)
                    writer.write_rows(zip(*out, strict=True))
                    before = plan.rows_written
                    plan.rows_written += ref.rows
                    ctx.progress.rows("write", before, plan.rows_written)
            finished = True
        finally:
            if finished:
                writer.close()
            else:
                writer.abort()  # the work folder (and this file) is discarded
        stats["rows"] = plan.rows_written
        stats["columns"] = len(plan.output_columns)
        stats["truncated_cells"] = writer.truncated_cells
