"""The five passes. Theory of operation:

1. **detect** reads every sheet of every input exactly once. Each row is classified by the
   row detectors' summed votes and fed to :class:`~ade.engine._tables.SheetScan`; the data rows
   a table claims go to a disk spool in chunks, and the first ``sample_rows`` stay in memory.
2. **map** scores every table column against every field from its header and sample only,
   then :func:`~ade.engine._mapping.decide_mapping` picks one column per field. The output
   column plan (fields in manifest order, then unmapped columns) is fixed here, before a single
   output row is written.
3. **transform** streams the spool chunk by chunk through each field's ``transform`` and
   spools the output-shaped chunk.
4. **validate** streams those chunks through each field's ``validate`` (and the engine's own
   required-value check), collecting issues.
5. **write** streams them into normalized.xlsx, straight into the zip (`_xlsx_stream`).

Row classification lives in ``_classify``, the checks on what config functions return in
``_returns``, the mapping decision in ``_mapping``; this module runs the passes and records
what they decided.

So the input is parsed once and memory holds one chunk (plus per-table samples) whatever the
row count; the spool is the price, and benchmarks/engine.py measures it against the floor.
Outputs appear in ``out_dir`` only when the run succeeds (written under a temp folder, then
renamed); a failed run leaves nothing half-written.
"""

from __future__ import annotations

import datetime as dt
import operator
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

import ade
from ade.configs.package import ConfigPackage, FieldSpec, load_package
from ade.engine._artifact import (
    ARTIFACT_SCHEMA,
    Artifact,
    ColumnRecord,
    ConfigRecord,
    FieldValidation,
    HookRecord,
    InputRecord,
    IssueRecord,
    OutputColumn,
    OutputRecord,
    PassRecord,
    RuleScore,
    SheetRecord,
    TableRecord,
    TransformRecord,
    UnmappedColumn,
    ValidationRecord,
    dump_artifact,
)
from ade.engine._cells import a1, a1_range, column_letter
from ade.engine._classify import row_classifier
from ade.engine._code import ConfigFunction, LoadedConfig, load_code
from ade.engine._mapping import decide_mapping
from ade.engine._readers import InputFile, describe_input, open_sheets
from ade.engine._returns import (
    column_votes,
    hook_annotations,
    redact,
    transform_result,
    validate_result,
)
from ade.engine._spool import ChunkRef, Spool
from ade.engine._tables import SheetScan, TableDraft
from ade.engine._xlsx_stream import StreamingXlsxWriter
from ade.errors import InputError
from ade.layout import ARTIFACT_FILE, NORMALIZED_FILE

__all__ = ["ARTIFACT_FILE", "NORMALIZED_FILE", "EngineResult", "ProgressCallback", "run_engine"]

CHUNK_ROWS = 1000
PROGRESS_EVERY_ROWS = 100_000
# Each table keeps its header and a sample in memory until mapping; this bounds that memory
# for pathological sheets (thousands of one-row "tables").
MAX_TABLES = 5000
EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_COLUMNS = 16_384
ProgressCallback = Callable[[str, dict[str, Any]], None]


@attrs.frozen
class EngineResult:
    """Summary numbers of a successful run (never cell values)."""

    tables_found: int
    tables_written: int
    rows_written: int
    mapped_fields: tuple[str, ...]
    required_missing: tuple[str, ...]
    issue_count: int
    errors: int
    warnings: int
    normalized_path: str
    artifact_path: str
    duration_seconds: float


@attrs.define
class _Table:
    """A found table with everything later passes need (the draft plus its mapping)."""

    draft: TableDraft
    source: InputFile
    sheet: str
    chunks: list[ChunkRef]
    columns: list[ColumnRecord] = attrs.field(factory=list)
    field_sources: dict[str, int] = attrs.field(factory=dict)  # field -> table column index
    output_sources: list[int | None] = attrs.field(factory=list)  # output col -> table column
    status: str = "written"
    skip_reason: str | None = None
    required_missing: list[str] = attrs.field(factory=list)
    output_first_row: int | None = None
    out_chunks: list[tuple[ChunkRef, int]] = attrs.field(factory=list)  # (ref, first out row)


