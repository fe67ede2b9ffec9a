"""Run ONE job's worker subprocess and turn however it ended into a :class:`JobEnding`.

Theory of operation
-------------------
The worker (``python -I -m ade.worker run-request.json --events-fd N --lifeline-fd M``) starts
in its own session, so it leads a fresh process group; the sandbox adds a PID namespace and a
per-job cgroup where the machine has them. Three pipes come back: the events fd (JSON lines:
progress, the sandbox layers, one final ``result``), stdout and stderr. Every pipe is read here,
by us, into a capped buffer: a config that prints 100 MB neither blocks on a full pipe nor grows
our memory.

Killing is always "everything, at once": SIGKILL to the whole process group plus the cgroup's
kill-all. trio's default (SIGTERM to the leader, 5 s grace) would let a child that ignores
SIGTERM outlive the deadline and let grandchildren survive. The kill runs

- from ``deliver_cancel`` when the wall-clock deadline fires or the caller cancels (job cancel,
  shutdown) — before the Cancelled propagates, so a cancelled job is dead when we return;
- after the leader exits, for anything it left behind (a grandchild holding a pipe open would
  otherwise keep the readers, and so the job, waiting);
- in ``finally``, whatever happened;
- and, if this process itself dies (even by SIGKILL), by the worker: it holds the read end of a
  "lifeline" pipe whose write end only we hold, and kills its own group when that pipe reaches
  end-of-file (see :func:`ade.worker.main.arm_lifeline`).

The ending is decided from, in order: launch failure, the deadline, the worker's own ``result``
line (config error, input error, MemoryError, EFBIG ...), then the exit status (SIGXCPU after
RLIMIT_CPU, SIGXFSZ, a cgroup OOM kill, any other signal). Every ending has a specific message;
exit code, signal, limit and a capped stderr tail travel alongside for diagnostics.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from ade.layout import PUBLISHED_FILES, JobLayout
from ade.models import JobStatus
from ade.outcome import fail_on_errors_message
from ade.runtime.ending import JobEnding, cap_diagnostics
from ade.runtime.starters import JobProcess, JobStarter
from ade.sandbox import SandboxSpec
from ade.sandbox.cgroup import (
    JobCgroup,
    add_process,
    job_cgroup_for,
    job_cgroup_oom_killed,
    kill_job_cgroup,
    remove_job_cgroup,
)
from ade.serde import converter
from ade.settings import Settings
from ade.worker.fork_protocol import Assignment
from ade.worker.protocol import (
    EVENT_LINE_LIMIT,
    RESULT_EVENT,
    SANDBOX_EVENT,
    Limit,
    ResultCode,
    RunRequest,
    WorkerResult,
    decode_event,
    limit_message,
    load_request,
)

__all__ = [
    "STREAM_CAP",
    "OnEvent",
    "RunObservation",
    "TailBuffer",
    "decide_ending",
    "supervise_job",
    "worker_command",
]

logger = logging.getLogger(__name__)

OnEvent = Callable[[str, dict[str, Any]], Awaitable[None]]

# Bytes of stdout/stderr kept (the tail); everything beyond is read and discarded.
STREAM_CAP = 64 * 1024
# How long the pipes may stay open after the worker exited and its group was killed. Only a
# process that escaped both the group and the cgroup can hold them; we stop waiting for it.
_PIPE_GRACE_SECONDS = 1.0
# A config can write to the events fd too: cap what it can make us forward.
_MAX_EVENTS = 10_000
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"


def worker_command(
    python: str, layout: JobLayout, events_fd: int, lifeline_fd: int | None = None
) -> list[str]:
    command = [python, "-I", "-m", "ade.worker", str(layout.request)]
    command += ["--events-fd", str(events_fd)]
    if lifeline_fd is not None:
        command += ["--lifeline-fd", str(lifeline_fd)]
    return command


class TailBuffer:
    """Keeps the last ``cap`` bytes of a stream and counts the rest."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.total = 0
        self._data = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self._data += chunk
        if len(self._data) > self.cap:
            del self._data[: len(self._data) - self.cap]

    def text(self) -> str:
        text = self._data.decode("utf-8", "replace")
        if self.total > self.cap:
            text = f"[... {self.total - self.cap} earlier bytes dropped ...]\n" + text
        return text


