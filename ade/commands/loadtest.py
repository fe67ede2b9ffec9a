"""``ade loadtest``: the load-testing harness (implementation in :mod:`ade.loadtest`)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    from ade.loadtest import add_arguments, run_from_args
    from ade.loadtest._cli import HelpFormatter

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "loadtest",
        help="drive a real `ade serve` with concurrent clients and check its invariants",
        description="Start a private `ade serve` on 127.0.0.1 (or target --url), run N concurrent "
        "clients for T seconds or K jobs, and report requests, latencies, queue depth and "
        "invariants (PASS/FAIL). Exit status 1 when an invariant fails.",
        formatter_class=HelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(handler=run_from_args)
