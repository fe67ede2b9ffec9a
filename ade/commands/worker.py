"""``ade worker``: a node of a cluster that runs jobs and serves no HTTP.

It claims jobs from the PostgreSQL queue (``ADE_DATABASE_URL``), heartbeats, rescues dead
nodes' jobs and writes its jobs' events into the shared data directory, exactly like the
workers of an ``ade serve`` node; SIGTERM or Ctrl+C drains it (running jobs get
ADE_SHUTDOWN_GRACE_SECONDS, queued jobs stay queued for the other nodes).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, TextIO

import trio

from ade.commands._cluster import cluster_settings
from ade.commands.serve import run_node, watch_signals
from ade.settings import Settings
from ade.telemetry.logs import configure_logging, log_fields

__all__ = ["register", "run_worker_node"]

# Start-up and shutdown lines (the stdout banner is for a person).
_log = logging.getLogger("ade.worker")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run jobs of a PostgreSQL cluster without serving HTTP",
        description="Join the cluster in ADE_DATABASE_URL as a worker-only node: claim queued "
        "jobs and run them with ADE_MAX_CONCURRENCY workers (or --workers). SIGTERM or Ctrl+C "
        "shuts down gracefully.",
    )
    parser.add_argument("--workers", type=int, metavar="N", help="default: ADE_MAX_CONCURRENCY")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    settings = cluster_settings(
        "ade worker",
        "a worker node joins a PostgreSQL cluster (on one machine, `ade serve` runs the workers)",
    )
    if settings is None:
        return 2
    if args.workers is not None and args.workers < 1:
        print(f"ade worker: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format)
    return run_worker_node(settings, workers=args.workers)


def run_worker_node(
    settings: Settings, *, workers: int | None = None, out: TextIO | None = None
) -> int:
    """Run until SIGTERM/SIGINT; 0 after a graceful shutdown, 2 if the node cannot start."""
    return run_node("ade worker", settings, _work, settings, workers, out or sys.stdout)


async def _work(settings: Settings, workers: int | None, out: TextIO) -> None:
    from ade.runtime import open_runtime

    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_signals, stop)
        async with open_runtime(settings, workers=workers, api=False) as runtime:
            member = runtime.member
            assert member is not None
            print(
                f"ADE worker node {member.node_id} ready ({member.info.workers} worker(s)); "
                "SIGTERM or Ctrl+C to stop",
                file=out,
                flush=True,
            )
            log_fields(
                _log,
                logging.INFO,
                "ADE worker started",
                node_id=member.node_id,
                workers=member.info.workers,
                data_dir=str(settings.data_dir),
            )
            await stop.wait()
        nursery.cancel_scope.cancel()
    log_fields(_log, logging.INFO, "ADE worker stopped", node_id=member.node_id)
    print("ADE worker stopped", file=out, flush=True)
