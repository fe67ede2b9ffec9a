"""``ade nodes list``: the nodes of a cluster (ADE_DATABASE_URL), read from the database.

Read from the database rather than through one node's API so that it answers even when every
API node is down (``ade worker`` nodes have no API at all).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ade.commands._cluster import cluster_settings
from ade.errors import AdeError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("nodes", help="the nodes of a PostgreSQL cluster")
    actions = parser.add_subparsers(dest="nodes_action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list",
        help="id, host, mode, workers, running jobs, last heartbeat and state of every node",
        description="Lists the nodes registered in ADE_DATABASE_URL's database. A node is "
        "'alive' while its heartbeat is younger than ADE_LEASE_SECONDS, 'stopped' after a "
        "graceful exit and 'dead' when it stopped heartbeating.",
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_list)


def _list(args: argparse.Namespace) -> int:
    settings = cluster_settings(
        "ade nodes list", "a single node on SQLite has no cluster (see `ade serve`)"
    )
    if settings is None or settings.database_url is None:
        return 2
    from ade.cluster.queue import list_nodes
    from ade.serde import converter
    from ade.store.postgres import connect

    try:
        with connect(settings.database_url) as conn:
            nodes = list_nodes(conn, settings.lease_seconds)
    except AdeError as exc:
        print(f"ade nodes list: {exc.message}", file=sys.stderr)
        return 2
    if args.json:
        print(converter.dumps([converter.unstructure(node) for node in nodes]))
        return 0
    header = ("ID", "HOST", "MODE", "WORKERS", "RUNNING", "HEARTBEAT", "STATE")
    rows = [header]
    for node in nodes:
        state = "stopped" if node.stopped_at is not None else "alive" if node.alive else "dead"
        rows.append(
            (
                node.id,
                node.host,
                node.mode,
                str(node.workers),
                str(node.running),
                f"{node.seconds_since_heartbeat:.1f} s ago",
                state,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    return 0
