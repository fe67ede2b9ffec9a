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
:mod:`ade.worker.fork_protocol`). Ahead of each job we have it fork one child (``PREPARE``, with
the child's pipes and a :class:`~ade.sandbox.spec.Preconfinement`) that confines itself as far
as it can without a job and waits on its own assignment pipe; the job's assignment goes down
that pipe, never through the template. A job that child cannot serve gets a child forked for
it alone (``START``) that confines itself completely and only then reads its request. A child
is not our child, so its exit status comes back from the template (``EXITED``). The template
is restarted — and the restart counted — when it exits, sends anything unexpected or does not
answer a launch in time; the job it was starting or running is killed (its group and cgroup)
and ends with "the job's template process died". A ``fork()`` the template cannot do (a
process limit) is answered with ``FORK_FAILED``: that job ends saying so, and the template
stays.

``spawn`` (:class:`SpawnStandby`): one fresh interpreter per job through ``trio.run_process``
— but started one job ahead: a *standby* (``python -I -m ade.worker --standby``) is imported,
confined as far as it can be without a job and waiting on stdin when the job arrives; it
receives the job's assignment there, applies the job-specific rest of its confinement, runs the
job and exits, and the next standby starts. A job it cannot serve gets a fresh standby that has
applied nothing yet.

Confined ahead (both modes, :func:`ahead_preconfinement`, :func:`unfit`): the process gets a
cgroup of its own, created and entered from here, renamed to the job's when the job is handed
over (so the supervisor, given :attr:`JobProcess.cgroup`, creates none). What is applied
before and after the job arrives: :mod:`ade.sandbox.confine`.

Either way the supervisor (:func:`ade.runtime.supervisor.supervise_job`) gets a
:class:`JobProcess`: a pid that leads the job's process group, its three pipes and a ``wait``.
"""

from __future__ import annotations

import array
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import attrs
import trio

from ade.sandbox.cgroup import (
    JobCgroup,
    add_process,
    job_cgroup_for,
    remove_dead_standby_cgroups,
    remove_job_cgroup,
    rename_job_cgroup,
)
from ade.sandbox.layers import hidden_ancestor, hidden_ancestors
from ade.sandbox.spec import (
    Preconfinement,
    SandboxSpec,
    build_spec,
    preconfinement_for,
    runtime_readonly_paths,
    standby_cgroup_name,
)
from ade.serde import converter
from ade.settings import Settings
from ade.worker.fork_protocol import (
    PREPARE,
    START,
    Assignment,
    Exited,
    ForkFailed,
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


def _restart_pause(failures: int) -> float:
    """The pause before another attempt after ``failures`` in a row (the last one repeats)."""
    return _RESTART_PAUSES[min(failures, len(_RESTART_PAUSES) - 1)]


# Bytes of a template's / standby's frame we read at once (frames are 17 bytes).
_FRAME_BUFFER = 64
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_EXITED = "the template exited"
# Numbers the standby cgroups of this service (one counter for all worker actors: two
# actors' standbys must never share a cgroup name).
_STANDBY_NUMBERS = itertools.count(1)


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


async def _either(first: trio.Event, second: trio.Event) -> None:
    """Return once either event is set: a process kept ahead dies, or a job takes it."""
    async with trio.open_nursery() as watch:

        async def wait(event: trio.Event) -> None:
            await event.wait()
            watch.cancel_scope.cancel()

        watch.start_soon(wait, first)
        watch.start_soon(wait, second)


async def _kill_group(process: trio.Process) -> None:
    """deliver_cancel for templates and standbys: the whole group, at once (field notes)."""
    _killpg(process.pid)


class JobProcess(Protocol):
    """One job's process as the supervisor sees it, however it was started."""

    pid: int
    stdout: trio.abc.ReceiveStream
    stderr: trio.abc.ReceiveStream
    events: trio.abc.ReceiveStream
    # The job's cgroup, when the starter made it (creates_job_cgroup); else None.
    cgroup: JobCgroup | None

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
    # Processes confined ahead of a job that could not serve it (the job asked for network,
    # other limits, paths their dropped uid cannot reach; a failed cgroup rename): killed, and
    # the job ran in a process confined for it alone. Not a failure; a frequent one costs speed.
    discarded: int = 0
    last_discard_reason: str | None = None


class JobStarter(Protocol):
    mode: str
    # True: the starter puts the job's process into the job's cgroup itself (JobProcess.cgroup);
    # False: the supervisor creates the cgroup before the start and moves the process in.
    creates_job_cgroup: bool

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


# -- confined ahead of the job (both modes) ----------------------------------------------------


def ahead_preconfinement(settings: Settings) -> Preconfinement:
    """What a process started ahead of its job (a spawn standby, a template's pre-forked child)
    applies to itself while it waits: everything a job of this service shares with every
    other (its settings), for a job without network access — the default. Its uid is dropped
    ahead too where the jobs' own paths need no re-exposing (the data directory is reachable
    by that uid). Its own cgroup is named for it; the job's name replaces it on assignment."""
    data = settings.data_dir
    spec = build_spec(settings, data / "jobs" / "standby", data / "venvs", False)
    cgroup = None
    if spec.cgroup is not None:
        cgroup = standby_cgroup_name(os.getpid(), next(_STANDBY_NUMBERS))
    uid_paths = None
    if spec.run_as_uid is not None:
        gid = spec.run_as_gid if spec.run_as_gid is not None else spec.run_as_uid
        where = (settings.jobs_dir, settings.venvs_dir)
        if not any(_hidden(d, spec.run_as_uid, gid) for d in where):
            uid_paths = runtime_readonly_paths()
    return preconfinement_for(spec, cgroup=cgroup, uid_paths=uid_paths)


def unfit(pre: Preconfinement, spec: SandboxSpec) -> str | None:
    """Why a process confined ahead as ``pre`` cannot run the job ``spec`` describes, or
    None. Such a process is discarded and the job gets one confined for it alone."""
    reason = pre.mismatch(spec)
    if reason is None and pre.uid_paths is not None and spec.run_as_uid is not None:
        gid = spec.run_as_gid if spec.run_as_gid is not None else spec.run_as_uid
        paths = (*spec.readonly_paths, *spec.writable_paths)
        rest = [p for p in paths if p not in pre.uid_paths]
        hidden = hidden_ancestors(rest, spec.run_as_uid, gid)
        if hidden:
            reason = (
                f"the job's paths under {', '.join(sorted(hidden))} need re-exposing for "
                f"uid {spec.run_as_uid}, which was dropped already"
            )
    return reason


def _hidden(directory: Path, uid: int, gid: int) -> bool:
    """Whether ``uid`` cannot reach ``directory`` — or, where it does not exist yet, the
    nearest directory above it that does (a job's directory will be created below)."""
    path = os.path.realpath(directory)
    while not os.path.exists(path) and path != os.path.dirname(path):
        path = os.path.dirname(path)
    return hidden_ancestor(os.path.join(path, "-"), uid, gid) is not None


def _sandbox_spec(assignment: Assignment) -> SandboxSpec | None:
    """The job's sandbox spec, or None when the assignment's cannot be read (the job process
    then reports the assignment unusable, as it always did)."""
    try:
        return converter.structure(assignment.spec, SandboxSpec)
    except Exception:  # a cattrs error of any kind: the job process names it
        return None


def _job_cgroup(spec: SandboxSpec | None) -> JobCgroup | None:
    """The cgroup of a job whose process confines itself fully (joining it itself): created
    here, or None when the spec asks for none. Raises when a cgroup layer is required."""
    if spec is None:
        return None
    required = bool({"memory_cgroup", "pids_cgroup"} & set(spec.required))
    return job_cgroup_for(spec.cgroup, spec.mem_mb, spec.max_processes, required=required)


def _place(cgroup: JobCgroup | None, pid: int) -> None:
    """Move a process started ahead of its job into its own cgroup. The process waits for
    this and never moves itself (``cgroup.await_placement``), so a failure is the process's
    end: the caller releases it and raises."""
    if cgroup is not None:
        add_process(cgroup, pid)


def _ahead_cgroup(pre: Preconfinement) -> tuple[Preconfinement, JobCgroup | None]:
    """Create the cgroup ``pre`` names for a process started ahead of its job. When that
    fails, the process is told it has none — it then reports the cgroup layers missing, and
    no job with a cgroup will be given to it (correct over fast)."""
    if pre.cgroup is None:
        return pre, None
    cgroup = job_cgroup_for(pre.cgroup, pre.mem_mb, pre.max_processes, required=False)
    if cgroup is None:
        return attrs.evolve(pre, cgroup=None), None
    return pre, cgroup


def _move_into(cgroup: JobCgroup, pid: int) -> None:
    """Move a just-started process into its cgroup from here, in a thread, overlapping its
    start-up (a cgroup v1 move waits for an RCU grace period, 6-15 ms). Its own join
    completes the move if it gets there first: a failure here only costs time."""
    try:
        add_process(cgroup, pid)
    except OSError as exc:
        logger.debug("cgroup move of %d left to the process: %s", pid, exc)


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
        self.fork_error: int | None = None  # the errno of a fork() the template could not do
        self.abandoned = False
        self._held: list[int] = []  # our ends: lifeline write end (closed by close())
        self.cgroup: JobCgroup | None = None  # the job's cgroup, the process in it
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

    def attach(self, events_r: int, out_r: int, err_r: int, lifeline_w: int) -> None:
        """Our ends of its pipes, once it is the job's."""
        self.events = trio.lowlevel.FdStream(events_r)
        self.stdout = trio.lowlevel.FdStream(out_r)
        self.stderr = trio.lowlevel.FdStream(err_r)
        self._held.append(lifeline_w)

    def close(self) -> None:
        for fd in self._held:
            os.close(fd)
        self._held.clear()


@attrs.define
class _PreparedChild:
    """A child forked ahead of its job, confining itself (``preconfinement``) and waiting for
    the assignment on the pipe whose write end we hold."""

    job: _ForkedJob
    # Ours: events, stdout, stderr (read ends), lifeline and assignment (write ends).
    fds: list[int]
    preconfinement: Preconfinement
    cgroup: JobCgroup | None

    def release(self) -> None:
        """It will never run a job: kill its group, close our ends (its lifeline too: were
        it still alive it would kill itself), remove its cgroup."""
        if self.job.pid:
            _killpg(self.job.pid)
        self.job.abandoned = True
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()
        if self.cgroup is not None:
            cgroup, self.cgroup = self.cgroup, None
            if not remove_job_cgroup(cgroup):
                logger.warning("cgroup %s of a prepared child stayed busy", cgroup.name)


class ForkServer:
    """One worker actor's template, its restarts, and its one child forked ahead of its job.
    See the module docstring."""

    mode = "fork"
    # The job's cgroup comes from here (the prepared child's own, renamed), as in spawn mode.
    creates_job_cgroup = True

    def __init__(self, settings: Settings, python: str = sys.executable) -> None:
        self._settings = settings
        self._python = python
        self.state = ForkServerState()
        self._socket: trio.socket.SocketType | None = None
        self._ready = trio.Event()
        self._jobs: dict[int, _ForkedJob] = {}
        self._kill_template: trio.CancelScope | None = None
        self._misbehaviour: str | None = None
        # One launch (START or PREPARE) in flight at a time: the template answers in order.
        self._launch_lock = trio.Lock()
        self._prepared: _PreparedChild | None = None
        self._prepared_changed = trio.Event()
        self._taken = trio.Event()
        # False once a cgroup rename failed (cgroup v2): no child is prepared ahead any more,
        # each job's child confines itself fully once forked (correct over fast).
        self._renames = True
        self.discarded = 0
        self.last_discard_reason: str | None = None

    @property
    def template_pid(self) -> int | None:
        return self.state.template_pid

    @property
    def prepared_pid(self) -> int | None:
        """The child forked ahead of its job and waiting for it, if one is."""
        return None if self._prepared is None else self._prepared.job.pid

    @property
    def prepared_preconfinement(self) -> Preconfinement | None:
        return None if self._prepared is None else self._prepared.preconfinement

    def statistics(self) -> StarterStatistics:
        return StarterStatistics(
            self.mode,
            self.state.restarts,
            self.state.last_restart_reason,
            self.discarded,
            self.last_discard_reason,
        )

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
        try:
            while True:
                started = trio.current_time()
                reason = await self._run_template()
                self._lost(reason)
                logger.warning("worker template restarted: %s", reason)
                # A template that served a while and then died is restarted at once; one that
                # keeps dying at start-up (a broken interpreter) is not restarted in a hot loop.
                failures = 0 if trio.current_time() - started > 30 else failures + 1
                await trio.sleep(_restart_pause(failures))
        finally:
            self._release_prepared()

    def _release_prepared(self) -> None:
        prepared, self._prepared = self._prepared, None
        if prepared is not None:
            prepared.release()

    def _lost(self, reason: str) -> None:
        self.state.template_lost(reason)
        # A launch waiting for this template waits for its replacement instead: wake it (the
        # socket is gone, so it waits again, on the new event) rather than leave it on an
        # event nobody will ever set.
        waiting, self._ready = self._ready, trio.Event()
        self._socket = None
        waiting.set()
        self._release_prepared()
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
                    reason = await self._serve(sock, nursery)
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

    async def _serve(self, sock: trio.socket.SocketType, nursery: trio.Nursery) -> str:
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
        nursery.start_soon(self._keep_one_prepared, sock)
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
        except ConnectionResetError:
            # It died with a frame of ours unread (a PREPARE sent as it was killed): gone all
            # the same as at end-of-file.
            return _EXITED
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
        elif isinstance(reply, ForkFailed):
            job = self._jobs.get(reply.token)
            if job is not None:
                job.fork_error = reply.errno
                job.started.set()  # wakes its launch, which fails saying why
        else:
            assert isinstance(reply, Ready)
        return None

    def _misbehaved(self, reason: str) -> None:
        self._misbehaviour = reason
        if self._kill_template is not None:
            self._kill_template.cancel()

    async def _launch(
        self, sock: trio.socket.SocketType, kind: bytes, payload: bytes, pipes: int
    ) -> tuple[_ForkedJob, list[int]]:
        """Send one START or PREPARE with ``pipes`` fresh pipes (their ends for the child)
        and wait for its STARTED. Returns the child and our ends, in the pipes' order."""
        async with self._launch_lock:
            made: list[tuple[int, int]] = []
            try:
                for _ in range(pipes):
                    made.append(os.pipe())
            except OSError:
                for read_end, write_end in made:  # out of descriptors: keep none of them
                    os.close(read_end)
                    os.close(write_end)
                raise
            token = self.state.begin_launch()
            job = _ForkedJob(token)
            self._jobs[token] = job
            # events, stdout, stderr: the child writes; lifeline, assignment: the child reads.
            theirs = [w for r, w in made[:3]] + [r for r, w in made[3:]]
            ours = [r for r, w in made[:3]] + [w for r, w in made[3:]]
            try:
                try:
                    await sock.sendmsg(
                        [encode_frame(kind, token, 0, payload)],
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
                if job.fork_error is not None:
                    raise OSError(
                        "the job's template could not fork its process: "
                        f"{os.strerror(job.fork_error)}"
                    )
                if not job.started.is_set():
                    self._misbehaved(f"no answer to a launch within {_LAUNCH_TIMEOUT:g} s")
                    raise OSError("the job's template did not answer in time")
            except BaseException:
                job.abandoned = True  # a STARTED still to come is killed on arrival
                self._jobs.pop(token, None)
                for fd in ours:
                    os.close(fd)
                raise
            return job, ours

    async def _keep_one_prepared(self, sock: trio.socket.SocketType) -> None:
        """Keep one child forked ahead of its job, confining itself and waiting, while this
        template lives (cancelled with it)."""
        failures = 0
        while self._renames:
            if self._prepared is None:
                try:
                    self._prepared = await self._prepare_one(sock)
                except OSError as exc:
                    logger.warning("could not fork a child ahead of its job: %s", exc)
                    failures += 1
                    await trio.sleep(_restart_pause(failures))
                    continue
                failures = 0
                self._prepared_changed.set()
                self._prepared_changed = trio.Event()
            prepared = self._prepared
            await _either(prepared.job.exited, self._taken)
            if self._prepared is prepared:  # died before a job took it
                self._prepared = None
                await trio.to_thread.run_sync(prepared.release)
                logger.warning(
                    "a child forked ahead of its job exited (%s)", prepared.job.returncode
                )
                failures += 1
                await trio.sleep(_restart_pause(failures))

    async def _prepare_one(self, sock: trio.socket.SocketType) -> _PreparedChild:
        pre = await trio.to_thread.run_sync(ahead_preconfinement, self._settings)
        pre, cgroup = await trio.to_thread.run_sync(_ahead_cgroup, pre)
        payload = json.dumps(converter.unstructure(pre), separators=(",", ":")).encode()
        try:
            job, ours = await self._launch(sock, PREPARE, payload, 5)
        except BaseException:
            if cgroup is not None:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(remove_job_cgroup, cgroup)
            raise
        prepared = _PreparedChild(job, ours, pre, cgroup)
        try:
            # The child waits for this before it confines itself further: it never moves
            # itself (a move racing the rename to the job's cgroup would fail).
            await trio.to_thread.run_sync(_place, cgroup, job.pid)
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(prepared.release)
            raise
        return prepared

    async def start_job(self, assignment: Assignment) -> JobProcess:
        payload = assignment.encode()
        spec = _sandbox_spec(assignment)
        with trio.move_on_after(_READY_TIMEOUT):
            while self._socket is None:
                await self._ready.wait()
        sock = self._socket
        if sock is None:
            # The first template may have no restart reason yet: it is still starting.
            why = self.state.last_restart_reason or f"not ready within {_READY_TIMEOUT:g} s"
            raise OSError(f"the job's template is not running ({why})")
        if spec is None:  # nothing to check a prepared child against: a child of its own
            return await self._start_fresh(sock, None, payload)
        if self._renames:
            with trio.move_on_after(_LAUNCH_TIMEOUT):
                while self._prepared is None:
                    await self._prepared_changed.wait()
        prepared, self._prepared = self._prepared, None
        if prepared is None:
            return await self._start_fresh(sock, spec, payload)
        try:
            job = await self._take(prepared, spec, payload)
            if job is None:
                job = await self._start_fresh(sock, spec, payload)
            return job
        finally:
            # The keeper forks the next child now, while this job runs: its cgroup move (an
            # RCU grace period) and forks are then off the next job's path even when jobs
            # come back to back (measured: waiting for this job's exit halved throughput).
            self._taken.set()
            self._taken = trio.Event()

    async def _take(
        self, prepared: _PreparedChild, spec: SandboxSpec, payload: bytes
    ) -> _ForkedJob | None:
        """Give the job to the child prepared ahead: its cgroup becomes the job's and the
        assignment goes down its pipe. None when it cannot serve the job (discarded)."""
        if prepared.job.exited.is_set():
            reason: str | None = "it exited while it waited"
        else:
            reason = unfit(prepared.preconfinement, spec)
        cgroup = None
        try:
            if reason is None and prepared.cgroup is not None and spec.cgroup is not None:
                try:
                    cgroup = await trio.to_thread.run_sync(
                        rename_job_cgroup, prepared.cgroup, spec.cgroup
                    )
                    prepared.cgroup = None
                except OSError as exc:
                    self._renames = False
                    reason = f"its cgroup could not become the job's: {exc}"
            if reason is not None:
                self.discarded += 1
                self.last_discard_reason = reason
                logger.info("a child forked ahead was discarded for a job: %s", reason)
                await trio.to_thread.run_sync(prepared.release)
                return None
            events_r, out_r, err_r, lifeline_w, assignment_w = prepared.fds
            prepared.fds = []
            job = prepared.job
            job.attach(events_r, out_r, err_r, lifeline_w)
            job.cgroup = cgroup
            async with trio.lowlevel.FdStream(assignment_w) as pipe:
                try:
                    await pipe.send_all(payload)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # it died unused: the job ends with its exit status
            return job
        except BaseException:
            prepared.release()
            if cgroup is not None:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(remove_job_cgroup, cgroup)
            raise

    async def _start_fresh(
        self, sock: trio.socket.SocketType, spec: SandboxSpec | None, payload: bytes
    ) -> _ForkedJob:
        """Fork a child that confines itself fully for this job, in a cgroup made for it
        (none for an assignment without a readable spec: the child reports it unusable)."""
        cgroup = await trio.to_thread.run_sync(_job_cgroup, spec)
        try:
            job, ours = await self._launch(sock, START, payload, 4)
        except BaseException:
            if cgroup is not None:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(remove_job_cgroup, cgroup)
            raise
        job.attach(*ours)
        job.cgroup = cgroup  # the child joins it itself, before it forks or drops its uid
        return job


# -- spawn --------------------------------------------------------------------------------------


class _StandbyJob:
    """The standby interpreter, now running its job."""

    def __init__(self, standby: _Standby, cgroup: JobCgroup | None) -> None:
        process = standby.process
        self.pid = process.pid
        self._process = process
        assert process.stdout is not None and process.stderr is not None
        self.stdout: trio.abc.ReceiveStream = process.stdout
        self.stderr: trio.abc.ReceiveStream = process.stderr
        self.events: trio.abc.ReceiveStream = trio.lowlevel.FdStream(standby.events_r)
        self.cgroup = cgroup
        self._lifeline_w: int | None = standby.lifeline_w
        self._exited = standby.exited

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
    # What it applied to itself before its job (None: all of its confinement waits for the
    # job), and the cgroup created for it (renamed to the job's when its job arrives).
    preconfinement: Preconfinement | None = None
    cgroup: JobCgroup | None = None
    released: bool = False

    def release(self) -> None:
        """Forget a standby that will never run a job: our pipe ends, its cgroup (and so
        whatever is still in it). Once only: its descriptor numbers may be reused after."""
        if self.released:
            return
        self.released = True
        os.close(self.events_r)
        os.close(self.lifeline_w)
        if self.cgroup is not None:
            cgroup, self.cgroup = self.cgroup, None
            if not remove_job_cgroup(cgroup):
                logger.warning("standby cgroup %s stayed busy", cgroup.name)


class SpawnStandby:
    """One fresh interpreter per job, started one job ahead and confined as far as it can be
    without its job. See the module docstring."""

    mode = "spawn"
    # The job's cgroup comes from here (the standby's own, renamed), not from the supervisor.
    creates_job_cgroup = True

    def __init__(self, settings: Settings, python: str = sys.executable) -> None:
        self._settings = settings
        self._python = python
        self._standby: _Standby | None = None
        self._changed = trio.Event()
        self._want = trio.Event()
        self._nursery: trio.Nursery | None = None
        # False once a cgroup rename failed (cgroup v2 has none): standbys then wait for their
        # job unconfined, as a fresh interpreter would (correct over fast).
        self._renames = True
        self.restarts = 0
        self.last_restart_reason: str | None = None
        # Standbys that could not serve the job they were given, and why the last one could not.
        self.discarded = 0
        self.last_discard_reason: str | None = None

    def statistics(self) -> StarterStatistics:
        return StarterStatistics(
            self.mode,
            self.restarts,
            self.last_restart_reason,
            self.discarded,
            self.last_discard_reason,
        )

    @property
    def waiting_pid(self) -> int | None:
        """The standby waiting for the next job, if one is."""
        return None if self._standby is None else self._standby.process.pid

    @property
    def waiting_preconfinement(self) -> Preconfinement | None:
        """What the waiting standby applied to itself before any job (None: nothing yet)."""
        return None if self._standby is None else self._standby.preconfinement

    def command(
        self, events_fd: int, lifeline_fd: int, preconfinement: Preconfinement | None = None
    ) -> list[str]:
        command = [
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
        if preconfinement is not None:
            text = json.dumps(converter.unstructure(preconfinement), separators=(",", ":"))
            command += ["--preconfine", text]
        return command

    async def run(self) -> None:
        removed = await trio.to_thread.run_sync(remove_dead_standby_cgroups)
        if removed:
            logger.info("removed standby cgroups of a dead service: %s", ", ".join(removed))
        try:
            await self._keep_one_waiting()
        finally:
            standby, self._standby = self._standby, None
            if standby is not None:  # never used: its group was killed with the nursery
                standby.release()

    async def _keep_one_waiting(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            failures = 0
            while True:
                if self._standby is None:
                    try:
                        pre = None
                        if self._renames:
                            pre = await trio.to_thread.run_sync(
                                ahead_preconfinement, self._settings
                            )
                        self._standby = await self._spawn(nursery, pre)
                    except OSError as exc:
                        self._note_loss(f"the standby could not start: {exc.strerror or exc}")
                        failures += 1
                        await trio.sleep(_restart_pause(failures))
                        continue
                    failures = 0
                    self._changed.set()
                    self._changed = trio.Event()
                standby = self._standby
                # Wait until it is taken by a job (then start the next) or dies unused.
                await _either(standby.exited, self._want)
                if self._standby is standby:  # died before a job took it
                    self._standby = None
                    await trio.to_thread.run_sync(standby.release)
                    self._note_loss(f"the standby exited ({standby.process.returncode})")
                    failures += 1
                    await trio.sleep(_restart_pause(failures))

    def _note_loss(self, reason: str) -> None:
        self.restarts += 1
        self.last_restart_reason = reason
        logger.warning("worker standby restarted: %s", reason)

    async def _spawn(self, nursery: trio.Nursery, pre: Preconfinement | None) -> _Standby:
        """Start a standby that applies ``pre`` to itself (None: nothing) and waits. Its own
        cgroup, when ``pre`` names one, is created first and the standby moved into it from
        here while its interpreter starts (the standby's own join completes the move)."""
        cgroup = None
        if pre is not None:
            pre, cgroup = await trio.to_thread.run_sync(_ahead_cgroup, pre)
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
                    self.command(events_w, life_r, pre),
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
            if cgroup is not None:
                remove_job_cgroup(cgroup)
            raise
        finally:
            os.close(events_w)
            os.close(life_r)
        standby = _Standby(process, events_r, life_w, exited, pre, cgroup)
        try:
            # Overlaps the interpreter's start-up (a cgroup v1 move waits for an RCU grace
            # period); the standby waits for it before it confines itself further.
            await trio.to_thread.run_sync(_place, cgroup, process.pid)
        except BaseException:
            _killpg(process.pid)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(standby.release)
            raise
        return standby

    async def start_job(self, assignment: Assignment) -> JobProcess:
        payload = assignment.encode()
        spec = _sandbox_spec(assignment)
        with trio.move_on_after(_READY_TIMEOUT):
            while self._standby is None:
                await self._changed.wait()
        standby = self._standby
        if standby is None or self._nursery is None:
            why = self.last_restart_reason or f"none started within {_READY_TIMEOUT:g} s"
            raise OSError(f"no standby interpreter ({why})")
        self._standby = None
        self._want.set()
        self._want = trio.Event()
        try:
            standby, cgroup = await self._hand_over(standby, spec)
        except BaseException:
            # Unless _hand_over discarded it already (and then failed to start another): its
            # pid and descriptors may belong to someone else by now.
            if not standby.released:
                _killpg(standby.process.pid)
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(standby.release)
            raise
        process = standby.process
        assert process.stdin is not None
        job = _StandbyJob(standby, cgroup)
        try:
            await process.stdin.send_all(payload)
            await process.stdin.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # it died unused: the job ends with its exit status, as a spawn would
        except BaseException:
            _killpg(process.pid)
            job.close()
            await job.events.aclose()
            if cgroup is not None:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(remove_job_cgroup, cgroup)
            raise
        return job

    async def _hand_over(
        self, standby: _Standby, spec: SandboxSpec | None
    ) -> tuple[_Standby, JobCgroup | None]:
        """The standby that will run the job, and the job's cgroup (``spec.cgroup``) it is in.

        The waiting standby when it fits the job: its own cgroup, renamed to the job's. When it
        does not (the job asks for network access, other limits, paths its dropped uid cannot
        reach — or the rename fails), it is discarded and a fresh standby that has applied
        nothing yet is started for this job, in a cgroup created for the job: correct over
        fast."""
        reason = None
        if standby.preconfinement is not None:
            reason = "its assignment has no readable sandbox spec"
            if spec is not None:
                reason = unfit(standby.preconfinement, spec)
        if (
            reason is None
            and spec is not None
            and standby.cgroup is not None
            and spec.cgroup is not None
        ):
            try:
                cgroup = await trio.to_thread.run_sync(
                    rename_job_cgroup, standby.cgroup, spec.cgroup
                )
            except OSError as exc:
                self._renames = False
                reason = f"its cgroup could not become the job's: {exc}"
            else:
                standby.cgroup = None  # the job's now: the supervisor removes it
                return standby, cgroup
        if reason is None and standby.preconfinement is not None:
            return standby, None  # no cgroup for it, none for the job (mismatch() checked)
        if reason is not None:
            self.discarded += 1
            self.last_discard_reason = reason
            logger.info("worker standby discarded for a job: %s", reason)
            _killpg(standby.process.pid)
            await trio.to_thread.run_sync(standby.release)
            assert self._nursery is not None
            standby = await self._spawn(self._nursery, None)
        # A standby that confines itself fully once assigned: the job's cgroup is made for it.
        try:
            cgroup = await trio.to_thread.run_sync(_job_cgroup, spec)
        except BaseException:
            _killpg(standby.process.pid)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(standby.release)
            raise
        if cgroup is not None:
            self._nursery.start_soon(
                partial(trio.to_thread.run_sync, _move_into, cgroup, standby.process.pid)
            )
        return standby, cgroup
