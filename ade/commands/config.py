"""``ade config add PATH`` (publish a package: a folder or a .zip) and ``ade config list``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ade.client import AdeClient
from ade.client.commands import add_connection_args, run_client

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
    add_connection_args(listing)
    listing.set_defaults(handler=_list)


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
        for config in await client.list_configs():
            print(f"{config['id']}  {config['title']} {config['version']}  {config['created_at']}")
        return 0

    return run_client(args, action)
