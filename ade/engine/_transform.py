"""Pass 3, transform: first each field's optional ``profile`` sees its whole column (every raw
chunk of every written table) and builds a per-column ``state``; then the raw spool streams
chunk by chunk through each field's ``transform`` (which reads that state) into output-shaped
chunks. So a decision about a column (day-first dates, say) is made once, from every value,
before any value is changed. A transform may also ``fill`` fields its table has no column for
(a full name split into first and last names). Transform warnings go to the issue log.
"""

from __future__ import annotations

import operator
from typing import Any

from ade.configs.package import FieldSpec
from ade.engine._artifact import TransformRecord
from ade.engine._code import ConfigFunction, contract_error
from ade.engine._plan import EngineContext, PlannedTable, TablePlan
from ade.engine._returns import redact, transform_result
from ade.engine._spool import Spool, StoredColumn

__all__ = ["transform"]


def transform(ctx: EngineContext, plan: TablePlan, raw: Spool, shaped: Spool) -> None:
    fields = ctx.package.fields
    code = ctx.code
    counters = {f.name: [0, 0, 0] for f in fields if f.name in code.transforms}
    width = len(plan.output_columns)
    position = {f.name: i for i, f in enumerate(fields)}
    rows = 0
    with ctx.progress.running("transform") as stats:
        for table in plan.written:
            _profile(ctx, table, raw)
            out_row = table.output_first_row
            assert out_row is not None
            mapped = [f.name for f in fields if f.name in table.field_sources]
            fillable = frozenset(f.name for f in fields if f.name not in table.field_sources)
            filled: dict[str, int] = {}
            # Columns no transform reads are carried into the shaped chunk as stored bytes.
            changed = {
                source
                for spec, source in zip(fields, table.output_sources, strict=False)
                if source is not None and spec.name in code.transforms
            }
            carried = {s for s in table.output_sources if s is not None} - changed
            for ref in table.chunks:
                numbers, columns, stored = raw.read_split(ref, changed, carried)
                n = len(numbers)
                blank: list[Any] = [None] * n
                out: list[list[Any] | StoredColumn] = [blank] * width
                for i, source_index in enumerate(table.output_sources):
                    if source_index in carried:
                        out[i] = stored[source_index]
                    elif source_index is not None:
                        out[i] = columns[source_index]
                for i, spec in enumerate(fields):
                    source_index = table.output_sources[i]
                    fn = code.transforms.get(spec.name)
                    if source_index is None or fn is None:
                        continue
                    before = columns[source_index]
                    after, warnings, fill = _call(
                        fn, spec, table, before, mapped, fillable, table.states.get(spec.name)
                    )
                    counter = counters[spec.name]
                    counter[0] += n
                    counter[1] += sum(map(operator.ne, before, after))
                    for index, warning_code, message in warnings:
                        counter[2] += 1
                        ctx.issues.add(
                            table.issue(
                                "transform",
                                numbers[index],
                                source_index,
                                spec.name,
                                warning_code,
                                "warning",
                                redact(message, before[index], after[index]),
                                out_row + index,
                            )
                        )
                    out[i] = after
                    for name, values in fill.items():
                        out[position[name]] = values
                        filled[name] = source_index
                table.out_chunks.append((shaped.write_columns(numbers, out), out_row))
                out_row += n
                ctx.progress.rows("transform", rows, rows + n)
                rows += n
            table.filled_from = {f.name: filled[f.name] for f in fields if f.name in filled}
        shaped.finish_writing()
        plan.transforms = [
            TransformRecord(
                field=name,
                rule=code.transforms[name].rule,
                values=c[0],
                changed=c[1],
                warnings=c[2],
            )
            for name, c in counters.items()
        ]
        stats["rows"] = rows
        stats["changed"] = sum(t.changed for t in plan.transforms)
        stats["warnings"] = sum(t.warnings for t in plan.transforms)


def column_context(spec: FieldSpec, table: PlannedTable) -> dict[str, Any]:
    """What every column function (profile, transform, validate) is told about its column."""
    source_index = table.field_sources.get(spec.name)
    return {
        "field": spec.name,
        "label": spec.label,
        "field_type": spec.type,
        "header": None if source_index is None else table.draft.headers[source_index],
        "sheet_name": table.sheet,
        "input_name": table.source.name,
        "table_id": table.draft.id,
    }


def _profile(ctx: EngineContext, table: PlannedTable, raw: Spool) -> None:
    """Run each mapped field's ``profile`` over the whole column, once, before transforming."""
    profiled = [
        (spec, ctx.code.profiles[spec.name], table.field_sources[spec.name])
        for spec in ctx.package.fields
        if spec.name in ctx.code.profiles and spec.name in table.field_sources
    ]
    if not profiled:
        return
    calls = []
    for spec, fn, source_index in profiled:
        state: dict[str, Any] = {}
        table.states[spec.name] = state
        calls.append((fn, source_index, {**column_context(spec, table), "state": state}))
    wanted = {source_index for _, source_index, _ in calls}
    for ref in table.chunks:
        _, columns = raw.read_columns(ref, wanted)
        for fn, source_index, available in calls:
            available["values"] = list(columns[source_index])
            if fn.call("profile", available) is not None:
                raise contract_error(
                    fn.file, fn.function, "profile", "returned a value; a profile updates its state"
                )


def _call(
    fn: ConfigFunction,
    spec: FieldSpec,
    table: PlannedTable,
    values: list[Any],
    mapped: list[str],
    fillable: frozenset[str],
    state: dict[str, Any] | None,
) -> tuple[list[Any], list[tuple[int, str, str]], dict[str, list[Any]]]:
    available = {
        **column_context(spec, table),
        "values": list(values),
        "state": {} if state is None else state,
        "mapped_fields": list(mapped),
    }
    return transform_result(fn, fn.call("transform", available), len(values), fillable)
