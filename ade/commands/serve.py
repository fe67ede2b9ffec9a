"""``ade serve``: the HTTP API and the job runtime in one trio run, until SIGTERM or Ctrl+C.

Why our own signal handling: ``hypercorn.trio.serve`` swallows Ctrl+C, and background jobs of a
non-interactive shell start with SIGINT ignored, so both SIGTERM and SIGINT are received here
with ``trio.open_signal_receiver`` and turned into one graceful shutdown: the API stops, then
the runtime drains (running jobs get ADE_SHUTDOWN_GRACE_SECONDS; queued jobs stay queued).
"""

from __future__ import annotations

import argparse
import errno
import gc
import logging
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

import trio

from ade import __version__
from ade.api.connections import raise_fd_limit
from ade.api.server import run_service
from ade.auth.bootstrap import disabled_auth_problem, ensure_admin_key
from ade.catalog import Catalog
from ade.commands._settings import command_settings
from ade.errors import AdeError, StoreUnavailable
from ade.models import ConfigVersion, Document
from ade.protocols import Store
from ade.settings import Settings, load_settings
from ade.store import SchemaError
from ade.telemetry.logs import configure_logging, log_fields

__all__ = ["SAMPLE_DOCUMENT_NAME", "SAMPLE_WORKSPACE", "environment_epilog", "register", "serve"]

SAMPLE_WORKSPACE = "default"
# Start-up and shutdown lines (besides the banner on stdout, which is for a person).
_log = logging.getLogger("ade.serve")


SAMPLE_DOCUMENT_NAME = "sample-roster.xlsx"


class SampleUnavailable(Exception):
    """The bundled sample could not be prepared: a start-up failure to report in one line."""


async def _prepare_sample(store: Store, settings: Settings) -> tuple[ConfigVersion, Document]:
    """Publish the bundled roster config and store a sample messy workbook (once) in the
    default workspace, so a fresh install has something to submit."""
    from ade.samples import ROSTER_CONFIG
    from ade.samples.generate import write_messy_workbook

    catalog = Catalog(store, settings)
    config, _ = await catalog.publish_config(SAMPLE_WORKSPACE, ROSTER_CONFIG)
    for document in await store.list_documents(SAMPLE_WORKSPACE):
        if document.filename == SAMPLE_DOCUMENT_NAME:
            return config, document
    with tempfile.TemporaryDirectory(dir=settings.data_dir) as scratch:
        path = await trio.to_thread.run_sync(
            write_messy_workbook, Path(scratch) / SAMPLE_DOCUMENT_NAME
        )
        document = await catalog.add_local_document(SAMPLE_WORKSPACE, path, SAMPLE_DOCUMENT_NAME)
    return config, document


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the HTTP API and the job runtime",
        description="Serve the web page and the ADE API on ADE_HOST:ADE_PORT with the job "
        "runtime; SIGTERM or Ctrl+C shuts down gracefully.",
        epilog=environment_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="address to bind (default: ADE_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (default: ADE_PORT or 8000)")
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="jobs this node runs at once (default: ADE_MAX_CONCURRENCY); 0 makes an API-only "
        "node of a cluster (needs ADE_DATABASE_URL)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="where the store, documents, configs and jobs live (default: ADE_DATA_DIR or ./data)",
    )
    parser.add_argument(
        "--no-sample",
        action="store_true",
        help="do not prepare the bundled sample config in the default workspace",
    )
    parser.set_defaults(handler=_handle)


def environment_epilog() -> str:
    """``serve --help``'s list of the ADE_* variables, from the one table settings.py reads."""
    from ade.settings import SETTINGS_DOC

    defaults = load_settings({})
    width = max(len(name) for name in SETTINGS_DOC)
    lines = []
    for name, doc in SETTINGS_DOC.items():
        # Each variable names its attribute: ADE_QUEUE_SIZE -> settings.queue_size.
        default = getattr(defaults, name.removeprefix("ADE_").lower(), None)
        shown = f" (default: {default})" if default not in (None, "") else ""
        lines.append(f"  {name:<{width}}  {doc}{shown}")
    return "environment (options above override them):\n" + "\n".join(lines)