@attrs.define
class RunObservation:
    """Everything one run observed, filled in as it happens. :func:`decide_ending` turns it
    into a :class:`JobEnding`; kept apart so every ending can be tested without a process."""

    request: RunRequest | None = None
    launch_error: str | None = None
    timed_out: bool = False
    returncode: int | None = None
    # The worker's result line, if it wrote a well-formed one.
    result: WorkerResult | None = None
    layers: tuple[str, ...] = ()
    # The job process reported its layers: confinement finished, config code may have run.
    confined: bool = False
    oom_killed: bool = False
    escaped: bool = False
    events_dropped: int = 0
    publish_error: str | None = None
    # The fork template died while it started or ran the job: its exit status is lost.
    template_lost: str | None = None
    # How the job's process was started: "fork", "spawn" (a standby) or "spawn" (fresh).
    worker_start: str | None = None
    duration_seconds: float = 0.0
    stdout: TailBuffer = attrs.Factory(lambda: TailBuffer(STREAM_CAP))
    stderr: TailBuffer = attrs.Factory(lambda: TailBuffer(STREAM_CAP))


def _env(layout: JobLayout) -> dict[str, str]:
    """A fresh environment: nothing of the server's (tokens, database URLs) reaches config code."""
    tmp = str(layout.tmp)
    return {
        "PATH": _SAFE_PATH,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": tmp,
        "HOME": tmp,
        # Each malloc arena / BLAS thread reserves address space that counts against RLIMIT_AS.
        "MALLOC_ARENA_MAX": "2",
        "OPENBLAS_NUM_THREADS": "1",
    }


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def decide_ending(run: RunObservation, settings: Settings) -> JobEnding:
    """The specific, user-facing ending of a run. Order matters: launch failure, the deadline,
    a believable result line, then the exit status."""
    spec = run.request.sandbox if run.request is not None else None
    cpu = spec.cpu_seconds if spec else settings.worker_cpu_seconds
    mem = spec.mem_mb if spec else settings.worker_mem_mb
    fsize = spec.fsize_mb if spec else settings.worker_fsize_mb
    code = run.returncode
    exit_code = code if code is not None and code >= 0 else None
    exit_signal = -code if code is not None and code < 0 else None
    diagnostics = run.stderr.text()
    if run.escaped:
        diagnostics += "\n[ade] a process of the job kept its pipes open after the job ended\n"
    if run.events_dropped:
        diagnostics += f"\n[ade] {run.events_dropped} malformed or excess event lines dropped\n"

    def ending(
        message: str | None,
        limit: str | None = None,
        summary: dict[str, Any] | None = None,
    ) -> JobEnding:
        return JobEnding(
            status=JobStatus.SUCCESS
            if summary is not None and message is None
            else JobStatus.ERROR,
            message=message,
            exit_code=exit_code,
            exit_signal=exit_signal,
            limit=limit,
            sandbox_layers=run.layers,
            duration_seconds=run.duration_seconds,
            diagnostics=cap_diagnostics(diagnostics),
            stdout_bytes=run.stdout.total,
            stderr_bytes=run.stderr.total,
            summary=summary or {},
            worker_start=run.worker_start,
        )

    def limit_ending(limit: str, amount: float) -> JobEnding:
        return ending(limit_message(limit, amount), limit)

    result = run.result
    result_code = result.code if result is not None else None
    result_message = result.message if result is not None else ""

    if run.launch_error is not None:
        return ending(f"worker could not start: {run.launch_error}")
    if run.timed_out:
        return limit_ending(Limit.TIMEOUT, settings.job_timeout_seconds)
    if run.template_lost is not None and code is None:
        return ending(f"the job's template process died: {run.template_lost}")
    if result is not None and result.succeeded and code == 0:
        if run.publish_error is not None:
            return ending(f"the job's output could not be published: {run.publish_error}")
        summary = dict(result.summary)
        if summary.get("fails_job"):
            # The manifest's engine.fail_on_errors: the run finished (outputs published, the
            # artifact lists the issues) but its error-level issues fail the job.
            return ending(fail_on_errors_message(summary), summary=summary)
        return ending(None, summary=summary)
    if result_code in (ResultCode.BAD_REQUEST, ResultCode.SANDBOX) and not run.confined:
        return ending(f"worker could not start: {result_message}")
    if result_code == ResultCode.MEMORY:
        return limit_ending(Limit.MEMORY, mem)
    if result_code == ResultCode.FSIZE:
        return limit_ending(Limit.FSIZE, fsize)
    if (
        result_code
        in (
            ResultCode.CONFIG_ERROR,
            ResultCode.INPUT_ERROR,
            ResultCode.PACKAGE_INVALID,
            ResultCode.INTERNAL,
        )
        and code is not None
        and code > 0
    ):
        return ending(result_message)
    # No (believable) result: the exit status tells what happened.
    if exit_signal == signal.SIGXCPU:
        return limit_ending(Limit.CPU, cpu)
    if exit_signal == signal.SIGXFSZ:
        return limit_ending(Limit.FSIZE, fsize)
    if run.oom_killed:
        return limit_ending(Limit.MEMORY, mem)
    if exit_signal is not None:
        return ending(f"killed by signal {exit_signal} ({_signal_name(exit_signal)})")
    return ending(f"worker exited with code {code} without reporting a result")


