"""Plumbing shared by the client commands (``ade config``, ``ade submit``, ``ade jobs``):
the ``--url``/``--workspace`` options and one place that turns failures into exit codes."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import trio

from ade.client._client import AdeClient, ApiError, EventStreamClosed
from ade.settings import SettingsError, load_settings

__all__ = ["EXIT_FAILED", "EXIT_UNAVAILABLE", "add_connection_args", "print_json", "run_client"]

# 1: the request was refused or the job did not succeed; 2: ADE could not be reached at all.
EXIT_FAILED = 1
EXIT_UNAVAILABLE = 2


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="ADE server URL (default: ADE_URL or http://127.0.0.1:8000)")
    parser.add_argument(
        "--workspace", default="default", help="workspace id (default: %(default)s)"
    )


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


def run_client(
    args: argparse.Namespace, action: Callable[[AdeClient], Awaitable[int | None]]
) -> int:
    """Run ``action`` with a client for ``args.url`` (or ADE_URL); map failures to exit codes."""
    try:
        url = args.url or load_settings().url
    except SettingsError as exc:
        print(f"ade: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE

    async def main() -> int:
        async with AdeClient(url, args.workspace) as client:
            return int(await action(client) or 0)

    try:
        return trio.run(main)
    except ApiError as exc:
        print(f"ade: {exc.status} {exc.code}: {exc.message}", file=sys.stderr)
        if exc.details:
            print(json.dumps(exc.details, indent=2), file=sys.stderr)
        return EXIT_FAILED
    except EventStreamClosed as exc:
        print(f"ade: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (httpx.TransportError, OSError) as exc:
        print(f"ade: cannot reach ADE at {url}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
