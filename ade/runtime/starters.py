"""How a worker actor starts its job's process: ``ADE_WORKER_START=fork`` or ``spawn``.

Theory of operation
-------------------
A fresh interpreter that imports attrs, cattrs, the engine and openpyxl costs ~100 ms per job:
most of a tiny job's time. Both modes take that cost off the job's path; each worker actor owns
one starter for its whole life, and runs its background work (a template, a standby) in the
actor's own nursery.

``fork`` (:class:`ForkServer`): one long-lived *template* (``python -I -m
ade.worker.template``), started through ``trio.run_process`` in its own session, that has
imported what a job needs and waits on a ``SOCK_SEQPACKET`` socket (protocol and decisions:
:mod:`ade.worker.fork_protocol`). Per job we hand it four fresh pipe ends; it forks one child
that leads its own process group, confines itself completely and only then reads its request.
The child is not our child, so its exit status comes back from the template (``EXITED``). The
template is restarted — and the restart counted — when it exits, sends anything unexpected or
does not answer a launch in time; the job it was starting or running is killed (its group and
cgroup) and ends with "the job's template process died".

``spawn`` (:class:`SpawnStandby`): one fresh interpreter per job, as before, through
``trio.run_process`` — but started one job ahead: a *standby* (``python -I -m ade.worker
--standby``) is imported and waiting on stdin when the job arrives; it receives the job's
assignment there, confines itself, runs the job and exits, and the next standby starts.

Either way the supervisor (:func:`ade.runtime.supervisor.supervise_job`) gets a
:class:`JobProcess`: a pid that leads the job's process group, its three pipes and a ``wait``.
"""

from __future__ import annotations

import array
import logging
import os
import signal
import socket
import subprocess
import sys
from functools import partial
from typing import Any, Protocol

import attrs
import trio

from ade.settings import Settings
from ade.worker.fork_protocol import (
    START,
    Assignment,
    Exited,
    ForkServerState,
    Misbehaved,
    Ready,
    Started,
    decode_frame,
    encode_frame,
)

__all__ = [
    "WORKER_START_MODES",
    "ForkServer",
    "JobProcess",
    "JobStarter",
    "SpawnStandby",
    "StarterStatistics",
    "make_starter",
    "service_env",
]

logger = logging.getLogger(__name__)

WORKER_START_MODES = ("fork", "spawn")
# A template imports in ~0.2 s; on a loaded machine much longer. Beyond this it is broken.
_READY_TIMEOUT = 60.0
# The template answers a START with the child's pid right after fork(): milliseconds.
_LAUNCH_TIMEOUT = 10.0
# A template that keeps dying is restarted after a growing pause (not in a hot loop).
_RESTART_PAUSES = (0.05, 0.2, 1.0, 5.0)
# Bytes of a template's / standby's frame we read at once (frames are 17 bytes).
_FRAME_BUFFER = 64
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_EXITED = "the template exited"


def service_env() -> dict[str, str]:
    """The environment of a template or standby: nothing of the server's (tokens, database
    URLs) — the same minimal set a job gets, without the job's own directories."""
    return {
        "PATH": _SAFE_PATH,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": "/tmp",
        "HOME": "/",
        # Each malloc arena / BLAS thread reserves address space that counts against RLIMIT_AS.
        "MALLOC_ARENA_MAX": "2",
        "OPENBLAS_NUM_THREADS": "1",
    }


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def _kill_group(process: trio.Process) -> None:
    """deliver_cancel for templates and standbys: the whole group, at once (field notes)."""
    _killpg(process.pid)


class JobProcess(Protocol):
    """One job's process as the supervisor sees it, however it was started."""

    pid: int
    stdout: trio.abc.ReceiveStream
    stderr: trio.abc.ReceiveStream
    events: trio.abc.ReceiveStream

    @property
    def returncode(self) -> int | None:
        """The exit code, or -N for a death by signal N; None until known."""
        ...

    @property
    def lost(self) -> str | None:
        """Why the exit status will never be known (the template died), else None."""
        ...

    async def wait(self) -> None:
        """Until the process has exited (or its exit status is lost)."""
        ...

    def close(self) -> None:
        """Release what we hold for it (the lifeline's write end: the job dies if still alive)."""
        ...


@attrs.frozen
class StarterStatistics:
    mode: str
    # Templates restarted because one died or misbehaved (fork); standbys that died before
    # their job arrived (spawn).
    restarts: int
    last_restart_reason: str | None


class JobStarter(Protocol):
    mode: str

    async def run(self) -> None:
        """The background work (keep a template or a standby ready) until cancelled."""
        ...

    async def start_job(self, assignment: Assignment) -> JobProcess:
        """Start the job's process; raises OSError when it cannot be started."""
        ...

    def statistics(self) -> StarterStatistics: ...


