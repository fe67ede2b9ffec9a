"""Pass 4, validate: stream the output-shaped chunks through the engine's required-value check
and each field's ``validate`` (which reads the column's profile ``state``), into the issue log.
A required field that a written table neither maps nor fills is an error-level issue too.
"""

from __future__ import annotations

from typing import Any

from ade.configs.package import FieldSpec
from ade.engine._artifact import FieldValidation, ValidationRecord
from ade.engine._code import ConfigFunction
from ade.engine._plan import EngineContext, PlannedTable, TablePlan
from ade.engine._returns import redact, validate_result
from ade.engine._spool import Spool
from ade.engine._transform import column_context

__all__ = ["validate"]


def validate(ctx: EngineContext, plan: TablePlan, shaped: Spool) -> None:
    fields = ctx.package.fields
    code = ctx.code
    counts = {f.name: [0, 0, 0] for f in fields}  # checked, errors, warnings
    with ctx.progress.running("validate") as stats:
        for table in plan.written:
            _required_columns(ctx, table)
            present = [
                (i, spec)
                for i, spec in enumerate(fields)
                if spec.name in table.field_sources or spec.name in table.filled_fields
            ]
            wanted = {i for i, _ in present}
            for ref, out_row in table.out_chunks:
                numbers, out = shaped.read_columns(ref, wanted)
                for i, spec in present:
                    source_index = table.source_of(spec.name)
                    values = out[i]
                    assert values is not None
                    found: list[tuple[int, str, str, str]] = []
                    if spec.required and not _all_filled(values):
                        found.extend(
                            (k, "required", f"{spec.label} is required", "error")
                            for k, v in enumerate(values)
                            if v is None or (type(v) is str and not v.strip())
                        )
                    fn = code.validators.get(spec.name)
                    if fn is not None:
                        found.extend(_call(fn, spec, table, numbers, values))
                    counter = counts[spec.name]
                    counter[0] += len(values)
                    for index, issue_code, message, severity in found:
                        counter[1 if severity == "error" else 2] += 1
                        ctx.issues.add(
                            table.issue(
                                "validate",
                                numbers[index],
                                source_index,
                                spec.name,
                                issue_code,
                                severity,
                                redact(message, values[index]),
                                out_row + index,
                            )
                        )
        errors = sum(c[1] for c in counts.values())
        warnings = sum(c[2] for c in counts.values())
        plan.validation = ValidationRecord(
            issue_count=errors + warnings,
            errors=errors,
            warnings=warnings,
            fields=[
                FieldValidation(
                    field=name,
                    rule=code.validators[name].rule if name in code.validators else None,
                    checked=c[0],
                    errors=c[1],
                    warnings=c[2],
                )
                for name, c in counts.items()
            ],
        )
        stats["issues"] = errors + warnings
        stats["errors"] = errors
        stats["warnings"] = warnings


def _all_filled(values: list[Any]) -> bool:
    """No empty or blank-text value: the usual answer, found in C loops before a per-value
    search (a required column is checked on every row)."""
    return None not in values and set(map(type, values)) == _TEXT and all(map(str.strip, values))


_TEXT = {str}


def _required_columns(ctx: EngineContext, table: PlannedTable) -> None:
    """Settle the table's missing required fields now that transforms may have filled some."""
    table.required_missing = [
        name for name in table.required_missing if name not in table.filled_fields
    ]
    for name in table.required_missing:
        spec = ctx.package.field(name)
        message = (
            f"no column of table {table.range} maps to the required field {spec.label!r}; "
            f"its {table.draft.data_rows} row(s) have no value for it"
        )
        ctx.issues.add(
            table.issue(
                "validate",
                table.draft.header_row,
                None,
                name,
                "required_field_missing",
                "error",
                message,
            )
        )


def _call(
    fn: ConfigFunction,
    spec: FieldSpec,
    table: PlannedTable,
    numbers: list[int],
    values: list[Any],
) -> list[tuple[int, str, str, str]]:
    available = {
        **column_context(spec, table),
        "values": list(values),
        "row_numbers": list(numbers),
        "required": spec.required,
        "state": table.states.get(spec.name, {}),
    }
    return validate_result(fn, fn.call("validate", available), len(values))
