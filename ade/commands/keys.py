"""``ade keys create|list|revoke`` and ``ade workspaces create|list|rename|delete``: API
clients of the admin routes (so a revocation reaches the running server's checks at once).
Exit status: 0 done, 1 refused by the server (the reason printed), 2 ADE not reachable."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ade.client import AdeClient
from ade.client.commands import add_json_arg, print_listing, run_client

__all__ = ["register"]


def _connection(parser: argparse.ArgumentParser) -> None:
    # These routes are not inside a workspace: only --url matters.
    parser.add_argument(
        "--url",
        help="ADE server URL, with or without /api/v1 (default: ADE_URL or http://127.0.0.1:8000)",
    )
    parser.set_defaults(workspace="default")


def register(subparsers: Any) -> None:
    keys = subparsers.add_parser(
        "keys",
        help="API keys: create, list, revoke (needs an admin key)",
        description="Manage API keys. Roles: admin (every workspace, keys, workspaces), member "
        "(read and write in its workspaces), viewer (read only). The client sends ADE_API_KEY, "
        "else ADE_DATA_DIR/admin.key.",
    )
    actions = keys.add_subparsers(dest="keys_action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key and print its token once")
    create.add_argument("name", help="who or what the key is for (shown in listings)")
    create.add_argument(
        "--role", choices=("admin", "member", "viewer"), default="member", help="default: member"
    )
    create.add_argument(
        "--workspace",
        dest="workspaces",
        action="append",
        default=[],
        metavar="ID",
        help="a workspace the key may use (repeat; required for member and viewer keys)",
    )
    _connection(create)
    create.set_defaults(handler=_create)
    listing = actions.add_parser("list", help="every key (never a token)")
    _connection(listing)
    add_json_arg(listing)
    listing.set_defaults(handler=_list)
    revoke = actions.add_parser("revoke", help="revoke a key: refused from the next request on")
    revoke.add_argument("key_id")
    _connection(revoke)
    revoke.set_defaults(handler=_revoke)

    spaces = subparsers.add_parser(
        "workspaces",
        help="workspaces: create, list, rename, delete",
        description="Workspaces are explicit: an unknown one is a 404 everywhere. Creating, "
        "renaming and deleting need an admin key; delete and rename are refused while a job of "
        "the workspace is queued or running.",
    )
    ws_actions = spaces.add_subparsers(dest="workspaces_action", required=True, metavar="ACTION")
    ws_create = ws_actions.add_parser("create", help="create a workspace")
    ws_create.add_argument("id", help="1-63 of a-z, 0-9, '-', '_'")
    _connection(ws_create)
    ws_create.set_defaults(handler=_ws_create)
    ws_list = ws_actions.add_parser("list", help="the workspaces your key may use")
    _connection(ws_list)
    add_json_arg(ws_list)
    ws_list.set_defaults(handler=_ws_list)
    ws_rename = ws_actions.add_parser("rename", help="rename a workspace (data and keys follow)")
    ws_rename.add_argument("id")
    ws_rename.add_argument("new_id")
    _connection(ws_rename)
    ws_rename.set_defaults(handler=_ws_rename)
    ws_delete = ws_actions.add_parser(
        "delete", help="delete a workspace with its jobs, documents and configs"
    )
    ws_delete.add_argument("id")
    _connection(ws_delete)
    ws_delete.set_defaults(handler=_ws_delete)


def _key_line(key: dict[str, Any]) -> str:
    state = f"revoked {key['revoked_at']}" if key["revoked_at"] else "active"
    used = key["last_used_at"] or "never used"
    scope = ",".join(key["workspaces"]) or "all workspaces"
    return f"{key['id']}  {key['role']:<6}  {scope}  {state}  last used: {used}  {key['name']}"


def _create(args: argparse.Namespace) -> int:
    async def action(client: AdeClient) -> int:
        key = await client.create_key(args.name, args.role, args.workspaces)
        print(f"created {key['role']} key {key['id']} ({key['name']}); its token, shown once:")
        print(key["token"])
        return 0

    return run_client(args, action)


def _list(args: argparse.Namespace) -> int:
    async def action(client: AdeClient) -> int:
        keys = await client.list_keys()
        print_listing(keys, as_json=args.json, line=_key_line, empty="no API keys")
        return 0

    return run_client(args, action)


def _revoke(args: argparse.Namespace) -> int:
    async def action(client: AdeClient) -> int:
        key = await client.revoke_key(args.key_id)
        print(f"revoked key {key['id']} ({key['name']}) at {key['revoked_at']}")
        return 0

    return run_client(args, action)


def _ws_create(args: argparse.Namespace) -> int:
    async def action(client: AdeClient) -> int:
        workspace = await client.create_workspace(args.id)
        print(f"created workspace {workspace['id']}")
        return 0

    return run_client(args, action)


def _ws_list(args: argparse.Namespace) -> int:
    async def action(client: AdeClient) -> int:
        items = await client.list_workspaces()
        print_listing(
            items,
            as_json=args.json,
            line=lambda w: f"{w['id']}  created {w['created_at']}",
            empty="no workspaces your key may use",
        )
        return 0

    return run_client(args, action)


def _ws_rename(args: argparse.Namespace) -> int:
    async def action(client: AdeClient) -> int:
        await client.rename_workspace(args.id, args.new_id)
        print(f"renamed workspace {args.id} to {args.new_id}")
        return 0

    return run_client(args, action)


def _ws_delete(args: argparse.Namespace) -> int:
    async def action(client: AdeClient) -> int:
        await client.delete_workspace(args.id)
        print(f"deleted workspace {args.id}", file=sys.stderr)
        return 0

    return run_client(args, action)
