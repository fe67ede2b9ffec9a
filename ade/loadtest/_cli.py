"""Command-line surface shared by ``ade loadtest`` and ``benchmarks/loadtest.py``."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from ade.loadtest._clients import SessionAbandoned
from ade.loadtest._options import (
    CONFIG_KINDS,
    WORKBOOK_KINDS,
    LoadTestOptions,
    OptionsError,
    parse_mix,
)
from ade.loadtest._report import Report, format_table, report_json
from ade.loadtest._run import run_loadtest
from ade.loadtest._server import ServerStartError

__all__ = ["add_arguments", "main", "options_from_args", "run_from_args"]

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130


async def _run_until_signal(options: LoadTestOptions) -> Report | None:
    """The run, or None when SIGINT/SIGTERM cancelled it. Handling the signals ourselves (not
    KeyboardInterrupt, not the default SIGTERM death) lets the run unwind, so the server it
    started and that server's workers are stopped rather than left behind."""

    report: Report | None = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def cancel_on_signal() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(cancel_on_signal)
            report = await run_loadtest(options)
            nursery.cancel_scope.cancel()
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = LoadTestOptions()
    target = parser.add_argument_group("target")
    target.add_argument(
        "--url",
        help="drive this running server (loopback only) instead of starting a private `ade serve`",
    )
    target.add_argument(
        "--data-dir",
        type=Path,
        help="with --url: the server's ADE_DATA_DIR, to check every job's events.ndjson",
    )
    target.add_argument("--workspace", default=defaults.workspace)
    load = parser.add_argument_group("load (the run stops at whichever bound comes first)")
    load.add_argument("--clients", type=int, default=defaults.clients, help="concurrent clients")
    load.add_argument("--duration", type=float, default=defaults.duration, help="seconds")
    load.add_argument("--jobs", type=int, default=None, help="stop after this many submissions")
    load.add_argument(
        "--workbooks",
        default="tiny=9,large=1",
        help=f"mix of {'/'.join(WORKBOOK_KINDS)} workbooks, KIND=WEIGHT,...",
    )
    load.add_argument(
        "--configs",
        default="ok=85,fail=5,timeout=5,memory=5",
        help=f"mix of {'/'.join(CONFIG_KINDS)} config packages, KIND=WEIGHT,...",
    )
    load.add_argument("--tiny-rows", type=int, default=defaults.tiny_rows)
    load.add_argument("--large-rows", type=int, default=defaults.large_rows)
    load.add_argument(
        "--watch-fraction",
        type=float,
        default=defaults.watch_fraction,
        help="share of jobs followed over the websocket (the rest poll)",
    )
    load.add_argument("--cancel-fraction", type=float, default=defaults.cancel_fraction)
    load.add_argument(
        "--retry-fraction",
        type=float,
        default=defaults.retry_fraction,
        help="share of unsuccessful jobs retried",
    )
    load.add_argument("--greedy", action="store_true", help="ignore Retry-After on 429")
    load.add_argument(
        "--chaos",
        action="store_true",
        help="SIGKILL the server once at a random moment and restart it",
    )
    load.add_argument("--seed", type=int, default=None, help="make the mix reproducible")
    server_nodes = parser.add_argument_group("a private cluster")
    server_nodes.add_argument(
        "--nodes",
        type=int,
        default=defaults.nodes,
        help="start this many `ade serve` nodes sharing a PostgreSQL database of their own "
        "(created and dropped by the run) and one data directory; with --chaos one random "
        "node is SIGKILLed",
    )
    server_nodes.add_argument(
        "--postgres-url",
        default=defaults.postgres_url,
        help="PostgreSQL server (a user that may CREATE DATABASE) for --nodes",
    )
    load.add_argument(
        "--drain-timeout",
        type=float,
        default=defaults.drain_timeout,
        help="seconds every accepted job may take to finish after the load",
    )
    load.add_argument(
        "--request-timeout",
        type=float,
        default=defaults.request_timeout,
        help="seconds a request may take before it counts as failed",
    )
    server = parser.add_argument_group("the server the harness starts")
    server.add_argument("--queue-size", type=int, default=defaults.queue_size)
    server.add_argument("--max-concurrency", type=int, default=defaults.max_concurrency)
    server.add_argument(
        "--job-timeout",
        type=float,
        default=defaults.job_timeout,
        help="ADE_JOB_TIMEOUT_SECONDS (the 'timeout' config sleeps past it)",
    )
    server.add_argument(
        "--worker-mem-mb",
        type=int,
        default=defaults.worker_mem_mb,
        help="ADE_WORKER_MEM_MB (the 'memory' config allocates past it)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def options_from_args(args: argparse.Namespace) -> LoadTestOptions:
    return LoadTestOptions(
        url=args.url,
        data_dir=args.data_dir,
        workspace=args.workspace,
        clients=args.clients,
        duration=args.duration,
        jobs=args.jobs,
        workbook_mix=parse_mix("--workbooks", args.workbooks, WORKBOOK_KINDS),
        config_mix=parse_mix("--configs", args.configs, CONFIG_KINDS),
        tiny_rows=args.tiny_rows,
        large_rows=args.large_rows,
        watch_fraction=args.watch_fraction,
        cancel_fraction=args.cancel_fraction,
        retry_fraction=args.retry_fraction,
        greedy=args.greedy,
        chaos=args.chaos,
        nodes=args.nodes,
        postgres_url=args.postgres_url,
        seed=args.seed,
        queue_size=args.queue_size,
        max_concurrency=args.max_concurrency,
        job_timeout=args.job_timeout,
        worker_mem_mb=args.worker_mem_mb,
        drain_timeout=args.drain_timeout,
        request_timeout=args.request_timeout,
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Exit status: 0 every invariant held, 1 one failed, 2 the run could not be made."""
    try:
        options = options_from_args(args)
    except OptionsError as exc:
        print(f"ade loadtest: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = trio.run(_run_until_signal, options)
    except (ServerStartError, SessionAbandoned) as exc:
        print(f"ade loadtest: cannot run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if report is None:
        print("ade loadtest: interrupted; the server it started was stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(report_json(report) if args.json else format_table(report))
    return EXIT_PASS if report.passed else EXIT_FAIL


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="loadtest",
        description="Drive a real `ade serve` with concurrent clients and "
        "check that it keeps its promises (see docs/loadtest.md).",
    )
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