def _prepare_tmp(layout: JobLayout, spec: SandboxSpec) -> None:
    """A fresh tmp/ (TMPDIR, HOME, output) owned by the uid the sandbox will run the job as."""
    if layout.tmp.exists():
        shutil.rmtree(layout.tmp)
    layout.output_dir.mkdir(parents=True)
    if spec.run_as_uid is not None:
        gid = spec.run_as_gid if spec.run_as_gid is not None else -1
        os.chown(layout.tmp, spec.run_as_uid, gid)
        os.chown(layout.output_dir, spec.run_as_uid, gid)


def _publish_outputs(layout: JobLayout, output_dir: Path) -> None:
    """Move the engine's outputs into the job directory. Only plain files with one link: config
    code could have planted a symlink or hard link to a file it must not expose."""
    for name in PUBLISHED_FILES:
        source = output_dir / name
        try:
            info = os.lstat(source)
        except FileNotFoundError:
            raise OSError(errno.ENOENT, f"the worker produced no {name}") from None
        if not (info.st_mode & 0o170000 == 0o100000) or info.st_nlink != 1:
            raise OSError(errno.EPERM, f"{name} is not a plain file")
    for name in PUBLISHED_FILES:
        target = layout.root / name
        os.replace(output_dir / name, target)
        if os.geteuid() == 0:
            # Written under the job's dropped uid; published files belong to the service.
            os.chown(target, 0, 0)
            os.chmod(target, 0o644)


def _remove_tmp(layout: JobLayout) -> None:
    """Remove tmp/ so the job directory is exactly the promised layout. A failure is logged,
    not raised: the job's ending is already decided and must still be recorded."""
    tmp = layout.tmp
    try:
        if tmp.is_symlink():
            tmp.unlink()
        elif tmp.exists():
            shutil.rmtree(tmp)
    except OSError as exc:
        logger.warning("could not remove %s: %s", tmp, exc)


def _prelaunch(
    job_dir: Path, request: RunRequest | None, create_cgroup: bool = True
) -> tuple[JobLayout, RunRequest, JobCgroup | None]:
    layout = JobLayout(job_dir.resolve(strict=True))
    if request is None:
        # A job admitted by an earlier run of the service (recovered from the store): its
        # request exists only on disk.
        request = load_request(layout.request)
    _prepare_tmp(layout, request.sandbox)
    return layout, request, _cgroup_create(request.sandbox) if create_cgroup else None


