"""``ade submit FILE... --config ID [--wait]``: upload the files, submit one job, and with
``--wait`` follow it live (a progress bar on a terminal, plain lines otherwise).

Two things a job service does to a waiting client, and how this command rides them out:

- a full queue (429 + Retry-After): the files are uploaded once, then the submit is repeated
  after each Retry-After, with one idempotency key so a repeat can never make a second job,
  for at most ``--queue-wait`` seconds; after that it prints the command that submits the
  already-uploaded documents (``--document ID``) instead of leaving them orphaned;
- a server restart while ``--wait`` follows the job: it waits for the server to come back (at
  most ``--reconnect-wait`` seconds) and reports the job's real ending from its events.
"""

from __future__ import annotations

import argparse
import secrets
import shlex
import sys
from pathlib import Path
from typing import Any

import trio

from ade.client import AdeClient, ApiError
from ade.client.commands import (
    EXIT_FAILED,
    add_connection_args,
    output_destination,
    run_client,
)
from ade.client.progress import ProgressView
from ade.outcome import add_fail_on_argument, exit_code_for

__all__ = ["register"]

QUEUE_FULL = 429
# Used when the server's 429 carries no Retry-After (it always does; a proxy might strip it).
_FALLBACK_RETRY_SECONDS = 5.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "submit",
        help="upload spreadsheets and submit a job",
        description="Upload FILE(s) (or reuse uploaded documents with --document), submit one "
        "job with the given config version and print its id. With --wait, show its progress "
        "and exit non-zero unless it succeeds.",
    )
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE")
    parser.add_argument(
        "--document",
        action="append",
        default=[],
        metavar="ID",
        help="an already uploaded document id, instead of or after the FILEs (repeatable)",
    )
    parser.add_argument("--config", required=True, help="config version id")
    parser.add_argument("--wait", action="store_true", help="follow the job until it ends")
    add_fail_on_argument(parser)
    parser.add_argument(
        "--output",
        help="with --wait: save normalized.xlsx here (a file, or a folder: created when the "
        "path ends with /)",
    )
    parser.add_argument(
        "--network", action="store_true", help="request runtime network access for the job"
    )
    parser.add_argument(
        "--idempotency-key", help="submit at most once for this key (safe to repeat)"
    )
    parser.add_argument(
        "--queue-wait",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="when the queue is full (429), retry after the server's Retry-After for at most "
        "this long; 0 gives up at once (default: %(default)s)",
    )
    parser.add_argument(
        "--reconnect-wait",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="with --wait: how long to wait for a restarting server before giving up "
        "(default: %(default)s)",
    )
    add_connection_args(parser)
    parser.set_defaults(handler=_submit)


def _submit(args: argparse.Namespace) -> int:
    if not args.files and not args.document:
        print("ade submit: give at least one FILE or --document ID", file=sys.stderr)
        return EXIT_FAILED
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        print(f"ade submit: no such file: {', '.join(missing)}", file=sys.stderr)
        return EXIT_FAILED
    if args.output is not None and not args.wait:
        print("ade submit: --output needs --wait", file=sys.stderr)
        return EXIT_FAILED
    if args.queue_wait < 0 or args.reconnect_wait < 0:
        print("ade submit: --queue-wait and --reconnect-wait must be >= 0", file=sys.stderr)
        return EXIT_FAILED

    async def action(client: AdeClient) -> int:
        # An unknown config is refused before anything is uploaded: nothing is left behind.
        await client.get_config(args.config)
        for document_id in args.document:
            await client.get_document(document_id)
        document_ids = []
        for path in args.files:
            document = await client.upload_document(path)
            document_ids.append(document["id"])
        document_ids.extend(args.document)
        job = await _submit_through_full_queue(client, args, document_ids)
        if job is None:
            return EXIT_FAILED
        print(job["id"], flush=True)
        if not args.wait:
            return 0
        return await _follow(client, args, job["id"])

    return run_client(args, action)


async def _submit_through_full_queue(
    client: AdeClient, args: argparse.Namespace, document_ids: list[str]
) -> dict[str, Any] | None:
    """The accepted job, or None after telling how to submit the uploaded documents later."""
    # One key for every attempt: a repeat after a lost answer can never make a second job.
    key = args.idempotency_key or f"ade-submit-{secrets.token_hex(12)}"
    deadline = trio.current_time() + args.queue_wait
    while True:
        try:
            return await client.submit(
                args.config,
                document_ids,
                runtime_network_access=args.network,
                idempotency_key=key,
            )
        except ApiError as refused:
            if refused.status != QUEUE_FULL:
                raise
            delay = refused.retry_after or _FALLBACK_RETRY_SECONDS
            if trio.current_time() + delay > deadline:
                print(f"ade submit: {refused.message}", file=sys.stderr)
                print(
                    "ade submit: the queue is still full; the files are uploaded, submit them "
                    "later without uploading again:\n  " + _resubmit_command(args, document_ids),
                    file=sys.stderr,
                )
                return None
            print(
                f"ade submit: {refused.message}; retrying in {delay:g} s "
                f"(giving up {args.queue_wait:g} s after the first try)",
                file=sys.stderr,
                flush=True,
            )
            await trio.sleep(delay)


def _resubmit_command(args: argparse.Namespace, document_ids: list[str]) -> str:
    words = ["ade", "submit", "--config", args.config]
    for document_id in document_ids:
        words += ["--document", document_id]
    if args.network:
        words.append("--network")
    if args.wait:
        words.append("--wait")
    if args.output is not None:
        words += ["--output", args.output]
    if args.url:
        words += ["--url", args.url]
    if args.workspace != "default":
        words += ["--workspace", args.workspace]
    return shlex.join(words)


async def _follow(client: AdeClient, args: argparse.Namespace, job_id: str) -> int:
    view = ProgressView(terminal=sys.stderr.isatty())

    def outage(reason: str) -> None:
        print(
            f"\nade submit: lost the server ({reason}); waiting up to {args.reconnect_wait:g} s "
            f"for it to come back (job {job_id} keeps its place)",
            file=sys.stderr,
            flush=True,
        )

    async for event in client.follow(
        job_id, outlast_restarts=args.reconnect_wait, on_outage=outage
    ):
        sys.stderr.write(view.render(event))
        sys.stderr.flush()
    final = await client.get_job(job_id)
    if final["status"] != "success":
        message = final.get("error_message") or final["status"]
        print(f"job {final['id']} {final['status']}: {message}", file=sys.stderr)
        return EXIT_FAILED
    if args.output is not None:
        saved = await client.download_output(job_id, output_destination(args.output))
        print(f"output saved to {saved}", file=sys.stderr)
    outcome = final.get("outcome")
    if outcome in ("warnings", "errors"):
        how = "finished with errors" if outcome == "errors" else "finished with warnings"
        print(f"job {final['id']} {how}: {final.get('issues')}", file=sys.stderr)
    return exit_code_for(outcome, args.fail_on)
