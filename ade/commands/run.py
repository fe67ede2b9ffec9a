"""``ade run INPUT... --config PATH [--out DIR]``: run the engine in this process."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ade.errors import AdeError, ConfigCodeError

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
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="on a config code error, print its traceback (it may quote cell values)",
    )
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    from ade.engine import run_engine

    try:
        result = run_engine(list(args.inputs), args.config, args.out)
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
    print(format_summary(Path(result.artifact_path)))
    return 0


def os_error_message(exc: OSError) -> str:
    """``Permission denied: out/x`` (the file name only when the error names one)."""
    reason = exc.strerror or type(exc).__name__
    return f"{reason}: {exc.filename}" if exc.filename is not None else reason


def format_summary(artifact_path: Path) -> str:
    """A short human summary of a run, built from its artifact.json (no cell values)."""
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
    v = artifact.validation
    lines.append(f"issues: {v.issue_count} ({v.errors} error(s), {v.warnings} warning(s))")
    out = artifact_path.parent
    lines.append(f"wrote {out / artifact.output.path} and {artifact_path}")
    return "\n".join(lines)
