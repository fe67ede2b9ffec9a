"""``ade documents list`` and ``ade documents delete ID``."""

from __future__ import annotations

import argparse
from typing import Any

from ade.client import AdeClient
from ade.client.commands import add_connection_args, add_json_arg, print_listing, run_client

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("documents", help="list and delete uploaded documents")
    actions = parser.add_subparsers(dest="documents_action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the workspace's documents, oldest first")
    add_json_arg(listing)
    add_connection_args(listing)
    listing.set_defaults(handler=_list)
    delete = actions.add_parser(
        "delete",
        help="delete a document (refused while a queued or running job uses it; finished jobs "
        "keep their own copy)",
    )
    delete.add_argument("document_id")
    add_connection_args(delete)
    delete.set_defaults(handler=_delete)


def _list(args: argparse.Namespace) -> int:
    async def action(client: AdeClient) -> int:
        print_listing(
            await client.list_documents(),
            as_json=args.json,
            line=lambda d: f"{d['id']}  {d['size']:>10}  {d['created_at']}  {d['filename']}",
            empty=f"no documents in workspace {args.workspace}",
        )
        return 0

    return run_client(args, action)


def _delete(args: argparse.Namespace) -> int:
    async def action(client: AdeClient) -> int:
        await client.delete_document(args.document_id)
        print(f"{args.document_id} deleted")
        return 0

    return run_client(args, action)
