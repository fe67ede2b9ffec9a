"""``ade jobs list|show|artifact|output|retry|cancel|delete``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ade.client import AdeClient
from ade.client.commands import (
    add_connection_args,
    add_json_arg,
    output_destination,
    print_json,
    print_listing,
    run_client,
)
from ade.models import JobStatus

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("jobs", help="list, inspect, retry and cancel jobs")
    actions = parser.add_subparsers(dest="jobs_action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="jobs, newest first")
    listing.add_argument(
        "--status",
        choices=[status.value for status in JobStatus],
        help="only jobs in this status",
    )
    listing.add_argument(
        "--limit", type=int, default=20, help="jobs per page, 1-200 (default: %(default)s)"
    )
    listing.add_argument("--cursor", help="next_cursor printed by the previous page")
    add_json_arg(listing)
    add_connection_args(listing)
    listing.set_defaults(handler=_list)

    for name, help_text, handler in (
        ("show", "the job record as JSON", _show),
        ("artifact", "the job's artifact.json", _artifact),
        ("retry", "run a finished job again (prints the new job id)", _retry),
        ("cancel", "cancel a queued or running job", _cancel),
        ("delete", "delete a finished job: its record and its directory", _delete),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("job_id")
        add_connection_args(action)
        action.set_defaults(handler=handler)

    output = actions.add_parser("output", help="download normalized.xlsx")
    output.add_argument("job_id")
    output.add_argument(
        "-o",
        "--output",
        default=".",
        help="file, or folder (created when it ends with /; default: .)",
    )
    add_connection_args(output)
    output.set_defaults(handler=_output)


def _list(args: argparse.Namespace) -> int:
    async def action(client: AdeClient) -> int:
        page = await client.list_jobs(status=args.status, limit=args.limit, cursor=args.cursor)
        which = f"{args.status} jobs" if args.status else "jobs"
        empty = f"no {which} in workspace {args.workspace}"
        if args.cursor:
            empty += " after that cursor"
        print_listing(
            page["items"],
            as_json=args.json,
            line=_job_line,
            empty=empty,
            extra={"next_cursor": page["next_cursor"]},
        )
        if page["next_cursor"] and not args.json:
            print(f"more: --cursor {page['next_cursor']}", file=sys.stderr)
        return 0

    return run_client(args, action)


def _job_line(job: dict[str, Any]) -> str:
    """Id, status, outcome (clean / warnings / errors: ade.outcome), attempt, creation time,
    then what went wrong or the issues in one line."""
    said = job.get("error_message") or job.get("issues")
    tail = f"  {said}" if said else ""
    outcome = job.get("outcome") or "-"
    when = job["created_at"]
    return f"{job['id']}  {job['status']:<9}  {outcome:<8}  attempt {job['attempt']}  {when}{tail}"


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
        saved = await client.download_output(args.job_id, output_destination(args.output))
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


def _delete(args: argparse.Namespace) -> int:
    async def action(client: AdeClient) -> int:
        await client.delete_job(args.job_id)
        print(f"{args.job_id} deleted")
        return 0

    return run_client(args, action)
