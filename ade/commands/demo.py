"""``ade demo [--out DIR]``: generate a messy sample workbook and normalize it with the bundled
member-roster config (what ``./scripts/run`` shows until ``ade serve`` is the main job)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ade.errors import AdeError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="normalize a generated messy roster workbook with the bundled sample config",
        description="Write a messy sample workbook to --out, run the engine on it with the "
        "bundled member-roster config, and print the summary.",
    )
    parser.add_argument("--out", type=Path, default=Path("out"), help="output folder (./out)")
    parser.set_defaults(handler=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    from ade.commands.run import format_summary, os_error_message
    from ade.engine import run_engine
    from ade.samples import ROSTER_CONFIG
    from ade.samples.generate import write_messy_workbook

    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        sample = write_messy_workbook(out / "sample-roster.xlsx")
        print(f"sample input: {sample}")
        print(f"config: {ROSTER_CONFIG}")
        result = run_engine([sample], ROSTER_CONFIG, out)
    except AdeError as exc:
        print(f"ade demo: error: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the output folder is not writable
        print(f"ade demo: error: {os_error_message(exc)}", file=sys.stderr)
        return 1
    print(format_summary(Path(result.artifact_path)))
    return 0
