"""The worker <-> supervisor protocol, in one place: what goes in, what comes back.

In: ``run-request.json`` (:class:`RunRequest`), the exact parameters handed to the worker
subprocess, built by the service (:mod:`ade.runtime.jobdir`). Paths in it are relative to the job
directory (the worker's cwd) so a job directory can be inspected or moved as a whole; the sandbox
spec carries absolute paths because the kernel layers (Landlock, bind mounts) need them.

Back: the events fd carries JSON lines ``{"type": ..., "detail": {...}}`` (:func:`encode_event`,
:func:`decode_event`): progress, one ``sandbox`` line with the layers applied, and exactly one
final ``result`` line (:class:`WorkerResult`). Then the exit status (:class:`ExitStatus`). The
pipe is writable by config code too (same process), so the supervisor treats every line as
untrusted: :func:`decode_event` and :meth:`WorkerResult.from_detail` check every field.

The limit messages (:func:`limit_message`) are written here because both sides report limits:
the worker when it sees MemoryError or EFBIG, the supervisor when the process died of a signal.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import attrs
import cattrs

from ade.layout import OUTPUT_DIR, SNAPSHOT_PATH, TMP_DIR
from ade.sandbox import SandboxSpec
from ade.serde import converter

__all__ = [
    "EVENT_LINE_LIMIT",
    "RESULT_EVENT",
    "SANDBOX_EVENT",
    "ExitStatus",
    "Limit",
    "RequestInput",
    "ResultCode",
    "RunRequest",
    "WorkerResult",
    "decode_event",
    "dump_request",
    "encode_event",
    "is_event_type",
    "limit_message",
    "load_request",
]

REQUEST_FORMAT = 1
# The longest events line the supervisor accepts; anything longer is dropped as garbage.
EVENT_LINE_LIMIT = 64 * 1024
# The one rule for event type names, on the pipe and in events.ndjson.
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
RESULT_EVENT = "result"
SANDBOX_EVENT = "sandbox"
# A result line's message is capped: it becomes the job's user-facing error message.
_MESSAGE_CAP = 1000


def is_event_type(name: object) -> bool:
    """A plain lowercase name of at most 64 characters."""
    return isinstance(name, str) and _EVENT_TYPE.fullmatch(name) is not None


@attrs.frozen
class RequestInput:
    """One input document of the job, as the worker sees it."""

    # Relative to the job directory, built from the document id: never from the uploaded name.
    path: str
    # The uploaded filename: display data only (artifact, messages).
    name: str
    document_id: str


@attrs.frozen
class RunRequest:
    job_id: str
    workspace_id: str
    attempt: int
    config_id: str
    inputs: tuple[RequestInput, ...]
    runtime_network_access: bool
    sandbox: SandboxSpec
    # The frozen config package (read-only) and its installed requirements, via the .venv link.
    snapshot: str = SNAPSHOT_PATH
    site_packages: str | None = None
    # The only writable place: TMPDIR, HOME and the engine's output, moved into the job directory
    # by the supervisor after a successful run (so a failed job never leaves half an output).
    tmp_dir: str = TMP_DIR
    output_dir: str = OUTPUT_DIR
    format: int = REQUEST_FORMAT


def dump_request(request: RunRequest) -> bytes:
    return converter.dumps(request, indent=2).encode() + b"\n"


def load_request(path: Path) -> RunRequest:
    """Read and structure ``run-request.json``; raises ValueError naming what is wrong."""
    try:
        raw = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path.name}: {type(exc).__name__}: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != REQUEST_FORMAT:
        raise ValueError(f"{path.name}: unsupported request format (expected {REQUEST_FORMAT})")
    try:
        return converter.structure(raw, RunRequest)
    except Exception as exc:
        problems = "; ".join(cattrs.transform_error(exc)[:5])
        raise ValueError(f"{path.name}: invalid request ({problems})") from None


class ResultCode:
    """``code`` of the worker's final ``result`` line."""

    SUCCESS = "success"
    CONFIG_ERROR = "config_error"
    INPUT_ERROR = "input_error"
    PACKAGE_INVALID = "package_invalid"
    MEMORY = "memory"
    FSIZE = "fsize"
    BAD_REQUEST = "bad_request"
    SANDBOX = "sandbox"
    INTERNAL = "internal"


