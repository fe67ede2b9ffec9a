"""Plumbing shared by the client commands (``ade config``, ``ade submit``, ``ade jobs``):
the ``--url``/``--workspace`` options and one place that turns failures into exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import trio

from ade.auth.bootstrap import client_api_key
from ade.client._client import AdeClient, ApiError, EventStreamClosed
from ade.settings import SettingsError, load_settings

__all__ = [
    "EXIT_FAILED",
    "EXIT_UNAVAILABLE",
    "add_connection_args",
    "add_json_arg",
    "format_error",
    "output_destination",
    "print_json",
    "print_listing",
    "quiet_broken_pipe",
    "run_client",
]

# 1: the request was refused or the job did not succeed; 2: ADE could not be reached at all.
EXIT_FAILED = 1
EXIT_UNAVAILABLE = 2


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        help="ADE server URL, with or without /api/v1 (default: ADE_URL or http://127.0.0.1:8000)",
    )
    parser.add_argument(
        "--workspace", default="default", help="workspace id (default: %(default)s)"
    )


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print the items as one JSON document (for scripts)"
    )


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


def print_listing(
    items: Sequence[dict[str, Any]],
    *,
    as_json: bool,
    line: Callable[[dict[str, Any]], str],
    empty: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """A list on stdout: one line per item, or one JSON document with ``--json``.

    An empty list says so on stderr (a script reading stdout sees no lines, a person sees why).
    """
    if as_json:
        print_json({"items": list(items), **(extra or {})})
        return
    for item in items:
        print(line(item))
    if not items:
        print(empty, file=sys.stderr)


def output_destination(raw: str) -> Path:
    """Where ``--output RAW`` saves: a folder when RAW names one or ends with a separator (the
    folder is created: ``--output newdir/``), else a file (its folder is created too).

    Why the raw string: ``Path("newdir/")`` drops the slash, and with it the user's intent.
    """
    path = Path(raw)
    if raw.endswith(("/", os.sep)) or path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def format_error(exc: ApiError) -> str:
    """The server's refusal in words: one line, then one line per problem when it lists them.

    A list of ``{location|field, message}`` problems is shown as lines; the message's own inline
    copy of that list is not repeated. Other details (ids, limits) follow as compact JSON.
    """
    head = f"ade: {exc.status} {exc.code}: {exc.message}"
    problems = _problem_lines(exc.details)
    if problems is not None:
        summary, _, _ = exc.message.partition("): ")
        summary = summary + ")" if summary != exc.message else summary
        return "\n".join([f"ade: {exc.status} {exc.code}: {summary}", *problems])
    if exc.details:
        return f"{head}\n{json.dumps(exc.details, sort_keys=True)}"
    return head


def _problem_lines(details: Any) -> list[str] | None:
    if not isinstance(details, list) or not details:
        return None
    lines = []
    for item in details:
        if not isinstance(item, dict) or "message" not in item:
            return None
        where = item.get("location") or item.get("field") or "?"
        lines.append(f"  {where}: {item['message']}")
    return lines


def quiet_broken_pipe() -> None:
    """The reader of our stdout went away (``ade jobs show ID | head -3``): not an error.

    Point stdout at /dev/null so the interpreter's final flush does not raise again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def run_client(
    args: argparse.Namespace, action: Callable[[AdeClient], Awaitable[int | None]]
) -> int:
    """Run ``action`` with a client for ``args.url`` (or ADE_URL); map failures to exit codes."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"ade: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    url = args.url or settings.url
    # ADE_API_KEY, else the admin key `ade serve` stored in ADE_DATA_DIR (ade.auth.bootstrap).
    api_key = client_api_key(settings)

    async def main() -> int:
        async with AdeClient(url, args.workspace, api_key=api_key) as client:
            return int(await action(client) or 0)

    try:
        return trio.run(main)
    except BrokenPipeError:
        quiet_broken_pipe()
        return 0
    except ApiError as exc:
        print(format_error(exc), file=sys.stderr)
        if exc.status == 401 and api_key is None:
            print(
                f"ade: no API key: set ADE_API_KEY, or run where ADE_DATA_DIR holds the "
                f"admin.key of `ade serve` (looked for {settings.admin_key_path})",
                file=sys.stderr,
            )
        return EXIT_FAILED
    except EventStreamClosed as exc:
        print(f"ade: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        if exc.filename is not None:  # a local file (e.g. --output in a read-only folder)
            print(f"ade: {exc.strerror or type(exc).__name__}: {exc.filename}", file=sys.stderr)
            return EXIT_FAILED
        print(f"ade: cannot reach ADE at {url}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except httpx.TransportError as exc:
        print(f"ade: cannot reach ADE at {url}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
