"""The job starters with real processes: the fork template (restarts, misbehaviour, the job's
endings when it dies) and the spawn standby. The hostile-config suite runs through both too
(tests/sandbox)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import attrs
import pytest
import trio
from support.jobs import EventLog, make_job_dir, processes_mentioning, write_package

from ade.models import JobStatus
from ade.runtime.leftovers import processes_in
from ade.runtime.starters import ForkServer, SpawnStandby
from ade.runtime.supervisor import supervise_job
from ade.sandbox.spec import Preconfinement
from ade.settings import Settings, load_settings
from ade.worker.fork_protocol import Assignment


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        {},
        data_dir=tmp_path / "data",
        job_timeout_seconds=30.0,
        worker_cpu_seconds=20,
        worker_mem_mb=512,
        worker_fsize_mb=50,
    )


@pytest.fixture
async def fork_server(settings: Settings, nursery: trio.Nursery) -> AsyncIterator[ForkServer]:
    server = ForkServer(settings)
    nursery.start_soon(server.run)
    yield server
    nursery.cancel_scope.cancel()


async def _template_pid(server: ForkServer, other_than: int | None = None) -> int:
    with trio.fail_after(60):
        while server.template_pid is None or server.template_pid == other_than:
            await trio.sleep(0.01)
    return server.template_pid


async def _quiet_template_pid(server: ForkServer) -> int:
    """The template, once its child for the next job is forked and waiting: no launch in
    flight, so the template holds no pipe end of a child it is forking."""
    template = await _template_pid(server)
    with trio.fail_after(60):
        while server.prepared_pid is None:
            await trio.sleep(0.01)
    return template


def _fds_and_threads(pid: int) -> tuple[int, int]:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as f:
        threads = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    return fds, threads


SLEEPER = """
import time as _time
if _os.fork() == 0:
    _os.setsid()
    _time.sleep(1000)
    _os._exit(0)