class _Group:
    """The job's processes: its process group and, when the sandbox provides one, its cgroup."""

    def __init__(self, cgroup: JobCgroup | None) -> None:
        self.pgid: int | None = None
        self.cgroup = cgroup

    def kill(self) -> None:
        if self.pgid is not None:
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.cgroup is not None:
            _cgroup_kill(self.cgroup)


async def supervise_job(
    settings: Settings,
    job_dir: Path,
    *,
    on_event: OnEvent,
    request: RunRequest | None = None,
    python: str = sys.executable,
    starter: JobStarter | None = None,
) -> JobEnding:
    """Run the worker for the job in ``job_dir`` to completion; never raises for a job failure.

    ``request`` is the job's run request as admission built it (read from ``job_dir`` when not
    given). Cancelling the caller kills the whole job (group and cgroup) before Cancelled
    propagates. ``starter`` is the worker actor's fork template or spawn standby
    (:mod:`ade.runtime.starters`); without one, a fresh interpreter (``python``, the service's
    own by default) is spawned for the job.
    """
    run = RunObservation(worker_start=starter.mode if starter is not None else "spawn")
    started = trio.current_time()
    group = _Group(None)
    layout = JobLayout(job_dir)
    try:
        try:
            # File and cgroup work, off the event loop; shielded so that a cgroup created in the
            # thread is always seen (and removed) by the finally below.
            with trio.CancelScope(shield=True):
                # A starter that keeps a process confined ahead of its job brings the job's
                # cgroup along (its own, renamed): then none is created here.
                create_cgroup = starter is None or not starter.creates_job_cgroup
                layout, run.request, group.cgroup = await trio.to_thread.run_sync(
                    _prelaunch, job_dir, request, create_cgroup
                )
        except ValueError as exc:  # run-request.json unreadable: the message names the problem
            run.launch_error = str(exc)
        except Exception as exc:  # missing job dir, unwritable tmp/, cgroup refused, ...
            run.launch_error = f"{type(exc).__name__}: {exc}"
        else:
            if starter is not None:
                await _run_started(settings, layout, starter, run, group, on_event)
            else:
                await _run_subprocess(settings, layout, python, run, group, on_event)
            if group.cgroup is not None:
                run.oom_killed = _cgroup_oom_killed(group.cgroup)
            if run.result is not None and run.result.succeeded and run.returncode == 0:
                try:
                    _publish_outputs(layout, layout.root / run.request.output_dir)
                except OSError as exc:
                    run.publish_error = exc.strerror or str(exc)
    finally:
        group.kill()
        if group.cgroup is not None:
            await _cgroup_remove(group.cgroup)
        with trio.CancelScope(shield=True):  # may run during cancellation; bounded work
            await trio.to_thread.run_sync(_remove_tmp, layout)
    run.duration_seconds = trio.current_time() - started
    return decide_ending(run, settings)


async def _run_subprocess(
    settings: Settings,
    layout: JobLayout,
    python: str,
    run: RunObservation,
    group: _Group,
    on_event: OnEvent,
) -> None:
    """Start the worker subprocess and collect its pipes until it (and its group) are gone."""

    async def kill_everything(process: trio.Process) -> None:
        # A cancel can land while nursery.start() is still spawning, before group.pgid is set
        # below: take the group from the process itself (own session, so pgid == pid).
        group.pgid = process.pid
        group.kill()

    read_fd, write_fd = os.pipe()
    child_fds = [write_fd]  # ours to close once the child has its copies
    lifeline_write: int | None = None
    proc: trio.Process | None = None
    try:
        async with trio.lowlevel.FdStream(read_fd) as events:  # owns read_fd
            # The lifeline: the child gets the read end; we hold the write end until the job is
            # over. If we die (even by SIGKILL) the kernel closes it and the worker kills its group.
            lifeline_read, lifeline_write = os.pipe()
            child_fds.append(lifeline_read)
            with trio.move_on_after(settings.job_timeout_seconds) as deadline:
                async with trio.open_nursery() as nursery:
                    try:
                        proc = await nursery.start(
                            partial(
                                trio.run_process,
                                worker_command(python, layout, write_fd, lifeline_read),
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE,
                                pass_fds=tuple(child_fds),
                                cwd=str(layout.root),
                                env=_env(layout),
                                start_new_session=True,
                                check=False,
                                deliver_cancel=kill_everything,
                            )
                        )
                    except OSError as exc:
                        run.launch_error = f"{type(exc).__name__}: {exc.strerror or exc}"
                        return
                    finally:
                        # The child has its copies; ours must go or the pipe never reaches EOF.
                        for fd in child_fds:
                            os.close(fd)
                        child_fds.clear()
                    group.pgid = proc.pid
                    if group.cgroup is not None:
                        nursery.start_soon(
                            partial(trio.to_thread.run_sync, _cgroup_add, group.cgroup, proc.pid)
                        )
                    await _collect(proc, run, group, events, on_event, nursery)
            # Only a deadline that cut the worker short is a timeout: one that fires while we
            # wait for the pipes after the worker exited (a straggler holding them) must not
            # turn a finished run into "timed out" (its outputs may be about to be published).
            if deadline.cancelled_caught and run.returncode is None:
                run.timed_out = True
            if proc is not None:
                run.returncode = proc.returncode  # also after a kill: the process is reaped
    finally:
        for fd in child_fds:
            os.close(fd)
        if lifeline_write is not None:
            os.close(lifeline_write)