_RESULT_CODES = frozenset(
    value for name, value in vars(ResultCode).items() if not name.startswith("_")
)


class ExitStatus:
    """The worker's exit status when it ends by itself (a death by signal has none)."""

    SUCCESS = 0  # after a ``success`` result
    FAILED = 1  # after an ``error`` result
    BAD_REQUEST = 2  # the request could not be read
    SANDBOX = 3  # the sandbox could not be applied


class Limit:
    """``JobRecord.limit``: which limit (or outside stop) ended the job."""

    TIMEOUT = "timeout"
    CPU = "cpu"
    MEMORY = "memory"
    FSIZE = "fsize"
    CANCELLED = "cancelled"
    SHUTDOWN = "shutdown"
    RESTART = "restart"
    NODE_LOST = "node_lost"  # its node stopped heartbeating (a cluster)


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def limit_message(limit: str, amount: float) -> str:
    """The user-facing message of a resource limit; ``amount`` is the limit's size (MiB for
    memory and file size, seconds for CPU and the wall clock)."""
    if limit == Limit.MEMORY:
        return f"memory limit of {_format_number(amount)} MiB exceeded"
    if limit == Limit.FSIZE:
        return f"file size limit of {_format_number(amount)} MiB exceeded"
    if limit == Limit.CPU:
        return f"CPU limit of {_format_number(amount)} s exceeded"
    if limit == Limit.TIMEOUT:
        return f"timed out after {_format_number(amount)} s"
    raise ValueError(f"no message for limit {limit!r}")


@attrs.frozen
class WorkerResult:
    """The final ``result`` line: how the run ended, as the worker saw it.

    ``detail`` holds what the failure adds (the failing file and function, the package's
    problems, ...); ``summary`` is the engine's end-of-run summary on success (docs/api.md).
    """

    code: str
    message: str = ""
    detail: dict[str, Any] = attrs.field(factory=dict)
    summary: dict[str, Any] = attrs.field(factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.code == ResultCode.SUCCESS

    def to_detail(self) -> dict[str, Any]:
        """The line's detail on the pipe."""
        status = "success" if self.succeeded else "error"
        line: dict[str, Any] = {"status": status, "code": self.code}
        if self.message:
            line["message"] = self.message
        if self.detail:
            line["detail"] = self.detail
        if self.summary:
            line["summary"] = self.summary
        return line

    @classmethod
    def from_detail(cls, detail: dict[str, Any]) -> WorkerResult | None:
        """The result a line claims, or None when it is not a well-formed result (the
        supervisor then judges the run by its exit status alone)."""
        code = detail.get("code")
        message = detail.get("message", "")
        extra = detail.get("detail", {})
        summary = detail.get("summary", {})
        if code not in _RESULT_CODES or not isinstance(message, str):
            return None
        if not isinstance(extra, dict) or not isinstance(summary, dict):
            return None
        return cls(code, message[:_MESSAGE_CAP], extra, summary)


def encode_event(event_type: str, detail: dict[str, Any]) -> bytes:
    """One events-pipe line: ``{"type": ..., "detail": {...}}`` + newline."""
    if not is_event_type(event_type):
        raise ValueError(f"bad event type {event_type!r}")
    line = json.dumps({"type": event_type, "detail": detail}, default=str, separators=(",", ":"))
    return line.encode() + b"\n"


def decode_event(line: bytes) -> tuple[str, dict[str, Any]] | None:
    """The (type, detail) of one line, or None if it is not a well-formed event."""
    if len(line) > EVENT_LINE_LIMIT:
        return None
    try:
        raw = json.loads(line)
    except ValueError:
        return None
    if not isinstance(raw, dict) or set(raw) != {"type", "detail"}:
        return None
    event_type, detail = raw["type"], raw["detail"]
    if not is_event_type(event_type) or not isinstance(detail, dict):
        return None
    return event_type, detail
