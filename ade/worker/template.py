"""The fork template: ``python -I -m ade.worker.template --control-fd N``.

A long-lived, single-threaded process per worker actor (``ADE_WORKER_START=fork``): it imports
what a job needs (:func:`ade.worker.main.preload` — trusted library code, never config code),
says READY, and then forks one child per ``START`` frame (:mod:`ade.worker.fork_protocol`).

What it never does: read job data (the assignment is forwarded unparsed to the child), run
config code, or keep anything of a job (the job's pipe ends are closed right after the fork).
It stays single-threaded (no trio, no threads) so that ``fork()`` copies a consistent process.

The child, before anything else: leads its own process group, restores default signal
dispositions, moves the job's pipes to fds 1, 2, 3 (events) and 4 (lifeline), closes every
other descriptor — the control socket included, so no job can reach its template's pipe — and
then :func:`ade.worker.main.run_assignment` confines it fully before it reads its request.
A child forked on ``PREPARE`` (ahead of its job) has its assignment pipe at fd 0: it confines
itself as far as it can without the job (:func:`ade.worker.main.wait_for_assignment`), waits
there, and applies the job-specific rest once the service has written the assignment.

When the service goes away the control socket reaches end-of-file and the template exits; each
child has its own lifeline to the service, as a spawned worker does.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import select
import signal
import socket
import sys
from typing import NoReturn

from ade.worker.fork_protocol import (
    ASSIGNMENT_LIMIT,
    FDS_PER_PREPARED,
    HEADER,
    READY,
    Fork,
    TemplateState,
    decode_frame,
    encode_frame,
)

__all__ = ["main"]

# Well above anything the fds of a job or of the template itself use (0-9).
_HIGH_FD = 100
# The child's fixed descriptors (run_assignment's events_fd and lifeline_fd).
_EVENTS_FD = 3
_LIFELINE_FD = 4
# The child exits with this when setting itself up failed (before any job code ran).
_CHILD_SETUP_FAILED = 126


def _child(payload: bytes, fds: list[int], control: socket.socket, prepare: bool) -> NoReturn:
    """In the forked child: become the job's process (``prepare``: the process waiting,
    confined, for a job). Never returns."""
    try:
        os.setpgid(0, 0)  # the template does it too: whoever runs first, the group exists
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        control.detach()  # the fd is closed below; the object must never close a reused number
        events, out, err, lifeline, *assignment = (
            fcntl.fcntl(fd, fcntl.F_DUPFD, _HIGH_FD) for fd in fds
        )
        stdin = assignment[0] if prepare else os.open(os.devnull, os.O_RDONLY)
        for source, target in ((stdin, 0), (out, 1), (err, 2), (events, 3), (lifeline, 4)):
            os.dup2(source, target)  # dup2'ed descriptors are inheritable, as a spawn's are
        os.closerange(_LIFELINE_FD + 1, os.sysconf("SC_OPEN_MAX"))
    except BaseException:
        os._exit(_CHILD_SETUP_FAILED)
    try:
        from ade.worker.main import run_assignment, wait_for_assignment

        if prepare:  # ends in os._exit on every path, as run_assignment does
            wait_for_assignment(_EVENTS_FD, _LIFELINE_FD, payload.decode(), preloaded=True)
        run_assignment(payload, _EVENTS_FD, _LIFELINE_FD)  # ends in os._exit on every path
    except BaseException as exc:
        # Never unwind into the template's loop: this process is the job's, not a template.
        os.write(2, f"ade.worker: the job process failed: {type(exc).__name__}\n".encode())
    os._exit(_CHILD_SETUP_FAILED)


def _receive(control: socket.socket) -> tuple[bytes, list[int]] | None:
    """One frame and its fds; None at end-of-file (the service is gone)."""
    data, fds, _, _ = socket.recv_fds(
        control, HEADER.size + ASSIGNMENT_LIMIT + 1, FDS_PER_PREPARED + 1
    )
    if not data and not fds:
        return None
    return data, fds


def _reap(state: TemplateState, control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        frame = state.reaped(pid, status)
        if frame is not None:
            control.send(frame)


def serve(control: socket.socket) -> int:
    """The template's loop; returns its exit status."""
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wake select() via wake_r
    state = TemplateState()
    control.send(encode_frame(READY, 0, os.getpid()))
    while True:
        try:
            readable, _, _ = select.select([control, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in readable:
            while True:
                try:
                    if not os.read(wake_r, 256):
                        break
                except BlockingIOError:
                    break
            _reap(state, control)
        if control not in readable:
            continue
        received = _receive(control)
        if received is None:
            return 0
        data, fds = received
        decision = state.on_frame(decode_frame(data), len(fds))
        if not isinstance(decision, Fork):
            for fd in fds:
                os.close(fd)
            sys.stderr.write(f"ade.worker.template: frame refused: {decision.reason}\n")
            continue
        frame = decode_frame(data)
        assert frame is not None
        try:
            pid = os.fork()
        except OSError as exc:  # a process limit (EAGAIN) or memory (ENOMEM): this job fails
            for fd in fds:
                os.close(fd)
            control.send(state.fork_failed(decision.token, exc.errno or errno.EAGAIN))
            continue
        if pid == 0:
            _child(frame.payload, fds, control, decision.prepare)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass  # the child already did it, or already exec'd/exited: its own call counts
        for fd in fds:
            os.close(fd)
        control.send(state.forked_child(decision.token, pid))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -I -m ade.worker.template")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--nice", type=int, default=0, help="CPU priority of jobs (and ours)")
    args = parser.parse_args(argv)
    from ade.sandbox.layers import set_cpu_priority
    from ade.worker.main import preload

    set_cpu_priority(args.nice)  # its session's too: every job it forks inherits both

    preload()
    control = socket.socket(fileno=args.control_fd)
    try:
        return serve(control)
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the service went away mid-reply
    finally:
        control.close()


if __name__ == "__main__":
    sys.exit(main())
