"""``ade gc [--dry-run]``: delete finished jobs past retention and files no record names.

It works on the store and the data directory directly (like ``ade db migrate``), so it runs
with the service up or down, on any node of a cluster: each deletion is the same row-first
transaction the API uses (:mod:`ade.retention`), and files younger than ten minutes without a
row are left alone (they may be a submission or an upload in flight).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import trio

from ade.commands._settings import command_settings
from ade.errors import AdeError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gc",
        help="delete expired finished jobs and orphaned files (--dry-run lists them)",
        description="Delete finished jobs older than --older-than-days (default: "
        "ADE_RETENTION_DAYS; neither: no job is deleted by age) with their directories, and "
        "every file of ADE_DATA_DIR that no record names (left by a crash between a deletion's "
        "row and its files, or by an interrupted upload). --dry-run only lists them.",
    )
    parser.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    parser.add_argument(
        "--older-than-days", type=int, metavar="N", help="finished more than N days ago"
    )
    parser.add_argument("--data-dir", type=Path, help="default: ADE_DATA_DIR or ./data")
    parser.set_defaults(handler=_gc)


def _gc(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    settings = command_settings("ade gc", **overrides)
    if settings is None:
        return 2
    days = args.older_than_days if args.older_than_days is not None else settings.retention_days
    if days is not None and days < 1:
        print(f"ade gc: --older-than-days must be >= 1, got {days}", file=sys.stderr)
        return 2
    if not settings.data_dir.is_dir():
        print(f"ade gc: {settings.data_dir}: no such data directory", file=sys.stderr)
        return 2
    try:
        report = trio.run(_collect, settings, days, args.dry_run)
    except AdeError as exc:
        print(f"ade gc: {exc.message}", file=sys.stderr)
        return 2
    verb = "would delete" if args.dry_run else "deleted"
    for job_id in report.jobs:
        print(f"{verb} job {job_id}")
    for path in report.orphans:
        print(f"{verb} orphan {path}")
    mib = report.bytes / (1024 * 1024)
    print(
        f"{verb} {len(report.jobs)} job(s) and {len(report.orphans)} orphaned file(s), "
        f"{mib:.1f} MiB" + ("" if days is not None else " (no retention age given: jobs kept)"),
        file=sys.stderr,
    )
    return 0


async def _collect(settings: Any, days: int | None, dry_run: bool) -> Any:
    from ade.retention import Retention
    from ade.store import open_store

    store = await trio.to_thread.run_sync(open_store, settings)
    try:
        return await Retention(store, settings).collect(older_than_days=days, dry_run=dry_run)
    finally:
        await trio.to_thread.run_sync(store.close)