_report("sleeping")
_time.sleep(1000)
"""


async def test_fork_mode_runs_each_job_in_a_fresh_child_of_one_template(
    settings: Settings, fork_server: ForkServer, tmp_path: Path
) -> None:
    # The job leaves a thread and a descriptor open, and reports what it was given: none of
    # it may reach the template or the next job.
    package = write_package(
        tmp_path / "pkg",
        name_module_extra="""
        import stat as _stat, threading as _threading, time as _time
        _fds = sorted(int(n) for n in _os.listdir("/proc/self/fd"))
        _report("nice", nice=_os.getpriority(_os.PRIO_PROCESS, 0))
        _report("fds", fds=_fds, sockets=[
            n for n in _fds if _os.path.exists(f"/proc/self/fd/{n}")
            and _stat.S_ISSOCK(_os.stat(f"/proc/self/fd/{n}").st_mode)
        ])
        _threading.Thread(target=_time.sleep, args=(600,), daemon=True).start()
        _kept = open(__file__)
        """,
    )
    template = await _quiet_template_pid(fork_server)
    before = _fds_and_threads(template)
    for _ in range(2):
        log = EventLog()
        ending = await supervise_job(
            settings, make_job_dir(settings, package), on_event=log, starter=fork_server
        )
        assert (ending.status, ending.message) == (JobStatus.SUCCESS, None), ending.diagnostics
        assert ending.worker_start == "fork"
        assert "seccomp" in ending.sandbox_layers
        assert log.of("nice") == [{"nice": settings.worker_nice}]
        assert settings.worker_nice == 10  # the default: below the service, which runs at 0
        # stdin/out/err, events (3), lifeline (4) and whatever the engine has open: nothing of
        # the template's (its control socket is the only socket it has).
        assert log.of("fds")[0]["fds"][:5] == [0, 1, 2, 3, 4]
        assert log.of("fds")[0]["sockets"] == []
    assert await _quiet_template_pid(fork_server) == template
    assert _fds_and_threads(template) == before
    assert before[1] == 1  # single-threaded: fork copies a consistent process
    assert fork_server.statistics().restarts == 0


async def test_a_template_that_dies_is_restarted_and_counted(
    settings: Settings, fork_server: ForkServer, tmp_path: Path
) -> None:
    first = await _template_pid(fork_server)
    os.kill(first, signal.SIGKILL)
    second = await _template_pid(fork_server, other_than=first)
    stats = fork_server.statistics()
    assert (stats.mode, stats.restarts) == ("fork", 1)
    assert stats.last_restart_reason == "the template exited (exit status -9)"
    job_dir = make_job_dir(settings, write_package(tmp_path / "pkg"))
    ending = await supervise_job(settings, job_dir, on_event=EventLog(), starter=fork_server)
    assert ending.status is JobStatus.SUCCESS, ending.diagnostics
    assert fork_server.template_pid == second


async def test_a_template_killed_mid_job_ends_that_job_and_nothing_of_it_survives(
    settings: Settings, fork_server: ForkServer, tmp_path: Path
) -> None:
    job_dir = make_job_dir(settings, write_package(tmp_path / "pkg", name_module_extra=SLEEPER))
    log = EventLog()
    template = await _template_pid(fork_server)

    async def kill_template_when_sleeping() -> None:
        while not log.of("sleeping"):
            await trio.sleep(0.01)
        os.kill(template, signal.SIGKILL)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(kill_template_when_sleeping)
        with trio.fail_after(20):
            ending = await supervise_job(settings, job_dir, on_event=log, starter=fork_server)
    assert ending.status is JobStatus.ERROR
    assert ending.message == (
        "the job's template process died: the template exited (exit status -9)"
    )
    assert processes_in(job_dir) == []
    await _template_pid(fork_server, other_than=template)
    assert fork_server.statistics().restarts == 1


async def test_the_deadline_kills_a_forked_job_and_everything_it_started(
    settings: Settings, fork_server: ForkServer, tmp_path: Path
) -> None:
    import attrs

    short = attrs.evolve(settings, job_timeout_seconds=3.0)
    job_dir = make_job_dir(short, write_package(tmp_path / "pkg", name_module_extra=SLEEPER))
    started = trio.current_time()
    ending = await supervise_job(short, job_dir, on_event=EventLog(), starter=fork_server)
    assert (ending.status, ending.message, ending.limit) == (
        JobStatus.ERROR,
        "timed out after 3 s",
        "timeout",
    )
    assert trio.current_time() - started < 8
    assert processes_in(job_dir) == []
    assert fork_server.statistics().restarts == 0


async def test_cancelling_a_forked_job_kills_it_before_cancelled_propagates(
    settings: Settings, fork_server: ForkServer, tmp_path: Path
) -> None:
    job_dir = make_job_dir(settings, write_package(tmp_path / "pkg", name_module_extra=SLEEPER))
    log = EventLog()

    async def cancel_when_sleeping(scope: trio.CancelScope) -> None:
        while not log.of("sleeping"):
            await trio.sleep(0.01)
        scope.cancel()

    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as scope:
            nursery.start_soon(cancel_when_sleeping, scope)
            await supervise_job(settings, job_dir, on_event=log, starter=fork_server)
        assert scope.cancelled_caught
    assert processes_in(job_dir) == []
    assert not (job_dir / "tmp").exists()


async def test_a_launch_abandoned_while_the_template_is_busy_does_not_cost_the_next_job(
    settings: Settings, fork_server: ForkServer, tmp_path: Path
) -> None:
    # The template answers the abandoned launch after the next one was sent (it was stopped,
    # as a template starved of CPU is): that late STARTED is no misbehaviour. Its child is
    # killed, the next job runs, and the template is neither restarted nor counted.
    job_dir = make_job_dir(settings, write_package(tmp_path / "pkg"))
    template = await _template_pid(fork_server)
    os.kill(template, signal.SIGSTOP)
    try:
        with trio.move_on_after(0.5) as abandoned:
            await fork_server.start_job(Assignment(str(tmp_path), {}, {}))
        assert abandoned.cancelled_caught

        async def resume_the_template() -> None:
            await trio.sleep(0.5)
            with contextlib.suppress(ProcessLookupError):  # it was killed: the asserts say so
                os.kill(template, signal.SIGCONT)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(resume_the_template)
            with trio.fail_after(30):
                ending = await supervise_job(
                    settings, job_dir, on_event=EventLog(), starter=fork_server
                )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(template, signal.SIGCONT)
    assert (ending.status, ending.message) == (JobStatus.SUCCESS, None), ending.diagnostics
    assert fork_server.template_pid == template
    assert fork_server.statistics().restarts == 0


async def test_a_job_waiting_for_a_template_gets_the_one_that_replaced_a_failed_start(
    settings: Settings, nursery: trio.Nursery, tmp_path: Path
) -> None:
    # The first template dies before it is ready; the job that was already waiting must be
    # launched by its replacement as soon as that one is ready (not after 60 s).
    first_start = tmp_path / "first-start"
    python = tmp_path / "python"
    python.write_text(
        f"#!/bin/sh\nif [ ! -e {first_start} ]; then touch {first_start}; sleep 1; exit 3; fi\n"
        f'exec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    server = ForkServer(settings, python=str(python))
    nursery.start_soon(server.run)
    job_dir = make_job_dir(settings, write_package(tmp_path / "pkg"))
    with trio.fail_after(30):
        ending = await supervise_job(settings, job_dir, on_event=EventLog(), starter=server)
    assert (ending.status, ending.message) == (JobStatus.SUCCESS, None), ending.diagnostics
    stats = server.statistics()
    assert (stats.restarts, stats.last_restart_reason) == (1, "the template exited (exit status 3)")


def _failing_pipe(monkeypatch: pytest.MonkeyPatch, failing_call: int) -> None:
    real_pipe, calls = os.pipe, []

    def pipe() -> tuple[int, int]:
        calls.append(None)
        if len(calls) == failing_call:
            raise OSError(errno.EMFILE, "Too many open files")
        return real_pipe()

    monkeypatch.setattr(os, "pipe", pipe)


async def test_a_launch_out_of_descriptors_fails_and_keeps_none_of_them(
    settings: Settings, fork_server: ForkServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = await _quiet_template_pid(fork_server)
    before = sorted(os.listdir("/proc/self/fd"))
    _failing_pipe(monkeypatch, 3)
    with pytest.raises(OSError, match="Too many open files"):
        await fork_server.start_job(Assignment(str(tmp_path), {}, {}))
    monkeypatch.undo()
    assert sorted(os.listdir("/proc/self/fd")) == before
    # and the template serves the next job as if nothing happened
    job_dir = make_job_dir(settings, write_package(tmp_path / "pkg"))
    ending = await supervise_job(settings, job_dir, on_event=EventLog(), starter=fork_server)
    assert ending.status is JobStatus.SUCCESS, ending.diagnostics
    assert (fork_server.template_pid, fork_server.statistics().restarts) == (template, 0)


async def test_a_standby_out_of_descriptors_fails_and_keeps_none_of_them(
    settings: Settings, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    standby = SpawnStandby(settings)
    before = sorted(os.listdir("/proc/self/fd"))
    _failing_pipe(monkeypatch, 2)
    with pytest.raises(OSError, match="Too many open files"):
        await standby._spawn(nursery, None)
    monkeypatch.undo()
    assert sorted(os.listdir("/proc/self/fd")) == before


async def test_a_job_whose_template_never_gets_ready_ends_saying_so(
    settings: Settings, nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ade.runtime.starters as starters

    monkeypatch.setattr(starters, "_READY_TIMEOUT", 1.0)
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\nexec sleep 30\n")  # starts, never says READY
    python.chmod(0o755)
    server = ForkServer(settings, python=str(python))
    nursery.start_soon(server.run)
    job_dir = make_job_dir(settings, write_package(tmp_path / "pkg"))
    with trio.fail_after(20):
        ending = await supervise_job(settings, job_dir, on_event=EventLog(), starter=server)
    assert ending.status is JobStatus.ERROR
    assert ending.message is not None
    assert "None" not in ending.message, ending.message
    assert "the job's template is not running" in ending.message, ending.message


def _server_of(
    settings: Settings, tmp_path: Path, name: str, source: str
) -> tuple[Path, ForkServer]:
    """A fork server whose template is the script ``source`` (run with the service's args)."""
    script = tmp_path / name
    script.write_text(source)
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} {script} "$@"\n')
    python.chmod(0o755)
    return script, ForkServer(settings, python=str(python))


