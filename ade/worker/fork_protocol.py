"""The fork-server protocol: the service <-> template wire format, and the template's decisions.

Theory of operation
-------------------
In ``ADE_WORKER_START=fork`` each worker actor keeps one long-lived *template* process
(:mod:`ade.worker.template`): an interpreter that has imported what a job needs (the engine,
openpyxl, the sandbox) and nothing else — never config code, never job data. The template and
its worker actor talk over one ``SOCK_SEQPACKET`` unix socket pair (message boundaries for free,
and ``SCM_RIGHTS`` to hand over a job's pipes). Every frame starts with a fixed header::

    kind (1 byte) | token (8 bytes, unsigned) | value (8 bytes, signed)

Service -> template: ``START`` (token = the job's launch number) with the job's four pipe ends
attached (events, stdout, stderr, lifeline — in that order) and an opaque *assignment* after the
header: JSON the template never parses. It forks; the child parses it (job directory, sandbox
spec, environment) and confines itself before it reads anything else (:func:`
ade.worker.main.run_assignment`).

Service -> template: ``PREPARE`` (token as for ``START``), ahead of any job, with five pipe
ends — the four above and the read end of the pipe the job's assignment will arrive on — and
a :class:`~ade.sandbox.spec.Preconfinement` (JSON, job-independent: the service's settings)
after the header. The child confines itself as far as it can without a job and waits on that
pipe; the service writes the assignment into it directly, so the template never sees it.

Template -> service: ``READY`` once (value = the template's pid), ``STARTED`` (value = the
child's pid, which leads its own process group) and ``EXITED`` (value = the child's raw wait
status) per job, or ``FORK_FAILED`` (value = the errno of ``fork()``, e.g. EAGAIN at a process
limit) instead of both when no child could be made: that job fails saying so, and the template
goes on serving. Anything else — an unknown kind, a token the service never sent, a frame of
the wrong size — is misbehaviour: the worker actor kills the template and starts a new one.

:class:`TemplateState` is the template's decision logic (which child is which job; what to
answer when one is reaped), a plain object tested without processes; :class:`ForkServerState`
is the service side's (what a reply means for the job in flight, when to restart).
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import attrs

__all__ = [
    "ASSIGNMENT_LIMIT",
    "EXITED",
    "FDS_PER_JOB",
    "FDS_PER_PREPARED",
    "FORK_FAILED",
    "HEADER",
    "PREPARE",
    "READY",
    "START",
    "STARTED",
    "Assignment",
    "ForkServerState",
    "Frame",
    "TemplateState",
    "decode_frame",
    "encode_frame",
]

HEADER = struct.Struct("!cQq")
START = b"S"
PREPARE = b"A"
READY = b"R"
STARTED = b"P"
EXITED = b"X"
FORK_FAILED = b"F"
_KINDS_TO_SERVICE = (READY, STARTED, EXITED, FORK_FAILED)
_ERRNO_LIMIT = 4096  # Linux errnos are small positive numbers
# events, stdout, stderr, lifeline: the child's fds 3, 1, 2 and 4 once it has set itself up.
FDS_PER_JOB = 4
# ... and for PREPARE the assignment pipe's read end: the child's fd 0.
FDS_PER_PREPARED = 5
# The assignment is a job directory, a sandbox spec and a dozen environment variables.
ASSIGNMENT_LIMIT = 32 * 1024
# No pid is above this (the kernel's PID_MAX_LIMIT is 2**22): a larger "pid" would make
# killpg() raise OverflowError in the service rather than kill anything.
_PID_LIMIT = 2**31 - 1


@attrs.frozen
class Frame:
    kind: bytes
    token: int
    value: int
    payload: bytes = b""


def encode_frame(kind: bytes, token: int, value: int = 0, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, token, value) + payload


def decode_frame(data: bytes) -> Frame | None:
    """The frame in ``data``, or None when it is not one (too short)."""
    if len(data) < HEADER.size:
        return None
    kind, token, value = HEADER.unpack_from(data)
    return Frame(kind, token, value, bytes(data[HEADER.size :]))


@attrs.frozen
class Assignment:
    """What the forked child (or the warm standby) needs before anything else: where its job
    lives, how to confine itself, and its environment. Built by the trusted service."""

    job_dir: str
    # The unstructured SandboxSpec (the child structures it; the template never looks).
    spec: dict[str, Any]
    env: dict[str, str]

    def encode(self) -> bytes:
        data = json.dumps(attrs.asdict(self), separators=(",", ":")).encode()
        if len(data) > ASSIGNMENT_LIMIT:
            raise ValueError(f"assignment of {len(data)} bytes exceeds {ASSIGNMENT_LIMIT}")
        return data

    @classmethod
    def decode(cls, data: bytes) -> Assignment:
        """Raises ValueError naming the problem."""
        try:
            raw = json.loads(data)
            assignment = cls(job_dir=raw["job_dir"], spec=dict(raw["spec"]), env=dict(raw["env"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"malformed assignment: {type(exc).__name__}") from None
        if not isinstance(assignment.job_dir, str) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in assignment.env.items()
        ):
            raise ValueError("malformed assignment: wrong field types")
        return assignment


# -- the template's decisions ------------------------------------------------------------------


@attrs.frozen
class Fork:
    """Fork one child for the job ``token``; the frame's fds and payload go to the child.
    ``prepare``: the payload is a Preconfinement and the child waits for its assignment."""

    token: int
    prepare: bool = False


@attrs.frozen
class Refuse:
    """Drop the frame (close its fds) and tell nobody: the service times the launch out."""

    reason: str


class TemplateState:
    """Which child runs which job. The template forks on ``START`` (or ``PREPARE``) and
    reports each reaped child once; any other frame is refused without forking."""

    def __init__(self) -> None:
        self.children: dict[int, int] = {}  # pid -> token
        self.forked = 0

    def on_frame(self, frame: Frame | None, fd_count: int) -> Fork | Refuse:
        if frame is None:
            return Refuse("short frame")
        if frame.kind not in (START, PREPARE):
            return Refuse(f"unknown frame kind {frame.kind!r}")
        name, expected = (
            ("START", FDS_PER_JOB) if frame.kind == START else ("PREPARE", FDS_PER_PREPARED)
        )
        if fd_count != expected:
            return Refuse(f"{name} with {fd_count} fds, expected {expected}")
        if len(frame.payload) > ASSIGNMENT_LIMIT:
            return Refuse("assignment too large")
        return Fork(frame.token, prepare=frame.kind == PREPARE)

    def fork_failed(self, token: int, error: int) -> bytes:
        return encode_frame(FORK_FAILED, token, error)

    def forked_child(self, token: int, pid: int) -> bytes:
        self.children[pid] = token
        self.forked += 1
        return encode_frame(STARTED, token, pid)

    def reaped(self, pid: int, status: int) -> bytes | None:
        """The EXITED frame for a reaped child, None for a pid that was never a job's."""
        token = self.children.pop(pid, None)
        if token is None:
            return None
        return encode_frame(EXITED, token, status)


