"""Every limit, with a real worker subprocess running hostile config code.

Small limits keep the suite fast: timeout 3 s, CPU 1 s, memory 256 MiB, file size 10 MiB.
Config code runs when the engine imports ``columns/name.py``; it reports to the test through
the events fd (see ``support.jobs.REPORT_PY``). "Nothing survives" is checked on the host's
/proc by a marker on each process's command line (the job directory path).
"""

from __future__ import annotations

import signal
import socket
import textwrap
from pathlib import Path

import attrs
import pytest
import trio
from support.jobs import EventLog, make_job_dir, processes_mentioning, write_package

from ade.models import JobStatus
from ade.runtime.ending import JobEnding
from ade.runtime.starters import ForkServer
from ade.runtime.supervisor import supervise_job
from ade.settings import Settings, load_settings

TIMEOUT = 3.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Small limits; a roomy wall clock so that only the timeout tests meet it (a busy machine
    must not turn a CPU, memory or file-size ending into a timeout)."""
    return load_settings(
        {},
        data_dir=tmp_path / "data",
        job_timeout_seconds=30.0,
        worker_cpu_seconds=1,
        worker_mem_mb=256,
        worker_fsize_mb=10,
    )


async def _wait_gone(marker: str, within: float) -> list[int]:
    with trio.move_on_after(within):
        while processes_mentioning(marker):
            await trio.sleep(0.02)
    return processes_mentioning(marker)


def _job(settings: Settings, tmp_path: Path, code: str, *, network: bool = False) -> Path:
    package = write_package(tmp_path / "pkg", name_module_extra=code)
    return make_job_dir(settings, package, network=network)


@pytest.mark.parametrize("ignore_sigterm", [False, True], ids=["sleeps", "ignores-sigterm"])
async def test_timeout_kills_the_whole_group_at_the_deadline(
    settings: Settings, tmp_path: Path, ignore_sigterm: bool
) -> None:
    settings = attrs.evolve(settings, job_timeout_seconds=TIMEOUT)
    job_dir = _job(
        settings,
        tmp_path,
        f"""
        import signal as _signal, time as _time
        if {ignore_sigterm!r}:
            _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)
        # A child in the same group that ignores SIGTERM too and holds the pipes open.
        if _os.fork() == 0:
            _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)
            _time.sleep(1000)
            _os._exit(0)
        _report("sleeping")
        _time.sleep(1000)
        """,
    )
    log = EventLog()
    started = trio.current_time()
    outcome = await supervise_job(settings, job_dir, on_event=log)
    elapsed = trio.current_time() - started

    assert log.of("sleeping") == [{}], outcome.diagnostics
    assert outcome.status == JobStatus.ERROR
    assert outcome.message == "timed out after 3 s"
    assert outcome.limit == "timeout"
    assert outcome.exit_signal == signal.SIGKILL
    assert TIMEOUT <= elapsed < TIMEOUT + 1.0
    # Forked processes keep the worker's command line, which names the job directory.
    assert await _wait_gone(str(tmp_path), within=TIMEOUT + 1.0 - elapsed) == []


async def test_cpu_spin_hits_the_cpu_limit(settings: Settings, tmp_path: Path) -> None:
    job_dir = _job(settings, tmp_path, "\nwhile True:\n    pass\n")
    outcome = await supervise_job(settings, job_dir, on_event=EventLog())
    assert outcome.status == JobStatus.ERROR
    assert outcome.message == "CPU limit of 1 s exceeded", outcome.diagnostics
    assert outcome.limit == "cpu"
    # The sandbox's soft limit sends SIGXCPU first; the job dies of it (mirrored to us).
    assert outcome.exit_signal == signal.SIGXCPU
    assert outcome.duration_seconds < 10


async def test_memory_hog_hits_the_memory_limit(settings: Settings, tmp_path: Path) -> None:
    job_dir = _job(
        settings,
        tmp_path,
        """
        def detect_hog(header):
            hog = []
            for _ in range(64):
                hog.append(bytearray(64 * 1024 * 1024))  # 4 GiB in total, touched
        """,
    )
    outcome = await supervise_job(settings, job_dir, on_event=EventLog())
    assert outcome.status == JobStatus.ERROR
    assert outcome.message == "memory limit of 256 MiB exceeded", outcome.diagnostics
    assert outcome.limit == "memory"
    if "memory_cgroup" in outcome.sandbox_layers:
        # Counted on real memory: the kernel's OOM killer ends the job.
        assert (outcome.exit_code, outcome.exit_signal) == (None, signal.SIGKILL)
    else:
        assert (outcome.exit_code, outcome.exit_signal) == (1, None)


async def test_memory_hog_without_a_memory_cgroup_hits_rlimit_as(
    settings: Settings, tmp_path: Path
) -> None:
    """Where no cgroup is available the sandbox falls back to RLIMIT_AS: the allocation fails
    with MemoryError inside config code and the worker reports the same limit."""
    import json
    import os

    job_dir = _job(
        settings,
        tmp_path,
        """
        def detect_hog(header):
            hog = []
            for _ in range(64):
                hog.append(bytearray(64 * 1024 * 1024))
        """,
    )
    request_path = job_dir / "run-request.json"
    request = json.loads(request_path.read_text())
    request["sandbox"]["cgroup"] = None  # as on a machine without cgroups
    os.chmod(request_path, 0o644)
    request_path.write_text(json.dumps(request))
    outcome = await supervise_job(settings, job_dir, on_event=EventLog())
    assert outcome.status == JobStatus.ERROR
    assert outcome.message == "memory limit of 256 MiB exceeded", outcome.diagnostics
    assert outcome.limit == "memory"
    assert (outcome.exit_code, outcome.exit_signal) == (1, None)
    assert "memory_cgroup" not in outcome.sandbox_layers
    assert "MemoryError: the memory limit was reached" in outcome.diagnostics


async def test_one_gib_file_write_hits_the_file_size_limit(
    settings: Settings, tmp_path: Path
) -> None:
    job_dir = _job(
        settings,
        tmp_path,
        """
        def detect_big_file(header):
            import tempfile
            chunk = bytes(1024 * 1024)
            with tempfile.NamedTemporaryFile() as f:
                for _ in range(1024):  # 1 GiB
                    f.write(chunk)
                f.flush()
        """,
    )
    outcome = await supervise_job(settings, job_dir, on_event=EventLog())
    assert outcome.status == JobStatus.ERROR
    assert outcome.message == "file size limit of 10 MiB exceeded", outcome.diagnostics
    assert outcome.limit == "fsize"
    assert outcome.exit_code == 1
    assert not (job_dir / "tmp").exists()


@pytest.mark.parametrize("start", ["spawn", "fork"])
@pytest.mark.parametrize("when", ["import", "run"])
async def test_a_file_size_limit_reads_as_that_limit_whenever_it_fires(
    settings: Settings, tmp_path: Path, nursery: trio.Nursery, when: str, start: str
) -> None:
    """While its module is being imported or later: config code writing past ADE_WORKER_FSIZE_MB
    ends with the file-size-limit message, never as an invalid package. Both ways a job's
    process starts: a fresh interpreter, and a child of the fork template (the service's
    default, ADE_WORKER_START=fork)."""
    write = """
        import tempfile as _tempfile
        with _tempfile.NamedTemporaryFile() as _f:
            for _ in range(64):  # 64 MiB against a 10 MiB limit
                _f.write(bytes(1024 * 1024))
            _f.flush()
        """
    if when == "run":
        write = "def detect_big_file(header):\n" + textwrap.indent(textwrap.dedent(write), "    ")
    job_dir = _job(settings, tmp_path, write)
    starter: ForkServer | None = None
    if start == "fork":
        starter = ForkServer(settings)
        nursery.start_soon(starter.run)
    outcome = await supervise_job(settings, job_dir, on_event=EventLog(), starter=starter)
    assert outcome.worker_start == start
    assert outcome.status == JobStatus.ERROR
    assert outcome.message == "file size limit of 10 MiB exceeded", outcome.diagnostics
    assert outcome.limit == "fsize"
    assert outcome.exit_code == 1


async def test_a_process_that_does_not_ignore_sigxfsz_dies_of_it(
    settings: Settings, tmp_path: Path
) -> None:
    """Python ignores SIGXFSZ (so it gets EFBIG); other programs die of it. Same message."""
    job_dir = _job(
        settings,
        tmp_path,
        """
        def detect_big_file(header):
            import signal, tempfile
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
            with tempfile.TemporaryFile(buffering=0) as f:
                for _ in range(1024):
                    f.write(bytes(1024 * 1024))
        """,
    )
    outcome = await supervise_job(settings, job_dir, on_event=EventLog())
    assert outcome.status == JobStatus.ERROR
    assert outcome.message == "file size limit of 10 MiB exceeded", outcome.diagnostics
    assert outcome.limit == "fsize"
    assert outcome.exit_signal == signal.SIGXFSZ


SPAWNERS = {
    # Left running by the job, in its process group.
    "grandchild": """
        if _os.fork() == 0:
            _time.sleep(1000)
            _os._exit(0)
    """,
    # Leaves the process group: killpg cannot reach it.
    "setsid": """
        if _os.fork() == 0:
            _os.setsid()
            _time.sleep(1000)
            _os._exit(0)
    """,
    # A daemon: new session, then its parent exits, so it is reparented.
    "double-fork": """
        if _os.fork() == 0:
            _os.setsid()
            if _os.fork() == 0:
                _time.sleep(1000)
                _os._exit(0)
            _os._exit(0)
    """,
}


@pytest.mark.parametrize("how", sorted(SPAWNERS))
async def test_no_process_of_the_job_survives_it(
    settings: Settings, tmp_path: Path, how: str
) -> None:
    from ade.sandbox import detect_layers

    if how != "grandchild":
        report = detect_layers()
        layers = ("pid_namespace", "pids_cgroup", "memory_cgroup")
        if not any(report.available(name) for name in layers):
            pytest.skip("no PID namespace and no cgroup on this machine: setsid escapes killpg")
    job_dir = _job(
        settings,
        tmp_path,
        "import time as _time\n" + textwrap.dedent(SPAWNERS[how]) + "_time.sleep(0.2)\n",
    )
    outcome = await supervise_job(settings, job_dir, on_event=EventLog())
    assert outcome.status == JobStatus.SUCCESS, (outcome.message, outcome.diagnostics)
    # Forked processes keep the worker's command line, which names the job directory.
    assert await _wait_gone(str(tmp_path), within=1.0) == []


NETWORK_ATTEMPTS = """
import ctypes as _ctypes, socket as _socket_mod, subprocess as _subprocess
PORT = {port}
results = {{}}
def _try(name, fn):
    try:
        fn()
        results[name] = "ok"
    except BaseException as exc:
        results[name] = type(exc).__name__