async def _run_started(
    settings: Settings,
    layout: JobLayout,
    starter: JobStarter,
    run: RunObservation,
    group: _Group,
    on_event: OnEvent,
) -> None:
    """Have the worker actor's starter (fork template or spawn standby) start the job's
    process, then collect its pipes as for a spawned one. The same deadline covers the start;
    a cancel kills the group and cgroup and waits (bounded) for the exit before propagating."""
    assert run.request is not None
    assignment = Assignment(
        job_dir=str(layout.root),
        spec=converter.unstructure(run.request.sandbox),
        env=_env(layout),
    )
    job: JobProcess | None = None
    with trio.move_on_after(settings.job_timeout_seconds) as deadline:
        try:
            job = await starter.start_job(assignment)
        except OSError as exc:
            run.launch_error = str(exc)
            return
        if starter.creates_job_cgroup:
            group.cgroup = job.cgroup  # the job's process is in it already
        try:
            # The pid leads the job's process group (fork: setpgid; spawn: its own session).
            group.pgid = job.pid
            async with job.events, trio.open_nursery() as nursery:
                if group.cgroup is not None and not starter.creates_job_cgroup:
                    nursery.start_soon(
                        partial(trio.to_thread.run_sync, _cgroup_add, group.cgroup, job.pid)
                    )
                await _collect(job, run, group, job.events, on_event, nursery)
        except BaseException:
            group.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(_PIPE_GRACE_SECONDS):
                await job.wait()
            raise
        finally:
            job.close()
    if deadline.cancelled_caught:
        if job is not None:
            group.kill()
            with trio.move_on_after(_PIPE_GRACE_SECONDS):
                await job.wait()
        if run.returncode is None:
            run.timed_out = True
    if job is not None:
        run.returncode = job.returncode
        run.template_lost = job.lost


async def _collect(
    proc: trio.Process | JobProcess,
    run: RunObservation,
    group: _Group,
    events: trio.lowlevel.FdStream,
    on_event: OnEvent,
    nursery: trio.Nursery,
) -> None:
    """Read all three pipes until the worker is gone, then stop waiting for stragglers."""
    readers_done = trio.Event()
    pending = [3]

    def reader_finished() -> None:
        pending[0] -= 1
        if pending[0] == 0:
            readers_done.set()

    assert proc.stdout is not None and proc.stderr is not None
    nursery.start_soon(_pump, proc.stdout, run.stdout, reader_finished)
    nursery.start_soon(_pump, proc.stderr, run.stderr, reader_finished)
    nursery.start_soon(_read_events, events, run, on_event, reader_finished)
    await proc.wait()
    run.returncode = proc.returncode
    # Whatever the leader left behind dies now, before we wait for the pipes.
    group.kill()
    with trio.move_on_after(_PIPE_GRACE_SECONDS):
        await readers_done.wait()
    if not readers_done.is_set():
        run.escaped = True
    nursery.cancel_scope.cancel()


