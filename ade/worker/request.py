"""``run-request.json``: the exact parameters handed to the worker subprocess, and the wire format
of the events pipe.

Paths in the request are relative to the job directory (the worker's cwd) so a job directory can
be inspected or moved as a whole; the sandbox spec carries absolute paths because the kernel
layers (Landlock, bind mounts) need them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import attrs
import cattrs

from ade.sandbox import SandboxSpec
from ade.serde import converter

__all__ = [
    "EVENT_LINE_LIMIT",
    "REQUEST_FILE",
    "InputFile",
    "ResultCode",
    "RunRequest",
    "decode_event",
    "encode_event",
    "load_request",
]

REQUEST_FILE = "run-request.json"
REQUEST_FORMAT = 1
# The longest events line the supervisor accepts; anything longer is dropped as garbage.
EVENT_LINE_LIMIT = 64 * 1024
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@attrs.frozen
class InputFile:
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
    inputs: tuple[InputFile, ...]
    runtime_network_access: bool
    sandbox: SandboxSpec
    # The frozen config package (read-only) and its installed requirements, via the .venv link.
    snapshot: str = ".venv/ade-build/snapshot"
    site_packages: str | None = None
    # The only writable place: TMPDIR, HOME and the engine's output, moved into the job directory
    # by the supervisor after a successful run (so a failed job never leaves half an output).
    tmp_dir: str = "tmp"
    output_dir: str = "tmp/output"
    format: int = REQUEST_FORMAT


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


def encode_event(event_type: str, detail: dict[str, Any]) -> bytes:
    """One events-pipe line: ``{"type": ..., "detail": {...}}`` + newline."""
    if not _EVENT_TYPE.match(event_type):
        raise ValueError(f"bad event type {event_type!r}")
    line = json.dumps({"type": event_type, "detail": detail}, default=str, separators=(",", ":"))
    return line.encode() + b"\n"


def decode_event(line: bytes) -> tuple[str, dict[str, Any]] | None:
    """The (type, detail) of one line, or None if it is not a well-formed event. The pipe is
    writable by config code too (same process), so the supervisor treats it as untrusted."""
    if len(line) > EVENT_LINE_LIMIT:
        return None
    try:
        raw = json.loads(line)
    except ValueError:
        return None
    if not isinstance(raw, dict) or set(raw) != {"type", "detail"}:
        return None
    event_type, detail = raw["type"], raw["detail"]
    if not isinstance(event_type, str) or not _EVENT_TYPE.match(event_type):
        return None
    if not isinstance(detail, dict):
        return None
    return event_type, detail