def _handle(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    settings = command_settings("ade serve", **overrides)
    if settings is None:
        return 2
    problem = workers_problem(args.workers, settings) or disabled_auth_problem(settings)
    if problem:
        print(f"ade serve: {problem}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format)
    return serve(settings, sample=not args.no_sample, workers=args.workers)


def workers_problem(workers: int | None, settings: Settings) -> str | None:
    """Why ``--workers`` cannot be used, or None."""
    if workers is None:
        return None
    if workers < 0:
        return f"--workers must be >= 0, got {workers}"
    if workers == 0 and settings.database_url is None:
        return (
            "--workers 0 (an API-only node) needs ADE_DATABASE_URL: on the embedded SQLite "
            "store no other node would run the jobs"
        )
    return None


def serve(
    settings: Settings,
    *,
    sample: bool = True,
    out: TextIO | None = None,
    workers: int | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; 0 after a graceful shutdown, 2 if the service cannot start."""
    return run_node("ade serve", settings, _serve, settings, sample, out or sys.stdout, workers)


def run_node(command: str, settings: Settings, main: Any, *args: Any) -> int:
    """Check the sandbox, then ``trio.run(main, *args)``; start-up failures are one line
    prefixed with ``command`` and exit status 2 (``ade serve`` and ``ade worker``)."""
    from ade.sandbox import check_required, detect_layers, startup_line

    report = detect_layers()
    try:
        check_required(settings, report)
    except AdeError as exc:
        print(f"{command}: {exc.message}", file=sys.stderr)
        return 2
    # Log lines (ADE_LOG_FORMAT), not prints: in JSON mode stderr stays one object a line.
    _log.info("%s", startup_line(settings, report))
    before, after = raise_fd_limit()
    if after > before:
        _log.info("open-file limit raised from %d to %d", before, after)
    try:
        trio.run(main, *args)
    except _startup_failures() as exc:
        print(f"{command}: {_describe(exc, settings)}", file=sys.stderr)
        return 2
    except BaseExceptionGroup as group:
        # From inside the nurseries: the port is taken, the data directory is locked by another
        # `ade serve` or not writable, the sample cannot be prepared. Those are start-up
        # failures to report, not crashes.
        failure = _startup_failure(group, _startup_failures())
        if failure is None:
            raise
        print(f"{command}: {_describe(failure, settings)}", file=sys.stderr)
        return 2
    return 0


# Start-up failures reported in one line (exit 2) rather than as a traceback: the port is taken,
# the data directory is locked or not writable, the database is unreachable or newer than this
# code, the sample cannot be prepared.
def _startup_failures() -> tuple[type[BaseException], ...]:
    from ade.cluster.queue import NodeIdInUse
    from ade.runtime import DataDirLocked  # imported late: `ade --help` stays quick

    return (DataDirLocked, OSError, SampleUnavailable, SchemaError, StoreUnavailable, NodeIdInUse)


def _describe(exc: BaseException, settings: Settings) -> str:
    if isinstance(exc, OSError) and exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
        return f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
    return str(exc)


def _startup_failure(
    group: BaseExceptionGroup, kinds: tuple[type[BaseException], ...]
) -> BaseException | None:
    """The first leaf of ``group`` if every leaf is one of ``kinds``, else None."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    if leaves and all(isinstance(leaf, kinds) for leaf in leaves):
        return leaves[-1]
    return None


async def _serve(settings: Settings, sample: bool, out: TextIO, workers: int | None) -> None:
    stop = trio.Event()
    samples: list[tuple[ConfigVersion, Document]] = []

    async def before_serving(runtime: Any) -> None:
        from ade.store.access import access_store

        token = await ensure_admin_key(access_store(runtime.store), settings)
        if token is not None:
            print(
                f"created the first admin API key (shown this once; the local CLI reads it from "
                f"{settings.admin_key_path}, readable by you only):\n  {token}",
                file=out,
                flush=True,
            )
        if sample:
            await prepare_sample(runtime)

    async def prepare_sample(runtime: Any) -> None:
        try:
            config, document = await _prepare_sample(runtime.store, settings)
        except (AdeError, OSError) as exc:
            detail = exc.message if isinstance(exc, AdeError) else str(exc)
            raise SampleUnavailable(
                f"could not prepare the bundled sample config: {detail} "
                "(start with --no-sample to skip it)"
            ) from exc
        samples.append((config, document))
        print(
            f"sample config {config.id} ({config.title} {config.version}) and sample document "
            f"{document.id} ({document.filename}) ready in workspace {SAMPLE_WORKSPACE}",
            file=out,
            flush=True,
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_signals, stop)
        async with trio.open_nursery() as service:
            url = await service.start(
                lambda task_status: run_service(
                    settings,
                    shutdown_trigger=stop.wait,
                    before_serving=before_serving,
                    workers=workers,
                    task_status=task_status,
                )
            )
            # What start-up built (modules, the app, the runtime) lives as long as the service:
            # out of the collector's sight, a full collection scans only what requests and jobs
            # leave behind. Measured with jobs running: full collections of the whole heap took
            # 60-90 ms on the event loop and were the API's p99 (docs/benchmarks.md, "API").
            gc.freeze()
            print(
                f"ADE serving on {url}  (web page: {url}/, API: {url}/api/v1, Ctrl+C to stop)",
                file=out,
                flush=True,
            )
            for config, document in samples:
                print(_try_lines(url, config, document, settings), file=out, flush=True)
            log_fields(
                _log,
                logging.INFO,
                "ADE started",
                url=url,
                version=__version__,
                data_dir=str(settings.data_dir),
                store="postgresql" if settings.database_url else "sqlite",
                workers=settings.max_concurrency if workers is None else workers,
                queue_size=settings.queue_size,
                retention_days=settings.retention_days,
            )
        # run_service returned: the API has stopped and the runtime has drained.
        nursery.cancel_scope.cancel()
    log_fields(_log, logging.INFO, "ADE stopped", url=url)
    print("ADE stopped", file=out, flush=True)


async def watch_signals(stop: trio.Event) -> None:
    """SIGTERM or SIGINT sets ``stop`` (a graceful shutdown); a second one is only reported."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if stop.is_set():
                log_fields(_log, logging.INFO, f"{name}: already shutting down", signal=name)
                continue
            log_fields(_log, logging.INFO, f"{name}: shutting down gracefully", signal=name)
            stop.set()


def _try_lines(url: str, config: ConfigVersion, document: Document, settings: Settings) -> str:
    body = f'{{"config_version_id": "{config.id}", "document_ids": ["{document.id}"]}}'
    key = (
        f'-H "Authorization: Bearer $(cat {settings.admin_key_path})" '
        if settings.auth_enabled
        else ""
    )
    return (
        f"  try: curl {key}-H 'Content-Type: application/json' -d '{body}' "
        f"{url}/api/v1/workspaces/{SAMPLE_WORKSPACE}/jobs\n"
        f"  or:  ade submit YOUR.xlsx --config {config.id} --wait"
    )
