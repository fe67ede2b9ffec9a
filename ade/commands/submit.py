"""``ade submit FILE... --config ID [--wait]``: upload the files, submit one job, and with
``--wait`` follow it live (a progress bar on a terminal, plain lines otherwise)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ade.client import AdeClient
from ade.client.commands import EXIT_FAILED, add_connection_args, run_client
from ade.client.progress import ProgressView

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "submit",
        help="upload spreadsheets and submit a job",
        description="Upload FILE(s), submit one job with the given config version and print "
        "its id. With --wait, show its progress and exit non-zero unless it succeeds.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--config", required=True, help="config version id")
    parser.add_argument("--wait", action="store_true", help="follow the job until it ends")
    parser.add_argument(
        "--output", type=Path, help="with --wait: save normalized.xlsx here (file or folder)"
    )
    parser.add_argument(
        "--network", action="store_true", help="request runtime network access for the job"
    )
    parser.add_argument(
        "--idempotency-key", help="submit at most once for this key (safe to repeat)"
    )
    add_connection_args(parser)
    parser.set_defaults(handler=_submit)


def _submit(args: argparse.Namespace) -> int:
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        print(f"ade submit: no such file: {', '.join(missing)}", file=sys.stderr)
        return EXIT_FAILED
    if args.output is not None and not args.wait:
        print("ade submit: --output needs --wait", file=sys.stderr)
        return EXIT_FAILED

    async def action(client: AdeClient) -> int:
        # An unknown config is refused before anything is uploaded: nothing is left behind.
        await client.get_config(args.config)
        document_ids = []
        for path in args.files:
            document = await client.upload_document(path)
            document_ids.append(document["id"])
        job = await client.submit(
            args.config,
            document_ids,
            runtime_network_access=args.network,
            idempotency_key=args.idempotency_key,
        )
        print(job["id"])
        if not args.wait:
            return 0
        view = ProgressView(terminal=sys.stderr.isatty())
        async for event in client.follow(job["id"]):
            sys.stderr.write(view.render(event))
            sys.stderr.flush()
        final = await client.get_job(job["id"])
        if final["status"] != "success":
            message = final.get("error_message") or final["status"]
            print(f"job {final['id']} {final['status']}: {message}", file=sys.stderr)
            return EXIT_FAILED
        if args.output is not None:
            saved = await client.download_output(job["id"], args.output)
            print(f"output saved to {saved}", file=sys.stderr)
        return 0

    return run_client(args, action)
