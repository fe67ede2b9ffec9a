"""Every ``ADE_*`` knob, read from the environment in one place and validated at start-up.

Why one place: an operator who mistypes a value should learn it at start-up, with the variable
named, not when the first job trips over it half an hour later.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

__all__ = ["SETTINGS_DOC", "Settings", "SettingsError", "load_settings"]


class SettingsError(ValueError):
    """An ``ADE_*`` variable holds a value ADE cannot use; the message names the variable."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


@attrs.frozen
class Settings:
    data_dir: Path = Path("data")
    max_concurrency: int = 2
    queue_size: int = 10
    job_timeout_seconds: float = 300.0
    worker_cpu_seconds: int = 60
    worker_mem_mb: int = 512
    worker_fsize_mb: int = 100
    # Enough for openpyxl + config code; a config that leaks descriptors fails fast instead.
    worker_max_files: int = 256
    worker_max_processes: int = 64
    # How a job's process starts (docs/job-execution.md): "fork" from a pre-imported template
    # per worker actor (milliseconds), or "spawn" a fresh interpreter (a warm standby hides its
    # start-up). Both confine the job completely before it reads anything.
    worker_start: str = "fork"
    # Jobs run at this nice value: under CPU contention the service's event loop answers
    # first. 10: well below the service, still ahead of anything at 19.
    worker_nice: int = 10
    shutdown_grace_seconds: float = 30.0
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_mb: int = 100
    # Bounded work per request (docs/security.md, "Requests and connections").
    max_json_kb: int = 256
    body_timeout_seconds: float = 60.0
    keep_alive_seconds: float = 5.0
    max_connections: int = 2048
    max_uncompressed_mb: int = 1024
    sandbox: str = "best-effort"
    url: str = "http://127.0.0.1:8000"
    # None: the embedded SQLite store under data_dir. A postgresql:// URL: the shared store of
    # a cluster of nodes (docs/operations.md, "Several nodes on PostgreSQL").
    database_url: str | None = None
    # Several nodes (ADE_DATABASE_URL set): this node's id (default: host name + a random
    # suffix, new at every start) and how long a running job's lease lasts without a
    # heartbeat. 30 s: a node is declared dead after half a minute of silence, long enough
    # to ride out a garbage-collection or I/O stall, short enough that users do not wait long.
    node_id: str | None = None
    lease_seconds: float = 30.0
    # "enabled": every route but health needs an API key (docs/security.md). "disabled": for
    # local experiments only; `ade serve` refuses it on an address other than loopback.
    auth: str = "enabled"
    # The key the client commands send; unset: ${ADE_DATA_DIR}/admin.key if that file exists.
    api_key: str | None = attrs.field(default=None, repr=False)

    @property
    def auth_enabled(self) -> bool:
        return self.auth == "enabled"

    @property
    def admin_key_path(self) -> Path:
        return self.data_dir / "admin.key"

    # Observability and retention (docs/operations.md, "Running in production"). The metrics
    # token is a secret: kept out of repr so it never reaches a log line or a traceback.
    metrics_token: str | None = attrs.field(default=None, repr=False)
    # None: text on a terminal, JSON lines otherwise (what a log shipper reads).
    log_format: str | None = None
    # None: keep finished jobs forever; N: a sweep deletes those finished over N days ago.
    retention_days: int | None = None

    @property
    def db_path(self) -> Path:
        return self.data_dir / "ade.sqlite"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def venvs_dir(self) -> Path:
        return self.data_dir / "venvs"

    @property
    def documents_dir(self) -> Path:
        return self.data_dir / "documents"


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be a whole number >= 1")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be a whole number >= 0")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a finite number of seconds > 0")
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("must be a TCP port between 0 and 65535")
    return value


def _sandbox_mode(raw: str) -> str:
    if raw not in ("strict", "best-effort"):
        raise ValueError("must be 'strict' or 'best-effort'")
    return raw


def _worker_start(raw: str) -> str:
    if raw not in ("fork", "spawn"):
        raise ValueError("must be 'fork' or 'spawn'")
    return raw