class _Progress:
    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.passes: list[PassRecord] = []

    def emit(self, event: str, detail: dict[str, Any]) -> None:
        if self.callback is not None:
            self.callback(event, detail)

    @contextmanager
    def running(self, name: str) -> Iterator[dict[str, int]]:
        stats: dict[str, int] = {}
        self.emit("pass_started", {"pass": name})
        started = time.perf_counter()
        yield stats
        seconds = round(time.perf_counter() - started, 4)
        self.passes.append(PassRecord(name, seconds, dict(stats)))
        self.emit("pass_finished", {"pass": name, "seconds": seconds, **stats})


def run_engine(
    inputs: Sequence[Path],
    package: Path | ConfigPackage,
    out_dir: Path,
    *,
    input_names: Sequence[str] | None = None,
    on_progress: ProgressCallback | None = None,
) -> EngineResult:
    """Run the five passes over ``inputs`` and write ``out_dir/normalized.xlsx`` and
    ``out_dir/artifact.json``.

    Raises :class:`~ade.errors.PackageInvalid` (before any input is read),
    :class:`~ade.errors.InputError` or :class:`~ade.errors.ConfigCodeError`; on any error
    neither output file is left behind.
    """
    started_at = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    if not isinstance(package, ConfigPackage):
        package = load_package(package)
    if not inputs:
        raise InputError("no input files given")
    names = list(input_names) if input_names is not None else [Path(p).name for p in inputs]
    if len(names) != len(inputs):
        raise ValueError("input_names must name every input")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".ade-engine-", dir=out_dir))
    try:
        config_dir = work / "config"
        config_dir.mkdir()
        with load_code(package, config_dir) as code:
            run = _Run(package, code, work, _Progress(on_progress))
            sources = [
                describe_input(Path(path), name, index)
                for index, (path, name) in enumerate(zip(inputs, names, strict=True))
            ]
            artifact = run.execute(sources, started_at, clock)
        normalized = out_dir / NORMALIZED_FILE
        artifact_path = out_dir / ARTIFACT_FILE
        # Both files are complete in the work folder before either is published; renames
        # within one folder tree are atomic, so readers see both or neither.
        (work / ARTIFACT_FILE).write_text(dump_artifact(artifact), encoding="utf-8")
        os.replace(work / NORMALIZED_FILE, normalized)
        try:
            os.replace(work / ARTIFACT_FILE, artifact_path)
        except OSError:
            normalized.unlink(missing_ok=True)
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = run.summary()
    return EngineResult(
        tables_found=summary["tables_found"],
        tables_written=summary["tables_written"],
        rows_written=summary["rows_written"],
        mapped_fields=tuple(summary["mapped_fields"]),
        required_missing=tuple(summary["required_missing"]),
        issue_count=summary["issue_count"],
        errors=artifact.validation.errors,
        warnings=artifact.validation.warnings,
        normalized_path=str(normalized),
        artifact_path=str(artifact_path),
        duration_seconds=artifact.duration_seconds,
    )


