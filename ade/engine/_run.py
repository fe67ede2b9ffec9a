"""The engine's entry point: five passes over a shared table plan. Theory of operation:

1. **locate** (``_locate``) reads every sheet of every input exactly once. Each row is classified
   by the row detectors' summed votes and placed by a :class:`~ade.engine._locator.TableLocator`
   (a plain object: tables, blank rows inside them, stacked headers, side-by-side tables,
   unrecognised tables, and the per-sheet row accounting); the data rows a table claims go to
   a disk spool in chunks, and the first ``sample_rows`` stay in memory.
2. **map** (``_map``) scores every table column against every field from its header and
   sample only, and fixes the output column plan before a single output row is written.
3. **transform** (``_transform``) lets each field ``profile`` its whole column, then streams the
   spool chunk by chunk through each field's ``transform`` and spools the output-shaped chunk.
4. **validate** (``_validate``) streams those chunks through each field's ``validate`` and the
   engine's own required checks.
5. **write** (``_write``) streams them into normalized.xlsx, straight into the zip.

Every issue, whichever pass finds it, goes to one :class:`~ade.engine._issues.IssueLog`;
``_assemble`` turns the plan into artifact.json and the run's summary. Hooks run before the
passes and after mapping, transform and validate.

So the input is parsed once and memory holds one chunk (plus per-table samples) whatever the
row count; the spool is the price, and benchmarks/engine.py measures it against the floor.
Outputs appear in ``out_dir`` only when the run completes (written under a temp folder, then
renamed); a failed run leaves nothing half-written.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from ade.configs.package import ConfigPackage, load_package
from ade.engine._artifact import HookRecord, dump_artifact
from ade.engine._assemble import assemble, summary, table_summaries
from ade.engine._code import LoadedConfig, load_code
from ade.engine._issues import IssueLog
from ade.engine._locate import locate
from ade.engine._map import map_tables
from ade.engine._plan import EngineContext, Progress, ProgressCallback, TablePlan
from ade.engine._readers import InputFile, describe_input
from ade.engine._returns import hook_annotations
from ade.engine._spool import Spool
from ade.engine._transform import transform
from ade.engine._validate import validate
from ade.engine._write import write
from ade.errors import InputError
from ade.layout import ARTIFACT_FILE, NORMALIZED_FILE

__all__ = ["ARTIFACT_FILE", "NORMALIZED_FILE", "EngineResult", "ProgressCallback", "run_engine"]

# Allocations between young collections while the engine runs (the default is 700).
YOUNG_COLLECTION_THRESHOLD = 50_000


@attrs.frozen
class EngineResult:
    """Summary numbers of a completed run (never cell values): artifact.json's ``summary`` plus
    the mapped fields. ``outcome`` says whether the output is clean, has warnings or has errors
    (the rule is in docs/artifact.md); the job record carries these numbers."""

    outcome: str
    errors: int
    warnings: int
    issue_count: int
    rows_read: int
    rows_written: int
    rows_outside_tables: int
    tables_found: int
    tables_written: int
    unrecognised_tables: int
    mapped_fields: tuple[str, ...]
    required_missing: tuple[str, ...]
    # The manifest's engine.fail_on_errors applies: error-level issues fail the job.
    fails_job: bool
    normalized_path: str
    artifact_path: str
    duration_seconds: float


def run_engine(
    inputs: Sequence[Path],
    package: Path | ConfigPackage,
    out_dir: Path,
    *,
    input_names: Sequence[str] | None = None,
    on_progress: ProgressCallback | None = None,
    memory_limit_mb: int | None = None,
) -> EngineResult:
    """Run the five passes over ``inputs`` and write ``out_dir/normalized.xlsx`` and
    ``out_dir/artifact.json``.

    ``memory_limit_mb`` is the memory the run may use (the worker's ``ADE_WORKER_MEM_MB``):
    readers that load a whole sheet (.xls, .xlsb, .ods) refuse sheets that would not fit.

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
        with load_code(package, config_dir) as code, _rare_young_collections():
            ctx = EngineContext(
                package,
                code,
                Progress(on_progress),
                IssueLog(package.engine.max_issues),
                memory_limit_mb,
            )
            sources = [
                describe_input(Path(path), name, index)
                for index, (path, name) in enumerate(zip(inputs, names, strict=True))
            ]
            run = _Run(ctx, sources, work)
            artifact_text = run.execute(started_at, clock)
        normalized = out_dir / NORMALIZED_FILE
        artifact_path = out_dir / ARTIFACT_FILE
        # Both files are complete in the work folder before either is published; renames
        # within one folder tree are atomic, so readers see both or neither.
        (work / ARTIFACT_FILE).write_text(artifact_text, encoding="utf-8")
        os.replace(work / NORMALIZED_FILE, normalized)
        try:
            os.replace(work / ARTIFACT_FILE, artifact_path)
        except OSError:
            normalized.unlink(missing_ok=True)
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    plan = run.plan
    final = summary(ctx, plan)
    mapped = {f for t in plan.written for f in t.field_sources}
    return EngineResult(
        outcome=final.outcome,
        errors=final.errors,
        warnings=final.warnings,
        issue_count=final.errors + final.warnings,
        rows_read=final.rows_read,
        rows_written=final.rows_written,
        rows_outside_tables=final.rows_outside_tables,
        tables_found=final.tables_found,
        tables_written=final.tables_written,
        unrecognised_tables=final.unrecognised_tables,
        mapped_fields=tuple(f for f in package.field_names if f in mapped),
        required_missing=tuple(final.required_missing),
        fails_job=package.engine.fail_on_errors and final.outcome == "errors",
        normalized_path=str(normalized),
        artifact_path=str(artifact_path),
        duration_seconds=round(time.perf_counter() - clock, 4),
    )


@contextmanager
def _rare_young_collections() -> Iterator[None]:
    """The passes allocate a list or two per row and build no reference cycles, so the
    collector's default (a young collection every 700 allocations, i.e. every few hundred rows)
    only costs time: about 1% of a million-row run. Collections still happen, just rarer."""
    threshold = gc.get_threshold()
    if threshold[0] == 0:  # the collector is off: leave it so
        yield
        return
    gc.set_threshold(max(threshold[0], YOUNG_COLLECTION_THRESHOLD), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)


class _Run:
    """One run's passes and hooks in order."""

    def __init__(self, ctx: EngineContext, sources: list[InputFile], work: Path) -> None:
        self.ctx = ctx
        self.code: LoadedConfig = ctx.code
        self.sources = sources
        self.work = work
        self.plan = TablePlan()
        self.hook_records: list[HookRecord] = []

    def execute(self, started_at: dt.datetime, clock: float) -> str:
        ctx, plan = self.ctx, self.plan
        self.hook("on_job_start", {})
        raw = Spool(self.work, "rows")
        shaped = Spool(self.work, "shaped")
        try:
            dialects = locate(ctx, plan, self.sources, raw)
            if not plan.tables:
                raise InputError(self._no_table_message())
            map_tables(ctx, plan)
            self.hook("after_mapping", {"tables": table_summaries(plan)})
            transform(ctx, plan, raw, shaped)
            raw.close()
            self.hook(
                "after_transform",
                {
                    "tables": table_summaries(plan),
                    "transforms": [attrs.asdict(t) for t in plan.transforms],
                },
            )
            validate(ctx, plan, shaped)
            assert plan.validation is not None
            v = plan.validation
            self.hook(
                "after_validate",
                {
                    "tables": table_summaries(plan),
                    "validation": {
                        "issue_count": v.issue_count,
                        "errors": v.errors,
                        "warnings": v.warnings,
                        "fields": [attrs.asdict(f) for f in v.fields],
                    },
                },
            )
            write(ctx, plan, shaped, self.work / NORMALIZED_FILE)
        finally:
            raw.close()
            shaped.close()
        self.hook(
            "on_job_end",
            {"tables": table_summaries(plan), "summary": self._hook_summary()},
        )
        artifact = assemble(
            ctx,
            plan,
            self.sources,
            dialects,
            NORMALIZED_FILE,
            self.hook_records,
            started_at,
            dt.datetime.now(dt.UTC),
            time.perf_counter() - clock,
        )
        return dump_artifact(artifact)

    def _hook_summary(self) -> dict[str, Any]:
        s = summary(self.ctx, self.plan)
        mapped = {f for t in self.plan.written for f in t.field_sources}
        return {
            **attrs.asdict(s),
            "mapped_fields": [f for f in self.ctx.package.field_names if f in mapped],
            "issue_count": s.errors + s.warnings,
        }

    def _no_table_message(self) -> str:
        records = [(i, s) for i, sheets in self.plan.sheets.items() for s in sheets]
        described = ", ".join(
            f"{self.sources[i].name}!{s.name}: {s.outcome.replace('_', ' ')}" for i, s in records
        )
        outside = self.plan.rows_outside_tables
        rows = f"; {outside} data row(s) outside any table" if outside else ""
        return (
            f"no table found in {len(self.sources)} input(s) / {len(records)} sheet(s): "
            f"no header row followed by data rows ({described}){rows}"
        )

    def hook(self, name: str, extra: dict[str, Any]) -> None:
        functions = self.code.hooks.get(name, [])
        if not functions:
            return
        available = {
            "inputs": [
                {"name": s.name, "format": s.format, "size_bytes": s.size_bytes, "sha256": s.sha256}
                for s in self.sources
            ],
            "manifest": self.ctx.package.manifest_summary(),
            **extra,
        }
        for fn in functions:
            result = fn.call(name, available)
            self.hook_records.append(HookRecord(name, fn.rule, hook_annotations(fn, name, result)))