FAKE_TEMPLATE = """
import socket, struct, sys
fd = int(sys.argv[sys.argv.index("--control-fd") + 1])
s = socket.socket(fileno=fd)
s.send(struct.pack("!cQq", b"R", 0, 4242))
s.send(struct.pack("!cQq", b"?", 0, 0))
s.recv(1)
"""


async def test_a_template_that_sends_what_it_must_not_is_replaced(
    settings: Settings, tmp_path: Path
) -> None:
    script, server = _server_of(settings, tmp_path, "fake_template.py", FAKE_TEMPLATE)
    async with trio.open_nursery() as inner:
        inner.start_soon(server.run)
        with trio.fail_after(20):
            while server.statistics().restarts < 2:
                await trio.sleep(0.01)
        inner.cancel_scope.cancel()
    assert server.statistics().last_restart_reason == "unknown frame kind b'?' from the template"
    # Each misbehaving template was killed, not left behind.
    assert processes_mentioning(str(script)) == []


FORKLESS_TEMPLATE = """
import errno, os, sys
def fork():
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
os.fork = fork  # as at a process limit: every fork() of this template fails
from ade.worker.template import main
sys.exit(main(sys.argv[sys.argv.index("ade.worker.template") + 1 :]))
"""


async def test_a_fork_the_template_cannot_do_fails_that_job_and_the_template_stays(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ade.runtime.starters as starters

    monkeypatch.setattr(starters, "_LAUNCH_TIMEOUT", 2.0)  # no child kept ahead comes
    script, server = _server_of(settings, tmp_path, "forkless_template.py", FORKLESS_TEMPLATE)
    async with trio.open_nursery() as inner:
        inner.start_soon(server.run)
        template = await _template_pid(server)
        job_dir = make_job_dir(settings, write_package(tmp_path / "pkg"))
        with trio.fail_after(30):
            ending = await supervise_job(settings, job_dir, on_event=EventLog(), starter=server)
        assert ending.status is JobStatus.ERROR
        assert ending.message is not None
        assert ending.message.endswith(
            ": the job's template could not fork its process: Resource temporarily unavailable"
        ), ending.message
        assert "Errno" not in ending.message, ending.message
        # No restart: the template answered, and it is the same process.
        assert (server.template_pid, server.statistics().restarts) == (template, 0)
        inner.cancel_scope.cancel()
    assert processes_mentioning(str(script)) == []


SERVER_SCRIPT = """
import sys
from pathlib import Path

import trio

from ade.runtime.starters import ForkServer
from ade.runtime.supervisor import supervise_job
from ade.settings import load_settings

settings = load_settings({}, data_dir=Path(sys.argv[1]), job_timeout_seconds=60.0)


async def on_event(event_type, detail):
    if event_type == "sleeping":
        print("sleeping", server.template_pid, flush=True)


server = ForkServer(settings)


async def main():
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run)
        await supervise_job(settings, Path(sys.argv[2]), on_event=on_event, starter=server)


trio.run(main)
"""


async def test_a_sigkilled_service_takes_its_forked_jobs_and_template_along(
    settings: Settings, tmp_path: Path
) -> None:
    job_dir = make_job_dir(settings, write_package(tmp_path / "pkg", name_module_extra=SLEEPER))
    async with _service_running_a_sleeper(SERVER_SCRIPT, settings, job_dir, 30, tmp_path) as (
        server,
        template,
    ):
        assert processes_in(job_dir) != []
        server.kill()
        await server.wait()
        with trio.move_on_after(5.0):
            while processes_in(job_dir) or os.path.exists(f"/proc/{template}"):
                await trio.sleep(0.02)
        assert processes_in(job_dir) == []
        assert not os.path.exists(f"/proc/{template}")


@contextlib.asynccontextmanager
async def _service_running_a_sleeper(
    script: str, settings: Settings, job_dir: Path, timeout: float, tmp_path: Path
) -> AsyncIterator[tuple[trio.Process, int]]:
    """A service process running ``script`` on the job in ``job_dir`` (SLEEPER), once it
    printed "sleeping <pid>": the process and that pid. Killed on the way out."""
    path = tmp_path / "server.py"
    path.write_text(script)
    server = await trio.lowlevel.open_process(
        [sys.executable, str(path), str(settings.data_dir), str(job_dir)],
        stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        line = b""
        with trio.fail_after(timeout):
            while not line.endswith(b"\n"):
                line += await server.stdout.receive_some(100)
        assert line.startswith(b"sleeping")
        yield server, int(line.split()[1])
    finally:
        server.kill()
        await server.wait()


async def test_spawn_mode_runs_the_job_in_the_standby_started_ahead(
    settings: Settings, nursery: trio.Nursery, tmp_path: Path
) -> None:
    standby = SpawnStandby(settings)
    nursery.start_soon(standby.run)
    with trio.fail_after(60):
        while standby.waiting_pid is None:
            await trio.sleep(0.01)
    waiting = standby.waiting_pid
    package = write_package(
        tmp_path / "pkg", name_module_extra='_report("argv", argv=_sys.argv[1:])\n'
    )
    log = EventLog()
    ending = await supervise_job(
        settings, make_job_dir(settings, package), on_event=log, starter=standby
    )
    assert (ending.status, ending.worker_start) == (JobStatus.SUCCESS, "spawn"), ending.diagnostics
    assert "seccomp" in ending.sandbox_layers
    assert log.of("argv")[0]["argv"][0] == "--events-fd"
    assert not os.path.exists(f"/proc/{waiting}")  # it ran the job and exited
    with trio.fail_after(60):
        while standby.waiting_pid is None:
            await trio.sleep(0.01)
    assert standby.waiting_pid != waiting  # the next one is already waiting
    assert standby.statistics().restarts == 0


SPAWN_SERVER_SCRIPT = """
import os
import sys
from pathlib import Path

import trio

from ade.runtime.starters import SpawnStandby
from ade.runtime.supervisor import supervise_job
from ade.settings import load_settings

settings = load_settings(
    {}, data_dir=Path(sys.argv[1]), job_timeout_seconds=60.0, worker_start="spawn"
)
server = SpawnStandby(settings)


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return f.read().split()


async def on_event(event_type, detail):
    if event_type == "sleeping":  # the job runs; wait for the next standby to be confined
        while server.waiting_pid is None or not children(server.waiting_pid):
            await trio.sleep(0.01)
        print("sleeping", server.waiting_pid, flush=True)


async def main():
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run)
        await supervise_job(settings, Path(sys.argv[2]), on_event=on_event, starter=server)


trio.run(main)
"""


async def test_a_sigkilled_service_takes_its_spawned_job_and_confined_standby_along(
    settings: Settings, tmp_path: Path
) -> None:
    job_dir = make_job_dir(settings, write_package(tmp_path / "pkg", name_module_extra=SLEEPER))
    async with _service_running_a_sleeper(SPAWN_SERVER_SCRIPT, settings, job_dir, 60, tmp_path) as (
        server,
        waiting,
    ):
        with trio.fail_after(30):  # outer, the PID namespace's init, the process for a job
            while len(_descendants(waiting)) < 2:
                await trio.sleep(0.01)
        standby = [waiting, *_descendants(waiting)]
        assert processes_in(job_dir) != []
        server.kill()
        await server.wait()
        with trio.move_on_after(5.0):
            while processes_in(job_dir) or any(os.path.exists(f"/proc/{p}") for p in standby):
                await trio.sleep(0.02)
        assert processes_in(job_dir) == []
        assert [p for p in standby if os.path.exists(f"/proc/{p}")] == []
        # The standby's cgroup outlived it; the next service's starters remove it.
        from ade.sandbox import detect_layers
        from ade.sandbox.cgroup import remove_dead_standby_cgroups

        if detect_layers().available("memory_cgroup"):
            memory_root = "/sys/fs/cgroup/memory" + _cgroups(os.getpid())["memory"]
            prefix = f"ade-standby-{server.pid}-"
            left = [n for n in os.listdir(memory_root) if n.startswith(prefix)]
            assert len(left) == 1
            assert set(left) <= set(remove_dead_standby_cgroups())
            assert not os.path.exists(os.path.join(memory_root, left[0]))


def _descendants(pid: int) -> list[int]:
    """``pid``'s children, grandchildren ... depth first (/proc/<pid>/task/*/children)."""
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children = [int(x) for x in f.read().split()]
        except FileNotFoundError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _cgroups(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/cgroup") as f:
        rows = [line.rstrip("\n").split(":", 2) for line in f]
    return {
        controller: path for _, controllers, path in rows for controller in controllers.split(",")
    }


def _ahead(starter: ForkServer | SpawnStandby) -> tuple[int | None, Preconfinement | None]:
    """The process a starter keeps ahead of its next job, and what it applies to itself."""
    if isinstance(starter, ForkServer):
        return starter.prepared_pid, starter.prepared_preconfinement
    return starter.waiting_pid, starter.waiting_preconfinement


async def _confined_ahead(starter: ForkServer | SpawnStandby) -> tuple[int, int]:
    """(the pid of the process kept ahead of the next job, the pid of its process that will
    run the job) once that process has confined itself as far as it can without a job
    (no_new_privs is its last job-independent step)."""
    with trio.fail_after(60):
        while True:
            pid = _ahead(starter)[0]
            if pid is not None and os.path.exists(f"/proc/{pid}"):
                inner = _descendants(pid)
                if inner and _status(inner[-1]).get("NoNewPrivs") == "1":
                    return pid, inner[-1]
            await trio.sleep(0.02)


def _starter(mode: str, settings: Settings) -> ForkServer | SpawnStandby:
    return ForkServer(settings) if mode == "fork" else SpawnStandby(settings)


@pytest.fixture
def reachable_data_dir() -> Iterator[Path]:
    """A data directory the jobs' uid (nobody) can reach — pytest's own tmp_path is under a
    0700 directory, which the job's uid drop must re-expose."""
    root = Path(tempfile.mkdtemp(prefix="ade-preconfine-", dir="/tmp"))
    os.chmod(root, 0o755)
    yield root / "data"
    shutil.rmtree(root)


@pytest.mark.skipif(os.geteuid() != 0, reason="the root service's layers are what is checked")
@pytest.mark.parametrize("reachable", [True, False], ids=["uid-dropped-ahead", "uid-at-job"])
@pytest.mark.parametrize("mode", ["fork", "spawn"])
async def test_the_process_kept_ahead_is_confined_before_its_job_arrives(
    mode: str,
    settings: Settings,
    nursery: trio.Nursery,
    tmp_path: Path,
    reachable_data_dir: Path,
    reachable: bool,
) -> None:
    """While it waits: its rlimits, its own cgroup, network/PID/mount/IPC namespaces,
    no_new_privs and — where the jobs' directories need no re-exposing — its uid drop. Its job
    then brings only Landlock for its paths and seccomp (and the uid drop otherwise)."""
    from ade.sandbox import NOBODY, detect_layers

    if reachable:
        settings = attrs.evolve(settings, data_dir=reachable_data_dir)
    report = detect_layers()
    standby = _starter(mode, settings)
    nursery.start_soon(standby.run)
    outer, inner = await _confined_ahead(standby)
    pre = _ahead(standby)[1]
    assert pre is not None and not pre.network
    assert (pre.uid_paths is not None) == reachable
    status = _status(inner)
    # no_new_privs set, no seccomp yet (the job's, applied last); the uid dropped ahead only
    # where the job's paths need no re-exposing, which only root can do.
    assert (status["NoNewPrivs"], status["Seccomp"]) == ("1", "0")
    uid = NOBODY if reachable else 0
    assert status["Uid"].split() == [str(uid)] * 4
    if reachable:
        assert status["CapEff"] == "0000000000000000"
    # Its own namespaces, not the service's; the PID namespace's pid 1 sits between.
    for ns, layer in (("net", "network"), ("pid", "pid"), ("mnt", "mount"), ("ipc", "ipc")):
        if report.available(f"{layer}_namespace"):
            assert os.readlink(f"/proc/{inner}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
    assert len(_descendants(outer)) == 2
    # Its rlimits are the job's.
    with open(f"/proc/{inner}/limits") as f:
        limits = f.read()
    assert f"Max cpu time              {settings.worker_cpu_seconds}" in limits
    assert "Max core file size        0" in limits
    # Its own cgroup, before any job exists: the standby's, with the job's limits.
    memory_root = None
    if report.available("memory_cgroup"):
        assert pre.cgroup is not None and pre.cgroup.startswith("ade-standby-")
        for pid in (outer, inner):
            assert _cgroups(pid)["memory"].endswith("/" + pre.cgroup)
        memory_root = "/sys/fs/cgroup/memory" + _cgroups(os.getpid())["memory"]
        with open(os.path.join(memory_root, pre.cgroup, "memory.limit_in_bytes")) as f:
            assert int(f.read()) == settings.worker_mem_mb * 1024 * 1024
    # The job: its cgroup is the standby's, renamed; the layers are all there, in order.
    job_dir = make_job_dir(settings, write_package(tmp_path / "pkg"))
    ending = await supervise_job(settings, job_dir, on_event=EventLog(), starter=standby)
    assert (ending.status, ending.worker_start) == (JobStatus.SUCCESS, mode), ending.diagnostics
    assert ending.sandbox_layers == report.available_names()
    assert not os.path.exists(f"/proc/{outer}")
    assert (standby.discarded, standby.statistics().restarts) == (0, 0), standby.last_discard_reason
    if memory_root is not None:  # renamed to the job's, then removed with the job
        leftovers = os.listdir(memory_root)
        assert pre.cgroup not in leftovers and f"ade-{job_dir.name}" not in leftovers


@pytest.mark.skipif(os.geteuid() != 0, reason="the root service's layers are what is checked")
@pytest.mark.parametrize("mode", ["fork", "spawn"])
async def test_a_process_kept_ahead_that_cannot_serve_its_job_is_discarded_for_a_fresh_one(
    mode: str, settings: Settings, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The process kept ahead has unshared its network namespace; a job allowed on the
    network gets a fresh process (a spawned interpreter, a forked child) that confines itself
    for that job — never the one kept ahead."""
    from ade.sandbox import detect_layers

    if not detect_layers().available("network_namespace"):
        pytest.skip("no network namespace here: the standby would fit the job")
    standby = _starter(mode, settings)
    nursery.start_soon(standby.run)
    outer, inner = await _confined_ahead(standby)
    package = write_package(
        tmp_path / "pkg",
        name_module_extra="_report('net', ns=_os.readlink('/proc/self/ns/net'))\n",
    )
    log = EventLog()
    ending = await supervise_job(
        settings, make_job_dir(settings, package, network=True), on_event=log, starter=standby
    )
    assert ending.status == JobStatus.SUCCESS, ending.diagnostics
    assert "network_allowed" in ending.sandbox_layers
    assert "network_namespace" not in ending.sandbox_layers
    # The job ran in the host's network namespace, so not in the discarded standby's.
    assert log.of("net")[0]["ns"] == os.readlink("/proc/self/ns/net")
    assert (standby.discarded, standby.last_discard_reason) == (
        1,
        "the job's network differs from the one applied ahead of it",
    )
    statistics = standby.statistics()
    assert (statistics.discarded, statistics.last_discard_reason) == (
        1,
        "the job's network differs from the one applied ahead of it",
    )
    assert not os.path.exists(f"/proc/{outer}") and not os.path.exists(f"/proc/{inner}")
    assert standby.statistics().restarts == 0  # a discard is not a death
    # The next standby waits confined again for the next (default) job, and runs it.
    await _confined_ahead(standby)
    ending = await supervise_job(
        settings,
        make_job_dir(settings, write_package(tmp_path / "pkg2")),
        on_event=EventLog(),
        starter=standby,
    )
    assert ending.status == JobStatus.SUCCESS, ending.diagnostics
    assert "network_namespace" in ending.sandbox_layers
    assert standby.discarded == 1


async def test_a_discarded_standby_whose_replacement_cannot_start_is_released_once(
    settings: Settings, nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The standby kept ahead is discarded for a job with network access and no fresh one can
    start (out of descriptors): the job fails saying so, and the discarded standby's pipe ends
    are closed once — a second close could hit a descriptor reused by anyone in the service."""
    from ade.sandbox import detect_layers

    if not detect_layers().available("network_namespace"):
        pytest.skip("no network namespace here: the standby would fit the job")
    standby = SpawnStandby(settings)
    nursery.start_soon(standby.run)
    await _confined_ahead(standby)
    job_dir = make_job_dir(settings, write_package(tmp_path / "pkg"), network=True)
    closed_twice: list[int] = []
    real_close = os.close

    def close(fd: int) -> None:
        try:
            real_close(fd)
        except OSError as exc:
            if exc.errno == errno.EBADF:  # closed already: seen only while nothing reused it
                closed_twice.append(fd)
            raise

    def no_pipe() -> tuple[int, int]:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(os, "close", close)
    monkeypatch.setattr(os, "pipe", no_pipe)
    with trio.fail_after(30):
        ending = await supervise_job(settings, job_dir, on_event=EventLog(), starter=standby)
    monkeypatch.undo()
    assert ending.status is JobStatus.ERROR
    assert ending.message is not None and "Too many open files" in ending.message, ending.message
    assert standby.discarded == 1
    assert closed_twice == []


def test_the_worker_imports_neither_the_cli_nor_the_api() -> None:
    code = (
        "import sys; from ade.worker.main import preload; preload(); import ade.worker.template; "
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('quart', 'hypercorn', 'trio', 'psycopg', 'h11') or m.startswith(('ade.api', 'ade.cli', "
        "'ade.commands', 'ade.client', 'ade.runtime', 'ade.store', 'ade.cluster')))))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""


async def test_the_runtime_counts_template_restarts_in_its_statistics(tmp_path: Path) -> None:
    from ade.runtime import open_runtime

    settings = load_settings({}, data_dir=tmp_path / "data", max_concurrency=2)
    async with open_runtime(settings) as runtime:
        assert runtime.statistics().worker_start == "fork"
        with trio.fail_after(30):
            while len(runtime.lifecycle.starters) < 2:
                await trio.sleep(0.01)
        servers = [s for s in runtime.lifecycle.starters if isinstance(s, ForkServer)]
        assert len(servers) == 2
        first = await _template_pid(servers[0])
        os.kill(first, signal.SIGKILL)
        await _template_pid(servers[0], other_than=first)
        stats = runtime.statistics()
        assert (stats.template_restarts, stats.last_template_restart) == (
            1,
            "the template exited (exit status -9)",
        )
    # Stopping the runtime stops its templates.
    assert all(not os.path.exists(f"/proc/{s.template_pid}") for s in servers if s.template_pid)


async def test_spawn_mode_is_what_the_runtime_reports_when_asked_for(tmp_path: Path) -> None:
    from ade.runtime import open_runtime

    settings = load_settings({}, data_dir=tmp_path / "data", worker_start="spawn")
    async with open_runtime(settings) as runtime:
        assert runtime.statistics().worker_start == "spawn"
        with trio.fail_after(30):
            while len(runtime.lifecycle.starters) < settings.max_concurrency:
                await trio.sleep(0.01)
        assert all(isinstance(s, SpawnStandby) for s in runtime.lifecycle.starters)