async def _pump(
    stream: trio.abc.ReceiveStream, buffer: TailBuffer, done: Callable[[], None]
) -> None:
    try:
        async with stream:
            while chunk := await stream.receive_some(65536):
                buffer.feed(chunk)
    finally:
        done()


async def _read_events(
    stream: trio.abc.ReceiveStream, run: RunObservation, on_event: OnEvent, done: Callable[[], None]
) -> None:
    pending = bytearray()
    forwarded = 0
    discarding = False  # inside an over-long line: drop bytes up to its newline
    try:
        while chunk := await stream.receive_some(65536):
            pending += chunk
            while True:
                newline = pending.find(b"\n")
                if newline < 0:
                    if len(pending) > EVENT_LINE_LIMIT:
                        pending.clear()
                        if not discarding:
                            run.events_dropped += 1
                        discarding = True
                    break
                line = bytes(pending[:newline])
                del pending[: newline + 1]
                if discarding:
                    discarding = False
                    continue
                decoded = decode_event(line)
                if decoded is None:
                    run.events_dropped += 1
                    continue
                event_type, detail = decoded
                if event_type == RESULT_EVENT:
                    run.result = WorkerResult.from_detail(detail)
                    if run.result is None:
                        run.events_dropped += 1
                    continue
                if event_type == SANDBOX_EVENT:
                    if run.confined:
                        # The worker reports its layers once, before config code is imported;
                        # a second report can only be config code forging the audit trail.
                        run.events_dropped += 1
                        continue
                    run.confined = True
                    layers = detail.get("layers")
                    if isinstance(layers, list) and all(isinstance(x, str) for x in layers):
                        run.layers = tuple(layers)
                if forwarded >= _MAX_EVENTS:
                    run.events_dropped += 1
                    continue
                forwarded += 1
                await on_event(event_type, detail)
    finally:
        done()


# -- per-job cgroup, through the sandbox's parent-side helpers --------------------------------


def _cgroup_create(spec: SandboxSpec) -> JobCgroup | None:
    """The job's cgroup (memory + pids limits), or None when the spec asks for none.

    A failure is fatal only when the spec requires a cgroup layer (ADE_SANDBOX=strict); in
    best-effort mode the worker finds no cgroup to join and reports the layer as missing.
    """
    required = bool({"memory_cgroup", "pids_cgroup"} & set(spec.required))
    return job_cgroup_for(spec.cgroup, spec.mem_mb, spec.max_processes, required=required)


def _cgroup_add(cgroup: JobCgroup, pid: int) -> None:
    """Move the just-started worker into its cgroup from here, in a thread, overlapping the
    interpreter's start-up (a cgroup move can wait for an RCU grace period: 6-15 ms). The
    worker's own join completes the move if it gets there first, so a failure here only costs
    time; it is logged, not raised."""
    try:
        add_process(cgroup, pid)
    except OSError as exc:
        logger.debug("cgroup move of %d left to the worker: %s", pid, exc)


def _cgroup_kill(cgroup: JobCgroup) -> None:
    try:
        kill_job_cgroup(cgroup)
    except OSError:
        pass  # the group kill already went out; removal retries the kill-all


def _cgroup_oom_killed(cgroup: JobCgroup) -> bool:
    return job_cgroup_oom_killed(cgroup)


async def _cgroup_remove(cgroup: JobCgroup) -> None:
    # Waits (briefly, in a thread) for killed members to be reaped; shielded because it runs in
    # a finally that may be reached by cancellation. A cgroup that stays busy or cannot be
    # removed is logged, not raised: the job's outcome must still be recorded.
    with trio.CancelScope(shield=True):
        try:
            removed = await trio.to_thread.run_sync(remove_job_cgroup, cgroup)
        except OSError as exc:
            logger.warning("could not remove job cgroup %s: %s", cgroup.name, exc)
            return
    if not removed:
        logger.warning("job cgroup %s stayed busy after its processes were killed", cgroup.name)
