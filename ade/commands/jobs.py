"""``ade jobs list|show|artifact|output|retry|cancel``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ade.client import AdeClient
from ade.client.commands import add_connection_args, print_json, run_client

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("jobs", help="list, inspect, retry and cancel jobs")
    actions = parser.add_subparsers(dest="jobs_action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="jobs, newest first")
    listing.add_argument("--status", choices=["queued", "running", "success", "error", "cancelled"])
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--cursor", help="next_cursor printed by the previous page")
    add_connection_args(listing)
    listing.set_defaults(handler=_list)

    for name, help_text, handler in (
        ("show", "the job record as JSON", _show),
        ("artifact", "the job's artifact.json", _artifact),
        ("retry", "run a finished job again (prints the new job id)", _retry),
        ("cancel", "cancel a queued or running job", _cancel),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("job_id")
        add_connection_args(action)
        action.set_defaults(handler=handler)

    output = actions.add_parser("output", help="download normalized.xlsx")
    output.add_argument("job_id")
    output.add_argument(
        "-o", "--output", type=Path, default=Path("."), help="file or folder (default: .)"
    )
    add_connection_args(output)
    output.set_defaults(handler=_output)


def _list(args: argparse.Namespace) -> int:
    async def action(client: AdeClient) -> int:
        page = await client.list_jobs(status=args.status, limit=args.limit, cursor=args.cursor)
        for job in page["items"]:
            message = f"  {job['error_message']}" if job.get("error_message") else ""
            print(
                f"{job['id']}  {job['status']:<9}  attempt {job['attempt']}  "
                f"{job['created_at']}{message}"
            )
        if page["next_cursor"]:
            print(f"more: --cursor {page['next_cursor']}", file=sys.stderr)
        return 0

    return run_client(args, action)


def _show(args: argparse.Namespace) -> int:
    async def action(client: AdeClient) -> int:
        print_json(await client.get_job(args.job_id))
        return 0

    return run_client(args, action)


def _artifact(args: argparse.Namespace) -> int:
    async def action(client: AdeClient) -> int:
        print(json.dumps(await client.artifact(args.job_id), indent=2))
        return 0

    return run_client(args, action)


def _output(args: argparse.Namespace) -> int:
    async def action(client: AdeClient) -> int:
        saved = await client.download_output(args.job_id, args.output)
        print(saved)
        return 0

    return run_client(args, action)


def _retry(args: argparse.Namespace) -> int:
    async def action(client: AdeClient) -> int:
        job = await client.retry(args.job_id)
        print(job["id"])
        return 0

    return run_client(args, action)


def _cancel(args: argparse.Namespace) -> int:
    async def action(client: AdeClient) -> int:
        job = await client.cancel(args.job_id)
        print(f"{job['id']} {job['status']}")
        return 0

    return run_client(args, action)
