"""``ade run INPUT... --config PATH [--out DIR]``: run the engine in this process."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import attrs

from ade.errors import AdeError, ConfigCodeError
from ade.outcome import (
    add_fail_on_argument,
    exit_code_for,
    fail_on_errors_message,
    issues_line,
)

__all__ = ["format_summary", "os_error_message", "register", "run_command"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="normalize spreadsheets with a config package (in-process, no server)",
        description="Run the five engine passes over INPUT files (.xlsx, .xlsm, .xls, .xlsb, "
        ".ods, .csv) and write normalized.xlsx and artifact.json to --out.",
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    parser.add_argument(
        "--config", required=True, type=Path, help="config package: a folder or a .zip"
    )
    parser.add_argument("--out", type=Path, default=Path("out"), help="output folder (./out)")
    add_fail_on_argument(parser)
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="on a config code error, print its traceback (it may quote cell values)",
    )
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    from ade.engine import run_engine
    from ade.settings import load_settings

    try:
        # The memory a worker would have: readers that load a sheet whole (.xls, .xlsb, .ods)
        # refuse sheets that would not fit it, here as in a job.
        memory_mb = load_settings().worker_mem_mb
        result = run_engine(list(args.inputs), args.config, args.out, memory_limit_mb=memory_mb)
    except AdeError as exc:
        print(f"ade run: error: {exc.message}", file=sys.stderr)
        if isinstance(exc, ConfigCodeError) and args.verbose:
            sys.stderr.write(exc.traceback)
        elif isinstance(exc, ConfigCodeError):
            print("ade run: re-run with --verbose to see the traceback", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the output folder is not writable
        print(f"ade run: error: {os_error_message(exc)}", file=sys.stderr)
        return 1
    if result.fails_job:  # the manifest's engine.fail_on_errors: the run failed
        print(format_summary(Path(result.artifact_path)))
        print(f"ade run: error: {fail_on_errors_message(attrs.asdict(result))}", file=sys.stderr)
        return 1
    print(format_summary(Path(result.artifact_path), args.fail_on))
    return exit_code_for(result.outcome, args.fail_on)


def os_error_message(exc: OSError) -> str:
    """``Permission denied: out/x`` (the file name only when the error names one)."""
    reason = exc.strerror or type(exc).__name__
    return f"{reason}: {exc.filename}" if exc.filename is not None else reason


def format_summary(artifact_path: Path, fail_on: str | None = None) -> str:
    """A short human summary of a run, built from its artifact.json (no cell values).
    With ``fail_on``, the last line says how the run ended and the exit code that follows."""
    from ade.engine import parse_artifact

    artifact = parse_artifact(artifact_path.read_text(encoding="utf-8"))
    written = [t for t in artifact.tables if t.status == "written"]
    lines = [
        f"tables: {len(artifact.tables)} found, {len(written)} written, "
        f"{artifact.output.rows_written} row(s) in {artifact.output.path}"
    ]
    for table in artifact.tables:
        unmapped = sum(1 for c in table.columns if c.field is None)
        status = "" if table.status == "written" else f"  skipped: {table.skip_reason}"
        lines.append(
            f"  {table.id}  {table.input}!{table.sheet} {table.range}  {table.data_rows} row(s), "
            f"{len(table.mapped_fields)} mapped, {unmapped} unmapped column(s){status}"
        )
    for source in artifact.inputs:
        for sheet in source.sheets:
            if not sheet.tables:
                lines.append(f"  {source.name}!{sheet.name}: {sheet.outcome.replace('_', ' ')}")
    mapped = [c.field for c in artifact.output.columns if c.kind == "field"]
    mapped = [f for f in mapped if any(f in t.mapped_fields for t in written)]
    total_fields = sum(1 for c in artifact.output.columns if c.kind == "field")
    lines.append(f"mapped fields: {', '.join(mapped) or 'none'} ({len(mapped)} of {total_fields})")
    lines.append(f"required fields missing: {', '.join(artifact.required_missing) or 'none'}")
    s = artifact.summary
    lines.append(issues_line(attrs.asdict(s)) or "issues: none counted")
    lines.extend(_outside_rows(artifact))
    out = artifact_path.parent
    lines.append(f"wrote {out / artifact.output.path} and {artifact_path}")
    if fail_on is not None:
        code = exit_code_for(s.outcome, fail_on)
        how = {"clean": "finished", "warnings": "finished with warnings"}.get(
            s.outcome, "finished with errors"
        )
        lines.append(f"outcome: {how} (exit {code}, --fail-on {fail_on})")
    return "\n".join(lines)


def _outside_rows(artifact: Any, shown: int = 5) -> list[str]:
    """Where the rows outside any table are (sheet and row numbers, never values)."""
    rows = [i for i in artifact.issues if i.code == "row_outside_table"]
    if not rows:
        return []
    places = ", ".join(f"{i.input}!{i.sheet} row {i.row}" for i in rows[:shown])
    more = artifact.summary.rows_outside_tables - min(len(rows), shown)
    return [f"  rows outside any table: {places}" + (f" (+{more} more)" if more else "")]