# -- the service side's decisions --------------------------------------------------------------


@attrs.frozen
class Started:
    token: int
    pid: int


@attrs.frozen
class Exited:
    token: int
    status: int


@attrs.frozen
class ForkFailed:
    token: int
    errno: int


@attrs.frozen
class Ready:
    pid: int


@attrs.frozen
class Misbehaved:
    reason: str


class ForkServerState:
    """The service's view of one template: is it ready, which launch is in flight, how many
    times it was restarted. A reply that does not fit what was asked is misbehaviour."""

    def __init__(self) -> None:
        self.template_pid: int | None = None
        self.next_token = 1
        # Tokens sent, STARTED not yet seen. More than one when a launch was abandoned
        # (cancelled) before its STARTED came and the next launch was sent meanwhile.
        self.launching: set[int] = set()
        self.running: dict[int, int] = {}  # token -> child pid
        self.restarts = 0
        self.last_restart_reason: str | None = None

    @property
    def ready(self) -> bool:
        return self.template_pid is not None

    def begin_launch(self) -> int:
        token = self.next_token
        self.next_token += 1
        self.launching.add(token)
        return token

    def on_reply(
        self, frame: Frame | None, fd_count: int
    ) -> Ready | Started | Exited | ForkFailed | Misbehaved:
        if frame is None or fd_count or frame.payload:
            return Misbehaved("malformed frame from the template")
        if frame.kind not in _KINDS_TO_SERVICE:
            return Misbehaved(f"unknown frame kind {frame.kind!r} from the template")
        if frame.kind == READY:
            if self.template_pid is not None or not 0 < frame.value <= _PID_LIMIT:
                return Misbehaved("unexpected READY from the template")
            self.template_pid = frame.value
            return Ready(frame.value)
        if frame.kind == STARTED:
            if frame.token not in self.launching or not 1 < frame.value <= _PID_LIMIT:
                return Misbehaved(f"STARTED for a launch not in flight ({frame.token})")
            self.launching.discard(frame.token)
            self.running[frame.token] = frame.value
            return Started(frame.token, frame.value)
        if frame.kind == FORK_FAILED:
            if frame.token not in self.launching or not 0 < frame.value < _ERRNO_LIMIT:
                return Misbehaved(f"FORK_FAILED for a launch not in flight ({frame.token})")
            self.launching.discard(frame.token)
            return ForkFailed(frame.token, frame.value)
        if frame.token not in self.running:
            return Misbehaved(f"EXITED for a job not running ({frame.token})")
        if not _is_exit_status(frame.value):
            # The supervisor turns it into an exit code: a status no ended process has would
            # raise there (os.waitstatus_to_exitcode) instead of ending the job.
            return Misbehaved(f"EXITED with an impossible wait status ({frame.value})")
        del self.running[frame.token]
        return Exited(frame.token, frame.value)

    def template_lost(self, reason: str) -> None:
        """The template died or was killed: every launch in flight is lost with it."""
        self.template_pid = None
        self.launching.clear()
        self.running.clear()
        self.restarts += 1
        self.last_restart_reason = reason


def _is_exit_status(status: int) -> bool:
    """True for the wait status of a process that ended (exited, or was killed by a signal)."""
    if not 0 <= status <= 0xFFFF:
        return False
    try:
        os.waitstatus_to_exitcode(status)
    except ValueError:  # stopped or continued: not an ending
        return False
    return True
