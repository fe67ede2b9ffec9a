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

__all__ = ["HelpFormatter", "add_arguments", "main", "options_from_args", "run_from_args"]

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130
DEFAULT_CONFIG_MIX = "ok=85,fail=5,timeout=5,memory=5"
DEFAULT_URL_CONFIG_MIX = "ok=85,fail=5,memory=5"


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


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in its help, except where there is none to show (None, a flag)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


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
    target.add_argument(
        "--api-key",
        help="with --url: the API key to send (default: ADE_API_KEY, else --data-dir's "
        "admin.key); a private server's admin key is read from its data dir",
    )
    target.add_argument(
        "--workspace", default=defaults.workspace, help="workspace the clients submit to"
    )
    load = parser.add_argument_group("load (the run stops at whichever bound comes first)")
    load.add_argument("--clients", type=int, default=defaults.clients, help="concurrent clients")
    load.add_argument("--duration", type=float, default=defaults.duration, help="seconds of load")
    load.add_argument(
        "--jobs", type=int, default=None, help="stop after this many submissions (no bound)"
    )
    load.add_argument(
        "--workbooks",
        default="tiny=9,large=1",
        help=f"mix of {'/'.join(WORKBOOK_KINDS)} workbooks, KIND=WEIGHT,...",
    )
    load.add_argument(
        "--configs",
        default=None,
        help=f"mix of {'/'.join(CONFIG_KINDS)} config packages, KIND=WEIGHT,... "
        f"(default: {DEFAULT_CONFIG_MIX}; with --url: {DEFAULT_URL_CONFIG_MIX}, because a "
        "'timeout' job lasts the server's whole ADE_JOB_TIMEOUT_SECONDS)",
    )
    load.add_argument(
        "--tiny-rows", type=int, default=defaults.tiny_rows, help="data rows of a tiny workbook"
    )
    load.add_argument(
        "--large-rows", type=int, default=defaults.large_rows, help="data rows of a large workbook"
    )
    for flag, kind, default, help_text in (
        ("--watch-fraction", float, defaults.watch_fraction,
         "share of jobs followed over the websocket (the rest poll)"),
        ("--cancel-fraction", float, defaults.cancel_fraction,
         "share of jobs cancelled while queued or running"),
        ("--retry-fraction", float, defaults.retry_fraction, "share of unsuccessful jobs retried"),
    ):  # fmt: skip
        load.add_argument(flag, type=kind, default=default, help=help_text)
    load.add_argument("--greedy", action="store_true", help="ignore Retry-After on 429")
    load.add_argument(
        "--chaos",
        action="store_true",
        help="SIGKILL the server once at a random moment and restart it",
    )
    load.add_argument("--seed", type=int, default=None, help="make the mix reproducible (random)")
    nodes = parser.add_argument_group("a private cluster")
    nodes.add_argument(
        "--nodes",
        type=int,
        default=defaults.nodes,
        help="start this many `ade serve` nodes sharing a PostgreSQL database of their own "
        "(created and dropped by the run) and one data directory; with --chaos one random "
        "node is SIGKILLed",
    )
    nodes.add_argument(
        "--postgres-url",
        default=defaults.postgres_url,
        help="PostgreSQL server (a user that may CREATE DATABASE) for --nodes",
    )
    server = parser.add_argument_group("the server the harness starts")
    for group, flag, kind, default, help_text in (
        (load, "--drain-timeout", float, defaults.drain_timeout,
         "seconds every accepted job may take to finish after the load"),
        (load, "--request-timeout", float, defaults.request_timeout,
         "seconds a request may take before it counts as failed"),
        (server, "--queue-size", int, defaults.queue_size,
         "ADE_QUEUE_SIZE (with --url: read from the server's /api/v1/health)"),
        (server, "--max-concurrency", int, defaults.max_concurrency,
         "ADE_MAX_CONCURRENCY: jobs running at once"),
        (server, "--job-timeout", float, defaults.job_timeout,
         "ADE_JOB_TIMEOUT_SECONDS (the 'timeout' config sleeps past it)"),
        (server, "--worker-mem-mb", int, defaults.worker_mem_mb,
         "ADE_WORKER_MEM_MB (the 'memory' config allocates past it)"),
    ):  # fmt: skip
        group.add_argument(flag, type=kind, default=default, help=help_text)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def options_from_args(args: argparse.Namespace) -> LoadTestOptions:
    return LoadTestOptions(
        url=args.url,
        data_dir=args.data_dir,
        api_key=args.api_key,
        workspace=args.workspace,
        clients=args.clients,
        duration=args.duration,
        jobs=args.jobs,
        workbook_mix=parse_mix("--workbooks", args.workbooks, WORKBOOK_KINDS),
        config_mix=parse_mix("--configs", _config_mix_text(args), CONFIG_KINDS),
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


def _config_mix_text(args: argparse.Namespace) -> str:
    """The --configs mix, and a warning when it cannot finish within the drain.

    A 'timeout' job runs until the server's ADE_JOB_TIMEOUT_SECONDS kills it. The private server
    is started with --job-timeout (3 s); a server given with --url has its own (300 s unless
    set), which outlasts --drain-timeout, and its 'timeout' jobs would be reported as lost.
    So with --url the default mix leaves 'timeout' out, and an explicit one is warned about.
    """
    if args.configs is None:
        return DEFAULT_URL_CONFIG_MIX if args.url else DEFAULT_CONFIG_MIX
    if args.url and parse_mix("--configs", args.configs, CONFIG_KINDS)["timeout"] > 0:
        print(
            "ade loadtest: warning: with --url, 'timeout' jobs run until the server's "
            "ADE_JOB_TIMEOUT_SECONDS kills them; unless that is below --drain-timeout "
            f"({args.drain_timeout:g} s) they will be reported as lost",
            file=sys.stderr,
        )
    return str(args.configs)


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
        formatter_class=HelpFormatter,
        description="Drive a real `ade serve` with concurrent clients and "
        "check that it keeps its promises (see docs/loadtest.md).",
    )
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