def make_starter(settings: Settings, python: str = sys.executable) -> JobStarter:
    if settings.worker_start == "fork":
        return ForkServer(settings, python)
    return SpawnStandby(settings, python)


# -- fork ---------------------------------------------------------------------------------------


class _ForkedJob:
    """A child of the template. Its status arrives as an EXITED frame."""

    def __init__(self, token: int) -> None:
        self.token = token
        self.pid = 0
        self.started = trio.Event()
        self.exited = trio.Event()
        self._status: int | None = None
        self._lost: str | None = None
        self.abandoned = False
        self._held: list[int] = []  # our ends: lifeline write end (closed by close())
        self.stdout: trio.abc.ReceiveStream
        self.stderr: trio.abc.ReceiveStream
        self.events: trio.abc.ReceiveStream

    @property
    def returncode(self) -> int | None:
        return None if self._status is None else os.waitstatus_to_exitcode(self._status)

    @property
    def lost(self) -> str | None:
        return self._lost

    def set_exited(self, status: int) -> None:
        self._status = status
        self.exited.set()

    def set_lost(self, reason: str) -> None:
        self._lost = reason
        self.started.set()
        self.exited.set()

    async def wait(self) -> None:
        await self.exited.wait()

    def close(self) -> None:
        for fd in self._held:
            os.close(fd)
        self._held.clear()