class _Run:
    def __init__(
        self, package: ConfigPackage, code: LoadedConfig, work: Path, progress: _Progress
    ) -> None:
        self.package = package
        self.code = code
        self.work = work
        self.progress = progress
        self.tables: list[_Table] = []
        self.sheet_records: dict[int, list[SheetRecord]] = {}
        self.hook_records: list[HookRecord] = []
        self.field_labels = {f.name: [f.label, *f.synonyms] for f in package.fields}
        self._table_ids = 0
        self.output_columns: list[OutputColumn] = []
        self.transforms: list[TransformRecord] = []
        self.validation: ValidationRecord | None = None
        self.rows_written = 0

    # -- orchestration ----------------------------------------------------------------------

    def execute(self, sources: list[InputFile], started_at: dt.datetime, clock: float) -> Artifact:
        self.sources = sources
        self.hook("on_job_start", {})
        raw = Spool(self.work, "rows")
        shaped = Spool(self.work, "shaped")
        try:
            with self.progress.running("detect") as stats:
                for source in sources:
                    self.detect_input(source, raw, stats)
                raw.finish_writing()
                stats["tables"] = len(self.tables)
            if not self.tables:
                raise InputError(self._no_table_message())
            with self.progress.running("map") as stats:
                self.map_tables(stats)
            self.hook("after_mapping", {"tables": self.table_summaries()})
            with self.progress.running("transform") as stats:
                self.transform(raw, shaped, stats)
            raw.close()
            self.hook(
                "after_transform",
                {
                    "tables": self.table_summaries(),
                    "transforms": [attrs.asdict(t) for t in self.transforms],
                },
            )
            with self.progress.running("validate") as stats:
                self.validate(shaped, stats)
            assert self.validation is not None
            self.hook(
                "after_validate",
                {"tables": self.table_summaries(), "validation": self.validation_summary()},
            )
            with self.progress.running("write") as stats:
                self.write(shaped, stats)
        finally:
            raw.close()
            shaped.close()
        self.hook("on_job_end", {"tables": self.table_summaries(), "summary": self.summary()})
        finished_at = dt.datetime.now(dt.UTC)
        return self.artifact(started_at, finished_at, time.perf_counter() - clock)

    def _no_table_message(self) -> str:
        sheets = [s for records in self.sheet_records.values() for s in records]
        described = ", ".join(
            f"{self.sources[i].name}!{s.name}: {s.outcome.replace('_', ' ')}"
            for i, records in self.sheet_records.items()
            for s in records
        )
        return (
            f"no table found in {len(self.sources)} input(s) / {len(sheets)} sheet(s): "
            f"no header row followed by data rows ({described})"
        )

    # -- hooks --------------------------------------------------------------------------------

    def hook(self, name: str, extra: dict[str, Any]) -> None:
        functions = self.code.hooks.get(name, [])
        if not functions:
            return
        available = {
            "inputs": [
                {"name": s.name, "format": s.format, "size_bytes": s.size_bytes, "sha256": s.sha256}
                for s in self.sources
            ],
            "manifest": self.package.manifest_summary(),
            **extra,
        }
        for fn in functions:
            result = fn.call(name, available)
            self.hook_records.append(HookRecord(name, fn.rule, hook_annotations(fn, name, result)))

    def table_summaries(self) -> list[dict[str, Any]]:
        summaries = []
        for t in self.tables:
            summaries.append(
                {
                    "id": t.draft.id,
                    "input": t.source.name,
                    "sheet": t.sheet,
                    "range": _table_range(t.draft),
                    "header_row": t.draft.header_row,
                    "data_rows": t.draft.data_rows,
                    "status": t.status,
                    "mapping": {
                        c.field: {"column": c.letter, "header": c.header, "score": c.score}
                        for c in t.columns
                        if c.field is not None
                    },
                    "unmapped": [
                        {"column": c.letter, "header": c.header}
                        for c in t.columns
                        if c.field is None
                    ],
                    "required_missing": list(t.required_missing),
                }
            )
        return summaries

    def validation_summary(self) -> dict[str, Any]:
        assert self.validation is not None
        v = self.validation
        return {
            "issue_count": v.issue_count,
            "errors": v.errors,
            "warnings": v.warnings,
            "fields": [attrs.asdict(f) for f in v.fields],
        }

    def summary(self) -> dict[str, Any]:
        """The run in numbers: the ``on_job_end`` hook's ``summary`` and the EngineResult."""
        written = [t for t in self.tables if t.status == "written"]
        mapped = {f for t in written for f in t.field_sources}
        assert self.validation is not None
        return {
            "tables_found": len(self.tables),
            "tables_written": len(written),
            "rows_written": self.rows_written,
            "mapped_fields": [f for f in self.package.field_names if f in mapped],
            "required_missing": self.required_missing(),
            "issue_count": self.validation.issue_count,
        }

    def required_missing(self) -> list[str]:
        written = [t for t in self.tables if t.status == "written"]
        return [
            f.name
            for f in self.package.fields
            if f.required and any(f.name in t.required_missing for t in written)
        ]

    # -- pass 1: detect -------------------------------------------------------------------------

    def detect_input(self, source: InputFile, raw: Spool, stats: dict[str, int]) -> None:
        sheets, close = open_sheets(source)
        records: list[SheetRecord] = []
        try:
            for sheet in sheets:
                rows = sheet.rows()
                try:
                    records.append(
                        self.detect_sheet(source, sheet.name, sheet.index, rows, raw, stats)
                    )
                finally:
                    # Config code may raise mid-sheet: close the parser (and its zip member)
                    # now rather than whenever the generator is collected.
                    rows.close()
        finally:
            close()
        self.sheet_records[source.index] = records

    def _new_table_id(self) -> str:
        self._table_ids += 1
        return f"t{self._table_ids}"

    def detect_sheet(
        self,
        source: InputFile,
        sheet_name: str,
        sheet_index: int,
        rows: Generator[tuple[int, list[Any]], None, None],
        raw: Spool,
        stats: dict[str, int],
    ) -> SheetRecord:
        found: list[_Table] = []
        by_id: dict[str, _Table] = {}

        def on_chunk(draft: TableDraft, numbers: list[int], rows: list[list[Any]]) -> None:
            table = by_id.get(draft.id)
            if table is None:
                table = by_id[draft.id] = _Table(draft, source, sheet_name, [])
            table.chunks.append(raw.write((numbers, _columns(rows)), len(rows)))

        def on_table_end(draft: TableDraft) -> None:
            if len(self.tables) + len(found) >= MAX_TABLES:
                where = f"sheet {sheet_name!r}, row {draft.last_data_row}"
                # The limit is on the run, not per input: say so when earlier inputs count too.
                if self.tables and self.tables[0].source.index != source.index:
                    what = (
                        f"the inputs have more than {MAX_TABLES} tables together (the limit "
                        f"was reached in input {source.name!r}, {where})"
                    )
                else:
                    what = f"input {source.name!r} has more than {MAX_TABLES} tables ({where})"
                raise InputError(f"{what}; ADE stops there")
            found.append(by_id[draft.id])

        sample_rows = self.package.engine.sample_rows
        scan = SheetScan(self._new_table_id, sample_rows, CHUNK_ROWS, on_chunk, on_table_end)
        classify = row_classifier(
            self.package, self.code, self.field_labels, source.name, sheet_name
        )
        previous: str | None = None
        total = stats.get("rows", 0)
        for row_number, values in rows:
            if scan.gap(row_number):
                previous = "blank"
            row_type = classify(row_number, values, previous)
            scan.feed(row_number, row_type, values)
            previous = row_type
            total += 1
            if total % PROGRESS_EVERY_ROWS == 0:
                self.progress.emit("pass_progress", {"pass": "detect", "rows": total})
        scan.finish()
        stats["rows"] = total
        stats["sheets"] = stats.get("sheets", 0) + 1
        found.sort(key=lambda t: int(t.draft.id[1:]))
        self.tables.extend(found)
        if found:
            outcome = "tables_found"
        elif scan.rows_read == 0:
            outcome = "empty"
        elif scan.row_counts.get("header", 0) == 0:
            outcome = "no_header_row"
        else:
            outcome = "no_table"
        return SheetRecord(
            name=sheet_name,
            index=sheet_index,
            outcome=outcome,
            rows_read=scan.rows_read,
            row_counts=dict(sorted(scan.row_counts.items())),
            tables=[t.draft.id for t in found],
            headers_without_data=scan.headers_without_data,
            orphan_data_rows=scan.orphan_data_rows,
        )

    # -- pass 2: map ----------------------------------------------------------------------------

    def map_tables(self, stats: dict[str, int]) -> None:
        fields = self.package.fields
        threshold = self.package.engine.mapping_threshold
        unmapped_headers: set[str] = set()
        unmapped_order: list[str] = []
        prefix = self.package.writer.unmapped_prefix
        labels = {f.label for f in fields}
        for table in self.tables:
            draft = table.draft
            letters = [column_letter(draft.first_column + i) for i in range(draft.width)]
            scores, rules = self.score_columns(table, letters)
            decisions = decide_mapping(draft.headers, scores, fields, threshold, letters)
            table.field_sources = {d.field: d.index for d in decisions if d.field is not None}
            table.required_missing = [
                f.name for f in fields if f.required and f.name not in table.field_sources
            ]
            if not table.field_sources:
                table.status = "skipped"
                table.skip_reason = "no column scored at or above the mapping threshold"
            seen_here: set[str] = set()
            for d in decisions:
                header = draft.headers[d.index]
                output_header = None
                if (
                    d.field is None
                    and table.status == "written"
                    and self.package.writer.append_unmapped
                ):
                    output_header = _unique(
                        f"{prefix}{header if header is not None else letters[d.index]}",
                        labels | seen_here,
                    )
                    seen_here.add(output_header)
                    if output_header not in unmapped_headers:
                        unmapped_headers.add(output_header)
                        unmapped_order.append(output_header)
                table.columns.append(
                    ColumnRecord(
                        index=d.index,
                        letter=letters[d.index],
                        header=header,
                        status="mapped" if d.field is not None else "unmapped",
                        field=d.field,
                        score=None if d.score is None else round(d.score, 6),
                        rules=rules[d.index],
                        unmapped_reason=d.unmapped_reason,
                        output_header=(
                            self.package.field(d.field).label
                            if d.field is not None
                            else output_header
                        ),
                    )
                )
        # The output plan: every field in manifest order, then unmapped columns in the order
        # they were first seen.
        self.output_columns = [
            OutputColumn(i, column_letter(i + 1), f.label, "field", f.name)
            for i, f in enumerate(fields)
        ]
        for header in unmapped_order:
            i = len(self.output_columns)
            self.output_columns.append(
                OutputColumn(i, column_letter(i + 1), header, "unmapped", None)
            )
        index_of = {c.header: c.index for c in self.output_columns if c.kind == "unmapped"}
        next_row = 2  # row 1 holds the headers
        for table in self.tables:
            table.output_sources = [None] * len(self.output_columns)
            if table.status != "written":
                continue
            for i, f in enumerate(fields):
                table.output_sources[i] = table.field_sources.get(f.name)
            for column in table.columns:
                if column.field is None and column.output_header is not None:
                    table.output_sources[index_of[column.output_header]] = column.index
            table.output_first_row = next_row
            next_row += table.draft.data_rows
        if next_row - 1 > EXCEL_MAX_ROWS or len(self.output_columns) > EXCEL_MAX_COLUMNS:
            # Checked before writing: Excel cannot open a sheet past these limits.
            raise InputError(
                f"the normalized output would be {next_row - 1} rows by "
                f"{len(self.output_columns)} columns; an Excel sheet holds at most "
                f"{EXCEL_MAX_ROWS} rows and {EXCEL_MAX_COLUMNS} columns"
            )
        stats["tables"] = len(self.tables)
        stats["tables_written"] = sum(t.status == "written" for t in self.tables)
        stats["mapped_columns"] = sum(len(t.field_sources) for t in self.tables)
        stats["unmapped_columns"] = sum(
            1 for t in self.tables for c in t.columns if c.field is None
        )

    def score_columns(
        self, table: _Table, letters: list[str]
    ) -> tuple[list[dict[str, float]], list[list[RuleScore]]]:
        draft = table.draft
        field_names = frozenset(self.package.field_names)
        scores: list[dict[str, float]] = []
        rules: list[list[RuleScore]] = []
        for index in range(draft.width):
            column_scores: dict[str, float] = {}
            contributions: list[RuleScore] = []
            sample = [row[index] for row in draft.sample]
            for spec in self.package.fields:
                available = {
                    "header": draft.headers[index],
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
                for fn in self.code.column_detectors[spec.name]:
                    result = fn.call("map", available)
                    for field, delta in column_votes(fn, spec, result, field_names):
                        if delta:
                            column_scores[field] = column_scores.get(field, 0.0) + delta
                            contributions.append(RuleScore(fn.rule, field, round(delta, 6)))
            scores.append(column_scores)
            rules.append(contributions)
        return scores, rules

    # -- pass 3: transform ----------------------------------------------------------------------

    def transform(self, raw: Spool, shaped: Spool, stats: dict[str, int]) -> None:
        fields = self.package.fields
        counters = {f.name: [0, 0, 0] for f in fields if f.name in self.code.transforms}
        samples: dict[str, list[IssueRecord]] = {name: [] for name in counters}
        width = len(self.output_columns)
        rows = 0
        for table in self.tables:
            if table.status != "written":
                continue
            out_row = table.output_first_row
            assert out_row is not None
            for ref in table.chunks:
                numbers, columns = raw.read(ref)
                n = len(numbers)
                blank: list[Any] = [None] * n
                out: list[list[Any]] = [blank] * width
                for i, source_index in enumerate(table.output_sources):
                    if source_index is not None:
                        out[i] = columns[source_index]
                for i, spec in enumerate(fields):
                    source_index = table.output_sources[i]
                    fn = self.code.transforms.get(spec.name)
                    if source_index is None or fn is None:
                        continue
                    before = columns[source_index]
                    after, warnings = self.call_transform(fn, spec, table, before)
                    counter = counters[spec.name]
                    counter[0] += n
                    counter[1] += sum(map(operator.ne, before, after))
                    for index, code, message in warnings:
                        counter[2] += 1
                        if len(samples[spec.name]) < 20:
                            samples[spec.name].append(
                                self._issue(
                                    table,
                                    numbers,
                                    index,
                                    spec.name,
                                    source_index,
                                    code,
                                    "warning",
                                    redact(message, before[index], after[index]),
                                    out_row,
                                )
                            )
                    out[i] = after
                table.out_chunks.append((shaped.write((numbers, out), n), out_row))
                out_row += n
                if rows // PROGRESS_EVERY_ROWS != (rows + n) // PROGRESS_EVERY_ROWS:
                    self.progress.emit("pass_progress", {"pass": "transform", "rows": rows + n})
                rows += n
        shaped.finish_writing()
        self.transforms = [
            TransformRecord(
                field=name,
                rule=self.code.transforms[name].rule,
                values=c[0],
                changed=c[1],
                warnings=c[2],
                warning_samples=samples[name],
            )
            for name, c in counters.items()
        ]
        stats["rows"] = rows
        stats["changed"] = sum(t.changed for t in self.transforms)
        stats["warnings"] = sum(t.warnings for t in self.transforms)

    def call_transform(
        self, fn: ConfigFunction, spec: FieldSpec, table: _Table, values: list[Any]
    ) -> tuple[list[Any], list[tuple[int, str, str]]]:
        available = {
            "values": list(values),
            "field": spec.name,
            "label": spec.label,
            "field_type": spec.type,
            "sheet_name": table.sheet,
            "input_name": table.source.name,
            "table_id": table.draft.id,
        }
        return transform_result(fn, fn.call("transform", available), len(values))

    def _issue(
        self,
        table: _Table,
        numbers: list[int],
        index: int,
        field: str,
        source_index: int,
        code: str,
        severity: str,
        message: str,
        out_row: int,
    ) -> IssueRecord:
        row = numbers[index]
        return IssueRecord(
            table=table.draft.id,
            input=table.source.name,
            sheet=table.sheet,
            row=row,
            cell=a1(table.draft.first_column + source_index, row),
            field=field,
            code=code,
            severity=severity,
            message=message,
            output_row=out_row + index,
        )

    # -- pass 4: validate -----------------------------------------------------------------------

    def validate(self, shaped: Spool, stats: dict[str, int]) -> None:
        fields = self.package.fields
        max_issues = self.package.engine.max_issues
        counts = {f.name: [0, 0, 0] for f in fields}  # checked, errors, warnings
        issues: list[IssueRecord] = []
        total = 0
        for table in self.tables:
            if table.status != "written":
                continue
            for ref, out_row in table.out_chunks:
                numbers, out = shaped.read(ref)
                for i, spec in enumerate(fields):
                    source_index = table.output_sources[i]
                    if source_index is None:
                        continue
                    values = out[i]
                    found: list[tuple[int, str, str, str]] = []
                    if spec.required:
                        found.extend(
                            (k, "required", f"{spec.label} is required", "error")
                            for k, v in enumerate(values)
                            if v is None or (type(v) is str and not v.strip())
                        )
                    fn = self.code.validators.get(spec.name)
                    if fn is not None:
                        found.extend(self.call_validate(fn, spec, table, numbers, values))
                    counter = counts[spec.name]
                    counter[0] += len(values)
                    for index, code, message, severity in found:
                        counter[1 if severity == "error" else 2] += 1
                        total += 1
                        if len(issues) < max_issues:
                            issues.append(
                                self._issue(
                                    table,
                                    numbers,
                                    index,
                                    spec.name,
                                    source_index,
                                    code,
                                    severity,
                                    redact(message, values[index]),
                                    out_row,
                                )
                            )
        errors = sum(c[1] for c in counts.values())
        warnings = sum(c[2] for c in counts.values())
        self.validation = ValidationRecord(
            issue_count=total,
            errors=errors,
            warnings=warnings,
            fields=[
                FieldValidation(
                    field=name,
                    rule=self.code.validators[name].rule if name in self.code.validators else None,
                    checked=c[0],
                    errors=c[1],
                    warnings=c[2],
                )
                for name, c in counts.items()
            ],
            issues=issues,
            issues_truncated=total > len(issues),
        )
        stats["issues"] = total
        stats["errors"] = errors
        stats["warnings"] = warnings

    def call_validate(
        self,
        fn: ConfigFunction,
        spec: FieldSpec,
        table: _Table,
        numbers: list[int],
        values: list[Any],
    ) -> list[tuple[int, str, str, str]]:
        available = {
            "values": list(values),
            "row_numbers": list(numbers),
            "field": spec.name,
            "label": spec.label,
            "field_type": spec.type,
            "required": spec.required,
            "sheet_name": table.sheet,
            "input_name": table.source.name,
            "table_id": table.draft.id,
        }
        return validate_result(fn, fn.call("validate", available), len(values))

    # -- pass 5: write --------------------------------------------------------------------------

    def write(self, shaped: Spool, stats: dict[str, int]) -> None:
        types = [
            self.package.field(c.field).type if c.field is not None else None
            for c in self.output_columns
        ]
        total = sum(t.draft.data_rows for t in self.tables if t.status == "written")
        writer = StreamingXlsxWriter(
            self.work / NORMALIZED_FILE,
            self.package.writer.sheet_name,
            [c.header for c in self.output_columns],
            types,
            total,
        )
        finished = False
        try:
            for table in self.tables:
                if table.status != "written":
                    continue
                for ref, _ in table.out_chunks:
                    _, out = shaped.read(ref)
                    writer.write_rows(zip(*out, strict=True))
                    before = self.rows_written
                    self.rows_written += ref.rows
                    if before // PROGRESS_EVERY_ROWS != self.rows_written // PROGRESS_EVERY_ROWS:
                        self.progress.emit(
                            "pass_progress", {"pass": "write", "rows": self.rows_written}
                        )
            finished = True
        finally:
            if finished:
                writer.close()
            else:
                writer.abort()  # the work folder (and this file) is discarded
        stats["rows"] = self.rows_written
        stats["columns"] = len(self.output_columns)
        stats["truncated_cells"] = writer.truncated_cells

    # -- artifact -------------------------------------------------------------------------------

    def artifact(self, started: dt.datetime, finished: dt.datetime, seconds: float) -> Artifact:
        assert self.validation is not None
        tables = []
        unmapped = []
        for t in self.tables:
            d = t.draft
            out_first = t.output_first_row
            tables.append(
                TableRecord(
                    id=d.id,
                    input=t.source.name,
                    sheet=t.sheet,
                    range=_table_range(d),
                    header_row=d.header_row,
                    first_data_row=d.first_data_row,
                    last_data_row=d.last_data_row,
                    data_rows=d.data_rows,
                    ended_by=d.ended_by,
                    status=t.status,
                    skip_reason=t.skip_reason,
                    columns=t.columns,
                    mapped_fields=[
                        f.name for f in self.package.fields if f.name in t.field_sources
                    ],
                    required_missing=t.required_missing,
                    cells_outside_header=d.cells_outside_header,
                    output_first_row=out_first,
                    output_last_row=None if out_first is None else out_first + d.data_rows - 1,
                )
            )
            for c in t.columns:
                if c.field is None:
                    unmapped.append(
                        UnmappedColumn(
                            table=d.id,
                            column=c.letter,
                            header=c.header,
                            reason=c.unmapped_reason or "",
                            output_header=c.output_header,
                        )
                    )
        return Artifact(
            schema=ARTIFACT_SCHEMA,
            engine_version=ade.__version__,
            started_at=started.isoformat(),
            finished_at=finished.isoformat(),
            duration_seconds=round(seconds, 4),
            config=ConfigRecord(
                schema=self.package.schema,
                title=self.package.title,
                version=self.package.version,
                content_hash=self.package.content_hash,
            ),
            inputs=[
                InputRecord(
                    index=s.index,
                    name=s.name,
                    format=s.format,
                    size_bytes=s.size_bytes,
                    sha256=s.sha256,
                    sheets=self.sheet_records.get(s.index, []),
                )
                for s in self.sources
            ],
            tables=tables,
            unmapped_columns=unmapped,
            required_missing=self.required_missing(),
            transforms=self.transforms,
            validation=self.validation,
            hooks=self.hook_records,
            output=OutputRecord(
                path=NORMALIZED_FILE,
                sheet=self.package.writer.sheet_name,
                columns=self.output_columns,
                rows_written=self.rows_written,
            ),
            passes=self.progress.passes,
        )


# -- helpers ------------------------------------------------------------------------------------


def _columns(rows: list[list[Any]]) -> list[list[Any]]:
    """Row-major chunk -> column-major: transforms and validators take a column at a time,
    and a column of like values pickles and unpickles faster than rows of mixed ones."""
    return [list(column) for column in zip(*rows, strict=True)]


def _table_range(d: TableDraft) -> str:
    return a1_range(d.first_column, d.header_row, d.last_column, d.last_data_row or d.header_row)


def _unique(header: str, taken: set[str]) -> str:
    if header not in taken:
        return header
    n = 2
    while f"{header} ({n})" in taken:
        n += 1
    return f"{header} ({n})"
