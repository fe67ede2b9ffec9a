"""The artifact.json vocabulary: frozen attrs classes, serialized only through ``ade.serde``.

docs/artifact.md documents every field. :func:`parse_artifact` is the validator: it structures
a JSON document back into :class:`Artifact` with unknown keys forbidden, so a document that
parses is exactly the documented shape. Nothing here holds a cell value: header text, names,
counts and A1 references only.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import cattrs

from ade.serde import converter

__all__ = [
    "ARTIFACT_SCHEMA",
    "Artifact",
    "ColumnRecord",
    "ConfigRecord",
    "CsvRecord",
    "FieldValidation",
    "HookRecord",
    "InputRecord",
    "IssueRecord",
    "OutputColumn",
    "OutputRecord",
    "PassRecord",
    "RuleScore",
    "SheetRecord",
    "SummaryRecord",
    "TableRecord",
    "TransformRecord",
    "UnmappedColumn",
    "ValidationRecord",
    "dump_artifact",
    "parse_artifact",
]

ARTIFACT_SCHEMA = "ade.artifact/v1"


@attrs.frozen
class ConfigRecord:
    schema: str
    title: str
    version: str
    content_hash: str


@attrs.frozen
class SheetRecord:
    name: str
    index: int
    # "tables_found" | "unrecognised_tables_only" | "no_header_row" | "no_table" | "empty"
    outcome: str
    rows_read: int  # non-blank rows
    blank_rows: int
    row_counts: dict[str, int]  # what the row detectors decided, blank rows included
    accounting: dict[str, int]  # where each non-blank row ended up; the values sum to rows_read
    tables: list[str]


@attrs.frozen
class CsvRecord:
    encoding: str  # "utf-8" | "utf-8-sig" | "utf-16" | "cp1252"
    encoding_reason: str
    delimiter: str
    delimiter_reason: str


@attrs.frozen
class InputRecord:
    index: int
    name: str
    format: str  # "xlsx" | "xls" | "xlsb" | "ods" | "csv"
    reader: str  # "xlsx-stream" | "calamine" | "csv"
    size_bytes: int
    sha256: str
    csv: CsvRecord | None
    sheets: list[SheetRecord]


@attrs.frozen
class RuleScore:
    rule: str  # "columns/email.py:detect_header"
    field: str
    delta: float


@attrs.frozen
class ColumnRecord:
    index: int  # 0-based position inside the table
    letter: str  # source column letter
    header: str | None
    header_parts: list[str]  # [group, leaf] under a stacked header, else [leaf]
    status: str  # "mapped" | "unmapped"
    field: str | None
    score: float | None
    rules: list[RuleScore]
    unmapped_reason: str | None
    output_header: str | None


@attrs.frozen
class TableRecord:
    id: str
    input: str
    sheet: str
    range: str
    header_row: int
    first_data_row: int
    last_data_row: int
    data_rows: int
    blank_rows: int
    ended_by: str
    recognised: bool
    group_header_row: int | None
    continues: str | None  # the table it continues after a note, label or totals row
    status: str  # "written" | "skipped"
    skip_reason: str | None
    columns: list[ColumnRecord]
    mapped_fields: list[str]
    filled_fields: list[str]
    required_missing: list[str]
    cells_outside_table: int
    output_first_row: int | None
    output_last_row: int | None


@attrs.frozen
class UnmappedColumn:
    table: str
    column: str
    header: str | None
    reason: str
    output_header: str | None


@attrs.frozen
class IssueRecord:
    pass_name: str  # "locate" | "map" | "transform" | "validate"
    table: str | None
    input: str
    sheet: str | None
    row: int | None
    cell: str | None
    field: str | None
    code: str
    severity: str  # "error" | "warning"
    message: str
    output_row: int | None


@attrs.frozen
class TransformRecord:
    field: str
    rule: str
    values: int
    changed: int
    warnings: int


@attrs.frozen
class FieldValidation:
    field: str
    rule: str | None
    checked: int
    errors: int
    warnings: int


@attrs.frozen
class ValidationRecord:
    issue_count: int
    errors: int
    warnings: int
    fields: list[FieldValidation]


@attrs.frozen
class HookRecord:
    hook: str
    rule: str
    annotations: list[dict[str, Any]]


@attrs.frozen
class OutputColumn:
    index: int
    letter: str
    header: str
    kind: str  # "field" | "unmapped"
    field: str | None


@attrs.frozen
class OutputRecord:
    path: str
    sheet: str
    columns: list[OutputColumn]
    rows_written: int


@attrs.frozen
class PassRecord:
    name: str
    seconds: float
    stats: dict[str, int]


@attrs.frozen
class SummaryRecord:
    """The run at a glance; what the job record and the finish event carry."""

    outcome: str  # "clean" | "warnings" | "errors"
    errors: int
    warnings: int
    rows_read: int
    rows_written: int
    rows_outside_tables: int
    tables_found: int
    tables_written: int
    unrecognised_tables: int
    required_missing: list[str]


@attrs.frozen
class Artifact:
    schema: str
    engine_version: str
    started_at: str
    finished_at: str
    duration_seconds: float
    config: ConfigRecord
    inputs: list[InputRecord]
    tables: list[TableRecord]
    unmapped_columns: list[UnmappedColumn]
    required_missing: list[str]
    transforms: list[TransformRecord]
    validation: ValidationRecord
    issues: list[IssueRecord]
    issues_truncated: bool
    hooks: list[HookRecord]
    output: OutputRecord
    passes: list[PassRecord]
    summary: SummaryRecord


def dump_artifact(artifact: Artifact) -> str:
    return json.dumps(converter.unstructure(artifact), indent=2, ensure_ascii=False) + "\n"


def parse_artifact(text: str) -> Artifact:
    """Structure ``text`` into :class:`Artifact`; raises if any key is unknown, missing or of
    the wrong type (the converter forbids extra keys), with every problem's JSON path, or if a
    sheet's row accounting does not add up to its rows read (so every test that parses an
    artifact checks the invariant)."""
    try:
        artifact = converter.structure(json.loads(text), Artifact)
    except cattrs.BaseValidationError as exc:
        raise ValueError("artifact.json: " + "; ".join(cattrs.transform_error(exc))) from exc
    if artifact.schema != ARTIFACT_SCHEMA:
        raise ValueError(f"unexpected artifact schema {artifact.schema!r}")
    for source in artifact.inputs:
        for sheet in source.sheets:
            # The engine's first law: every non-blank row read is in exactly one place.
            if sum(sheet.accounting.values()) != sheet.rows_read:
                raise ValueError(
                    f"artifact.json: inputs[{source.index}].sheets[{sheet.index}].accounting "
                    f"adds up to {sum(sheet.accounting.values())}, not rows_read "
                    f"{sheet.rows_read}"
                )
    return artifact