def _via_socket():
    s = _socket_mod.create_connection(("127.0.0.1", PORT), timeout=2)
    s.close()
def _via__socket():
    import _socket
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(("127.0.0.1", PORT))
    s.close()
def _via_ctypes():
    libc = _ctypes.CDLL(None, use_errno=True)
    fd = libc.socket(2, 1, 0)
    if fd < 0:
        raise OSError(_ctypes.get_errno(), "socket() refused")
    import struct
    addr = struct.pack("!HH4s8x", 2, PORT, bytes([127, 0, 0, 1]))
    addr = struct.pack("=H", 2) + addr[2:]
    if libc.connect(fd, addr, len(addr)) != 0:
        raise OSError(_ctypes.get_errno(), "connect() refused")
    _os.close(fd)
def _via_curl():
    _subprocess.run(["curl", "-sS", "--max-time", "2", f"http://127.0.0.1:{{PORT}}/"],
                    check=True, capture_output=True)
for _name, _fn in [("socket", _via_socket), ("_socket", _via__socket),
                   ("ctypes", _via_ctypes), ("curl", _via_curl)]:
    _try(_name, _fn)
_report("network", **results)
"""


async def _listener_counting(task_status: trio.TaskStatus[tuple[int, list[int]]]) -> None:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted: list[int] = []
    task_status.started((sock.getsockname()[1], accepted))
    with sock:
        while True:
            conn, _ = await sock.accept()
            accepted.append(1)
            conn.close()


@pytest.mark.parametrize("network", [False, True], ids=["network-off", "network-on"])
async def test_network_is_off_unless_the_job_asks(
    settings: Settings, tmp_path: Path, network: bool
) -> None:
    settings = attrs.evolve(settings, worker_cpu_seconds=10)  # curl attempts may take a while
    async with trio.open_nursery() as nursery:
        port, accepted = await nursery.start(_listener_counting)
        job_dir = _job(settings, tmp_path, NETWORK_ATTEMPTS.format(port=port), network=network)
        log = EventLog()
        outcome = await supervise_job(settings, job_dir, on_event=log)
        await trio.sleep(0.05)  # let the listener task count the last accept
        nursery.cancel_scope.cancel()
    assert outcome.status == JobStatus.SUCCESS, (outcome.message, outcome.diagnostics)
    [results] = log.of("network")
    # Executing programs is denied by the filesystem layer (Landlock: read, never execute),
    # whatever the network setting; without that layer curl runs and obeys the network layer.
    exec_denied = "landlock" in outcome.sandbox_layers
    if network:
        expected_curl = "PermissionError" if exec_denied else "ok"
        assert results == {"socket": "ok", "_socket": "ok", "ctypes": "ok", "curl": expected_curl}
        assert len(accepted) == list(results.values()).count("ok")
    else:
        network_layers = {"network_namespace", "seccomp"} & set(outcome.sandbox_layers)
        if not network_layers:
            pytest.skip(f"no network layer on this machine (layers: {outcome.sandbox_layers})")
        assert all(value != "ok" for value in results.values()), results
        assert accepted == []


async def test_a_job_hitting_its_limit_does_not_disturb_jobs_running_beside_it(
    settings: Settings, tmp_path: Path
) -> None:
    """Three jobs at once: one sleeps into its timeout, one spins into its CPU limit, one
    succeeds. Each gets its own ending; the killed ones leave nothing behind."""
    roomy = settings
    settings = attrs.evolve(settings, job_timeout_seconds=TIMEOUT)
    sleeper = _job(settings, tmp_path / "sleeper", "import time as _t\n_t.sleep(1000)\n")
    spinner = _job(settings, tmp_path / "spinner", "\nwhile True:\n    pass\n")
    fine = _job(settings, tmp_path / "fine", "")
    outcomes: dict[str, JobEnding] = {}

    async def run(name: str, job_dir: Path, job_settings: Settings) -> None:
        outcomes[name] = await supervise_job(job_settings, job_dir, on_event=EventLog())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "sleeper", sleeper, settings)
        nursery.start_soon(run, "spinner", spinner, roomy)
        nursery.start_soon(run, "fine", fine, roomy)
    messages = {name: outcome.message for name, outcome in outcomes.items()}
    assert messages == {
        "sleeper": "timed out after 3 s",
        "spinner": "CPU limit of 1 s exceeded",
        "fine": None,
    }
    assert (fine / "normalized.xlsx").is_file()
    assert await _wait_gone(str(tmp_path), within=1.0) == []
