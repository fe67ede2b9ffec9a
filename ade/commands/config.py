"""``ade config add PATH`` (publish a package: a folder or a .zip), ``ade config list`` and
``ade config delete ID``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ade.client import AdeClient
from ade.client.commands import add_connection_args, add_json_arg, print_listing, run_client

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("config", help="publish and list config packages")
    actions = parser.add_subparsers(dest="config_action", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add",
        help="upload a config package (folder or .zip); prints the config version id",
    )
    add.add_argument("path", type=Path, help="the package folder or .zip")
    add_connection_args(add)
    add.set_defaults(handler=_add)
    listing = actions.add_parser("list", help="list the workspace's config versions")
    add_json_arg(listing)
    add_connection_args(listing)
    listing.set_defaults(handler=_list)
    delete = actions.add_parser(
        "delete", help="delete a config version (refused while a queued or running job uses it)"
    )
    delete.add_argument("config_id")
    add_connection_args(delete)
    delete.set_defaults(handler=_delete)


def _add(args: argparse.Namespace) -> int:
    path: Path = args.path
    if not path.exists():
        print(f"ade config add: {path}: no such file or folder", file=sys.stderr)
        return 1

    async def action(client: AdeClient) -> int:
        config = await client.add_config(path)
        print(f"{config['title']} {config['version']}", file=sys.stderr)
        print(config["id"])
        return 0

    return run_client(args, action)


def _list(args: argparse.Namespace) -> int:
    async def action(client: AdeClient) -> int:
        print_listing(
            await client.list_configs(),
            as_json=args.json,
            line=lambda c: f"{c['id']}  {c['title']} {c['version']}  {c['created_at']}",
            empty=f"no config versions in workspace {args.workspace} "
            "(add one: ade config add PATH)",
        )
        return 0

    return run_client(args, action)


def _delete(args: argparse.Namespace) -> int:
    async def action(client: AdeClient) -> int:
        await client.delete_config(args.config_id)
        print(f"{args.config_id} deleted")
        return 0

    return run_client(args, action)