class ForkServer:
    """One worker actor's template and its restarts. See the module docstring."""

    mode = "fork"

    def __init__(self, settings: Settings, python: str = sys.executable) -> None:
        self._settings = settings
        self._python = python
        self.state = ForkServerState()
        self._socket: trio.socket.SocketType | None = None
        self._ready = trio.Event()
        self._jobs: dict[int, _ForkedJob] = {}
        self._kill_template: trio.CancelScope | None = None
        self._misbehaviour: str | None = None

    @property
    def template_pid(self) -> int | None:
        return self.state.template_pid

    def statistics(self) -> StarterStatistics:
        return StarterStatistics(self.mode, self.state.restarts, self.state.last_restart_reason)

    def command(self, control_fd: int) -> list[str]:
        return [
            self._python,
            "-I",
            "-m",
            "ade.worker.template",
            "--control-fd",
            str(control_fd),
            "--nice",
            str(self._settings.worker_nice),
        ]

    async def run(self) -> None:
        failures = 0
        while True:
            started = trio.current_time()
            reason = await self._run_template()
            self._lost(reason)
            logger.warning("worker template restarted: %s", reason)
            # A template that served a while and then died is restarted at once; one that keeps
            # dying at start-up (a broken interpreter) is not restarted in a hot loop.
            failures = 0 if trio.current_time() - started > 30 else failures + 1
            await trio.sleep(_RESTART_PAUSES[min(failures, len(_RESTART_PAUSES) - 1)])

    def _lost(self, reason: str) -> None:
        self.state.template_lost(reason)
        # A launch waiting for this template waits for its replacement instead: wake it (the
        # socket is gone, so it waits again, on the new event) rather than leave it on an
        # event nobody will ever set.
        waiting, self._ready = self._ready, trio.Event()
        self._socket = None
        waiting.set()
        for job in self._jobs.values():
            job.set_lost(reason)
        self._jobs.clear()

    async def _run_template(self) -> str:
        """Run one template until it dies or misbehaves; returns why it is gone."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            async with trio.open_nursery() as nursery:
                try:
                    process: trio.Process = await nursery.start(
                        partial(
                            trio.run_process,
                            self.command(theirs.fileno()),
                            pass_fds=(theirs.fileno(),),
                            stdin=subprocess.DEVNULL,
                            cwd="/",
                            env=service_env(),
                            start_new_session=True,
                            check=False,
                            deliver_cancel=_kill_group,
                        )
                    )
                except OSError as exc:
                    return f"the template could not start: {exc.strerror or exc}"
                finally:
                    theirs.close()
                sock = trio.socket.from_stdlib_socket(ours)
                try:
                    reason = await self._serve(sock)
                    if reason == _EXITED:
                        with trio.move_on_after(1.0):  # its socket closed as it died: reap it
                            await process.wait()
                finally:
                    # Dead or misbehaving: kill its group (never its children: each leads its
                    # own group, which its supervisor kills) and stop waiting on it.
                    _killpg(process.pid)
                    nursery.cancel_scope.cancel()
                code = process.returncode
                if code is not None and reason == _EXITED:
                    reason += f" (exit status {code})"
                return reason
        finally:
            ours.close()

    async def _serve(self, sock: trio.socket.SocketType) -> str:
        """Read the template's frames until it exits or misbehaves; returns why it is gone."""
        self._misbehaviour = None
        with trio.move_on_after(_READY_TIMEOUT) as startup:
            reason = await self._read_one(sock)
        if startup.cancelled_caught:
            return f"the template was not ready within {_READY_TIMEOUT:g} s"
        if reason is not None:
            return reason
        self._socket = sock
        self._ready.set()
        try:
            with trio.CancelScope() as scope:
                self._kill_template = scope
                while True:
                    reason = await self._read_one(sock)
                    if reason is not None:
                        return reason
        finally:
            self._kill_template = None
        return self._misbehaviour or "the template was stopped"

    async def _read_one(self, sock: trio.socket.SocketType) -> str | None:
        try:
            data, ancdata, _, _ = await sock.recvmsg(_FRAME_BUFFER, socket.CMSG_SPACE(16))
        except OSError as exc:
            return f"the template's socket failed: {exc}"
        if not data and not ancdata:
            return _EXITED
        for level, kind, fds in ancdata:  # a template never sends fds: close what came
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                for fd in array.array("i", fds[: len(fds) - len(fds) % 4]):
                    os.close(fd)
        reply = self.state.on_reply(decode_frame(data), len(ancdata))
        if isinstance(reply, Misbehaved):
            return reply.reason
        if isinstance(reply, Started):
            job = self._jobs.get(reply.token)
            if job is None or job.abandoned:
                _killpg(reply.pid)  # its launch was cancelled: it must not run unsupervised
            else:
                job.pid = reply.pid
                job.started.set()
        elif isinstance(reply, Exited):
            job = self._jobs.pop(reply.token, None)
            if job is not None:
                job.set_exited(reply.status)
        else:
            assert isinstance(reply, Ready)
        return None

    def _misbehaved(self, reason: str) -> None:
        self._misbehaviour = reason
        if self._kill_template is not None:
            self._kill_template.cancel()

    async def start_job(self, assignment: Assignment) -> JobProcess:
        payload = assignment.encode()
        with trio.move_on_after(_READY_TIMEOUT):
            while self._socket is None:
                await self._ready.wait()
        sock = self._socket
        if sock is None:
            # The first template may have no restart reason yet: it is still starting.
            why = self.state.last_restart_reason or f"not ready within {_READY_TIMEOUT:g} s"
            raise OSError(f"the job's template is not running ({why})")
        pipes: list[tuple[int, int]] = []
        try:
            for _ in range(4):  # events, stdout, stderr, lifeline
                pipes.append(os.pipe())
        except OSError:
            for read_end, write_end in pipes:  # out of descriptors: keep none of them
                os.close(read_end)
                os.close(write_end)
            raise
        token = self.state.begin_launch()
        job = _ForkedJob(token)
        self._jobs[token] = job
        (events_r, events_w), (out_r, out_w), (err_r, err_w), (life_r, life_w) = pipes
        theirs = [events_w, out_w, err_w, life_r]
        ours = [events_r, out_r, err_r, life_w]
        try:
            try:
                await sock.sendmsg(
                    [encode_frame(START, token, 0, payload)],
                    [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", theirs))],
                )
            except OSError as exc:
                raise OSError(f"cannot reach the job's template: {exc}") from None
            finally:
                for fd in theirs:
                    os.close(fd)
            with trio.move_on_after(_LAUNCH_TIMEOUT):
                await job.started.wait()
            if job.lost is not None:
                raise OSError(f"the job's template process died: {job.lost}")
            if not job.started.is_set():
                self._misbehaved(f"no answer to a launch within {_LAUNCH_TIMEOUT:g} s")
                raise OSError("the job's template did not answer in time")
        except BaseException:
            job.abandoned = True  # a STARTED still to come is killed on arrival
            self._jobs.pop(token, None)
            for fd in ours:
                os.close(fd)
            raise
        job.events = trio.lowlevel.FdStream(events_r)
        job.stdout = trio.lowlevel.FdStream(out_r)
        job.stderr = trio.lowlevel.FdStream(err_r)
        job._held.append(life_w)
        return job


# -- spawn --------------------------------------------------------------------------------------


class _StandbyJob:
    """The standby interpreter, now running its job."""

    def __init__(
        self,
        process: trio.Process,
        events: trio.abc.ReceiveStream,
        lifeline_w: int,
        exited: trio.Event,
    ) -> None:
        self.pid = process.pid
        self._process = process
        assert process.stdout is not None and process.stderr is not None
        self.stdout: trio.abc.ReceiveStream = process.stdout
        self.stderr: trio.abc.ReceiveStream = process.stderr
        self.events = events
        self._lifeline_w: int | None = lifeline_w
        self._exited = exited

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    @property
    def lost(self) -> str | None:
        return None

    async def wait(self) -> None:
        await self._exited.wait()

    def close(self) -> None:
        if self._lifeline_w is not None:
            os.close(self._lifeline_w)
            self._lifeline_w = None


@attrs.define
class _Standby:
    process: trio.Process
    events_r: int
    lifeline_w: int
    exited: trio.Event


class SpawnStandby:
    """One fresh interpreter per job, started one job ahead. See the module docstring."""

    mode = "spawn"

    def __init__(self, settings: Settings, python: str = sys.executable) -> None:
        self._settings = settings
        self._python = python
        self._standby: _Standby | None = None
        self._changed = trio.Event()
        self._want = trio.Event()
        self.restarts = 0
        self.last_restart_reason: str | None = None

    def statistics(self) -> StarterStatistics:
        return StarterStatistics(self.mode, self.restarts, self.last_restart_reason)

    @property
    def waiting_pid(self) -> int | None:
        """The standby waiting for the next job, if one is."""
        return None if self._standby is None else self._standby.process.pid

    def command(self, events_fd: int, lifeline_fd: int) -> list[str]:
        return [
            self._python,
            "-I",
            "-m",
            "ade.worker",
            "--standby",
            "--events-fd",
            str(events_fd),
            "--lifeline-fd",
            str(lifeline_fd),
            "--nice",
            str(self._settings.worker_nice),
        ]

    async def run(self) -> None:
        try:
            await self._keep_one_waiting()
        finally:
            standby, self._standby = self._standby, None
            if standby is not None:  # never used: its group was killed with the nursery
                os.close(standby.events_r)
                os.close(standby.lifeline_w)

    async def _keep_one_waiting(self) -> None:
        async with trio.open_nursery() as nursery:
            failures = 0
            while True:
                if self._standby is None:
                    try:
                        self._standby = await self._spawn(nursery)
                    except OSError as exc:
                        self._note_loss(f"the standby could not start: {exc.strerror or exc}")
                        failures += 1
                        await trio.sleep(_RESTART_PAUSES[min(failures, len(_RESTART_PAUSES) - 1)])
                        continue
                    failures = 0
                    self._changed.set()
                    self._changed = trio.Event()
                standby = self._standby
                # Wait until it is taken by a job (then start the next) or dies unused.
                taken = self._want
                async with trio.open_nursery() as watch:

                    async def died(standby: _Standby = standby) -> None:
                        await standby.exited.wait()
                        watch.cancel_scope.cancel()

                    async def used(taken: trio.Event = taken) -> None:
                        await taken.wait()
                        watch.cancel_scope.cancel()

                    watch.start_soon(died)
                    watch.start_soon(used)
                if self._standby is standby:  # died before a job took it
                    self._standby = None
                    os.close(standby.events_r)
                    os.close(standby.lifeline_w)
                    self._note_loss(f"the standby exited ({standby.process.returncode})")
                    failures += 1
                    await trio.sleep(_RESTART_PAUSES[min(failures, len(_RESTART_PAUSES) - 1)])

    def _note_loss(self, reason: str) -> None:
        self.restarts += 1
        self.last_restart_reason = reason
        logger.warning("worker standby restarted: %s", reason)

    async def _spawn(self, nursery: trio.Nursery) -> _Standby:
        events_r, events_w = os.pipe()
        try:
            life_r, life_w = os.pipe()
        except OSError:
            os.close(events_r)
            os.close(events_w)
            raise
        exited = trio.Event()

        async def run_one(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            try:
                await trio.run_process(
                    self.command(events_w, life_r),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    pass_fds=(events_w, life_r),
                    cwd="/",
                    env=service_env(),
                    start_new_session=True,
                    check=False,
                    deliver_cancel=_kill_group,
                    task_status=task_status,
                )
            finally:
                exited.set()

        try:
            process: trio.Process = await nursery.start(run_one)
        except BaseException:
            os.close(events_r)
            os.close(life_w)
            raise
        finally:
            os.close(events_w)
            os.close(life_r)
        return _Standby(process, events_r, life_w, exited)

    async def start_job(self, assignment: Assignment) -> JobProcess:
        payload = assignment.encode()
        with trio.move_on_after(_READY_TIMEOUT):
            while self._standby is None:
                await self._changed.wait()
        standby = self._standby
        if standby is None:
            why = self.last_restart_reason or f"none started within {_READY_TIMEOUT:g} s"
            raise OSError(f"no standby interpreter ({why})")
        self._standby = None
        self._want.set()
        self._want = trio.Event()
        process = standby.process
        assert process.stdin is not None
        job = _StandbyJob(
            process, trio.lowlevel.FdStream(standby.events_r), standby.lifeline_w, standby.exited
        )
        try:
            await process.stdin.send_all(payload)
            await process.stdin.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # it died unused: the job ends with its exit status, as a spawn would
        except BaseException:
            _killpg(process.pid)
            job.close()
            await job.events.aclose()
            raise
        return job
