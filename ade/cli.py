"""The ``ade`` console script. Each sub-command lives in its own module under ``ade.commands``
and exposes ``register(subparsers)``; this file only wires them together."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

# Sub-command modules, in the order `ade --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "ade.commands.run",
    "ade.commands.demo",
    "ade.commands.loadtest",
    "ade.commands.serve",
    "ade.commands.worker",
    "ade.commands.config",
    "ade.commands.submit",
    "ade.commands.jobs",
    "ade.commands.documents",
    "ade.commands.doctor",
    "ade.commands.db",
    "ade.commands.nodes",
    "ade.commands.gc",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ade", description="ADE turns messy spreadsheets into clean, normalized workbooks."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ade")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Each sub-command sets `handler` via set_defaults and returns an exit code.
    try:
        return int(args.handler(args) or 0)
    except BrokenPipeError:
        # `ade ... | head`: the reader has what it wanted; no traceback, no error status.
        from ade.client.commands import quiet_broken_pipe

        quiet_broken_pipe()
        return 0


if __name__ == "__main__":
    sys.exit(main())