def _nice(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 19:
        raise ValueError("must be a nice value between 0 and 19")
    return value


def _url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return raw.rstrip("/")


def _database_url(raw: str) -> str:
    if not raw.startswith(("postgresql://", "postgres://")):
        raise ValueError(
            "must be a PostgreSQL URL (postgresql://user@host:5432/dbname); "
            "leave it unset for the embedded SQLite store"
        )
    return raw


def _node_id(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", raw):
        raise ValueError(
            "must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return raw


def _lease_seconds(raw: str) -> float:
    value = _positive_float(raw)
    if value < 1:
        raise ValueError("must be a finite number of seconds >= 1")
    return value


def _auth_mode(raw: str) -> str:
    if raw not in ("enabled", "disabled"):
        raise ValueError("must be 'enabled' or 'disabled'")
    return raw


def _log_format(raw: str) -> str:
    if raw not in ("text", "json"):
        raise ValueError("must be 'text' or 'json'")
    return raw


def _metrics_token(raw: str) -> str:
    # A scrape token is compared as a whole header value: printable, no spaces, and long
    # enough that guessing it is hopeless.
    if not re.fullmatch(r"[\x21-\x7e]{16,256}", raw):
        raise ValueError("must be 16-256 printable characters without spaces")
    return raw


def _non_empty(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw


# variable -> (attribute, parser, one-line description). The README's knob table mirrors this.
_KNOBS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "ADE_DATA_DIR": (
        "data_dir",
        lambda raw: Path(_non_empty(raw)),
        "where the store, documents, configs and jobs live",
    ),
    "ADE_MAX_CONCURRENCY": (
        "max_concurrency",
        _positive_int,
        "worker actors: jobs running at once",
    ),
    "ADE_QUEUE_SIZE": (
        "queue_size",
        _positive_int,
        "jobs allowed to wait; beyond it submit gets 429",
    ),
    "ADE_JOB_TIMEOUT_SECONDS": (
        "job_timeout_seconds",
        _positive_float,
        "hard wall-clock limit per job",
    ),
    "ADE_WORKER_CPU_SECONDS": (
        "worker_cpu_seconds",
        _positive_int,
        "CPU time limit per job (RLIMIT_CPU)",
    ),
    "ADE_WORKER_MEM_MB": ("worker_mem_mb", _positive_int, "memory limit per job in MiB"),
    "ADE_WORKER_FSIZE_MB": ("worker_fsize_mb", _positive_int, "largest file a job may write, MiB"),
    "ADE_WORKER_MAX_FILES": ("worker_max_files", _positive_int, "open file descriptors per job"),
    "ADE_WORKER_MAX_PROCESSES": (
        "worker_max_processes",
        _positive_int,
        "processes per job (pids cgroup)",
    ),
    "ADE_WORKER_START": (
        "worker_start",
        _worker_start,
        "'fork' (from a pre-imported template) or 'spawn' (fresh interpreter, warm standby)",
    ),
    "ADE_WORKER_NICE": (
        "worker_nice",
        _nice,
        "CPU priority of job processes (nice 0-19); the service stays at its own",
    ),
    "ADE_SHUTDOWN_GRACE_SECONDS": (
        "shutdown_grace_seconds",
        _positive_float,
        "how long running jobs may finish on shutdown",
    ),
    "ADE_HOST": ("host", _non_empty, "address `ade serve` binds"),
    "ADE_PORT": ("port", _port, "port `ade serve` binds"),
    "ADE_MAX_UPLOAD_MB": (
        "max_upload_mb",
        _positive_int,
        "largest accepted upload, MiB (413 beyond)",
    ),
    "ADE_MAX_JSON_KB": (
        "max_json_kb",
        _positive_int,
        "largest JSON request body, KiB (413 beyond; far below the upload cap)",
    ),
    "ADE_BODY_TIMEOUT_SECONDS": (
        "body_timeout_seconds",
        _positive_float,
        "a request body (upload or JSON) must arrive within this; 408 and closed beyond",
    ),
    "ADE_KEEP_ALIVE_SECONDS": (
        "keep_alive_seconds",
        _positive_float,
        "idle keep-alive connections close after this; also the limit for request headers",
    ),
    "ADE_MAX_CONNECTIONS": (
        "max_connections",
        _positive_int,
        "open HTTP connections at once; beyond it a new connection gets 503 and is closed",
    ),
    "ADE_MAX_UNCOMPRESSED_MB": (
        "max_uncompressed_mb",
        _positive_int,
        "largest total uncompressed size of an uploaded workbook, MiB (422 beyond)",
    ),
    "ADE_SANDBOX": (
        "sandbox",
        _sandbox_mode,
        "'strict' refuses to start without every sandbox layer",
    ),
    "ADE_URL": ("url", _url, "server URL used by the client commands"),
    "ADE_DATABASE_URL": (
        "database_url",
        _database_url,
        "unset: embedded SQLite; postgresql://...: the store shared by several nodes",
    ),
    "ADE_NODE_ID": (
        "node_id",
        _node_id,
        "this node's id in a cluster (default: host name + random suffix)",
    ),
    "ADE_LEASE_SECONDS": (
        "lease_seconds",
        _lease_seconds,
        "a silent node's running jobs are marked error after this long",
    ),
    "ADE_AUTH": (
        "auth",
        _auth_mode,
        "'enabled' (default): API keys required; 'disabled': local experiments, loopback only",
    ),
    "ADE_API_KEY": (
        "api_key",
        _non_empty,
        "the API key client commands send (default: ${ADE_DATA_DIR}/admin.key)",
    ),
    "ADE_METRICS_TOKEN": (
        "metrics_token",
        _metrics_token,
        "Bearer token GET /metrics requires (unset: /metrics answers loopback clients only)",
    ),
    "ADE_LOG_FORMAT": (
        "log_format",
        _log_format,
        "'text' or 'json' log lines on stderr (unset: text on a terminal, JSON otherwise)",
    ),
    "ADE_RETENTION_DAYS": (
        "retention_days",
        _positive_int,
        "delete finished jobs (rows and directories) older than this many days (unset: never)",
    ),
}

SETTINGS_DOC: dict[str, str] = {name: doc for name, (_, _, doc) in _KNOBS.items()}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from ``environ`` (default ``os.environ``) plus explicit overrides.

    Raises :class:`SettingsError` naming the first variable that does not parse.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for variable, (attribute, parse, _) in _KNOBS.items():
        raw = env.get(variable)
        if raw is None or raw == "":
            continue
        try:
            values[attribute] = parse(raw.strip())
        except ValueError as exc:
            detail = str(exc) if "must" in str(exc) else f"cannot parse {raw!r}"
            raise SettingsError(variable, detail) from None
    values.update(overrides)
    return Settings(**values)
