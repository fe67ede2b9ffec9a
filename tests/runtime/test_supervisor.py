"""supervise_job with real worker subprocesses: success, config errors, floods, launch failures,
cancellation. The limits (timeout, CPU, memory, file size, escaping processes, network) are in
test_limits.py."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from support.jobs import EventLog, make_job_dir, processes_mentioning, write_package

from ade.models import JobStatus
from ade.runtime.leftovers import remove_leftover_cgroup
from ade.runtime.supervisor import STREAM_CAP, TailBuffer, supervise_job
from ade.sandbox.cgroup import controller_dirs
from ade.settings import Settings, load_settings
from ade.worker.protocol import load_request


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


ROSTER_ROWS: list[list[object]] = [
    ["Member roster export"],
    [],
    ["Member ID", "First Name", "Last Name", "Email", "Join Date"],
    ["M-001", "Ada", "Lovelace", "ada@example.org", "2020-01-05"],
    ["M-002", "Grace", "Hopper", "grace@example.org", "2021-03-09"],
    ["M-003", "Linus", "Torvalds", "linus@example.org", "2022-11-30"],
]


async def test_success_with_the_bundled_sample_config(settings: Settings) -> None:
    from ade.samples import ROSTER_CONFIG

    job_dir = make_job_dir(settings, ROSTER_CONFIG, rows=ROSTER_ROWS)
    log = EventLog()

    outcome = await supervise_job(settings, job_dir, on_event=log)

    assert outcome.status == JobStatus.SUCCESS, (outcome.message, outcome.diagnostics)
    assert outcome.message is None
    assert (outcome.exit_code, outcome.exit_signal, outcome.limit) == (0, None, None)
    assert outcome.sandbox_layers == tuple(log.of("sandbox")[0]["layers"])
    assert "rlimits" in outcome.sandbox_layers
    assert outcome.duration_seconds < 30
    # The job directory is exactly the promised layout (events.ndjson is the recorder's).
    assert sorted(os.listdir(job_dir)) == [
        ".venv",
        "artifact.json",
        "inputs",
        "normalized.xlsx",
        "run-request.json",
    ]
    for name in ("artifact.json", "normalized.xlsx"):
        # Published by the service: its own files, whatever uid the job ran under.
        assert (job_dir / name).stat().st_uid == os.geteuid()
    artifact = json.loads((job_dir / "artifact.json").read_text())
    assert isinstance(artifact, dict)
    assert "Ada" not in (job_dir / "artifact.json").read_text()
    passes = [d["pass"] for d in log.of("pass_finished")]
    assert passes == ["detect", "map", "transform", "validate", "write"]
    import openpyxl

    workbook = openpyxl.load_workbook(job_dir / "normalized.xlsx", read_only=True)
    rows = list(workbook.active.iter_rows(values_only=True))
    workbook.close()
    assert rows[0][:3] == ("Member ID", "First Name", "Last Name")
    assert [r[1] for r in rows[1:]] == ["Ada", "Grace", "Linus"]


async def test_config_code_error_names_file_function_and_pass_but_not_the_value(
    settings: Settings, tmp_path: Path
) -> None:
    package = write_package(
        tmp_path / "pkg",
        name_module_extra="""
        def detect_boom(values):
            raise ValueError("leaking " + "|".join(str(v) for v in values))
        """,
    )
    rows: list[list[object]] = [["Name", "Amount"], ["Zebediah-7731", 10], ["Xanthe-0042", 20]]
    job_dir = make_job_dir(settings, package, rows=rows)
    outcome = await supervise_job(settings, job_dir, on_event=EventLog())
    assert outcome.status == JobStatus.ERROR
    assert outcome.message == (
        "config code raised ValueError in columns/name.py:detect_boom during the map pass"
    )
    assert outcome.limit is None
    assert outcome.exit_code == 1
    # Diagnostics (which reach events.ndjson) show where it happened, never the values.
    assert "Zebediah" not in outcome.diagnostics and "Xanthe" not in outcome.diagnostics
    assert "columns/name.py" in outcome.diagnostics
    assert ", in detect_boom\n" in outcome.diagnostics
    assert "ValueError (message withheld: it may quote data)" in outcome.diagnostics
    assert (
        "ConfigCodeError: config code raised ValueError in columns/name.py:detect_boom"
        in outcome.diagnostics
    )
    # A failed job publishes no half output, and tmp/ is gone.
    assert sorted(os.listdir(job_dir)) == [".venv", "inputs", "run-request.json"]


async def test_interpreter_reports_on_stderr_keep_values_out_of_the_diagnostics(
    settings: Settings, tmp_path: Path
) -> None:
    """Python itself prints an exception that ends a thread, one raised in ``__del__`` and
    every warning, with their text; config code can put a cell value in any of them."""
    package = write_package(
        tmp_path / "pkg",
        name_module_extra="""
        import threading as _threading, warnings as _warnings

        # Built at run time, as a cell value would be: source lines are shown, values are not.
        _ZEB, _XAN, _QUI = ("".join(parts) for parts in (
            ("Zebe", "diah"), ("Xan", "the"), ("Quil", "lon")))

        def _leak():
            raise ValueError("leaking " + _ZEB)

        _thread = _threading.Thread(target=_leak, name="leaker")
        _thread.start()
        _thread.join()

        class _Leaky:
            def __del__(self):
                raise KeyError("leaking " + _XAN)

        _Leaky()
        _warnings.warn("leaking " + _QUI)
        """,
    )
    job_dir = make_job_dir(settings, package)
    outcome = await supervise_job(settings, job_dir, on_event=EventLog())
    assert outcome.status == JobStatus.SUCCESS, (outcome.message, outcome.diagnostics)
    for value in ("Zebediah", "Xanthe", "Quillon"):  # (the config spells them in pieces)
        assert value not in outcome.diagnostics
    assert "Exception in thread leaker:\n" in outcome.diagnostics
    assert ", in _leak\n" in outcome.diagnostics
    assert "ValueError (message withheld: it may quote data)" in outcome.diagnostics
    assert "Exception ignored in _Leaky.__del__:\n" in outcome.diagnostics
    assert "KeyError (message withheld: it may quote data)" in outcome.diagnostics
    source = (package / "columns" / "name.py").read_text().splitlines()
    warn_line = next(n for n, text in enumerate(source, 1) if "_warnings.warn(" in text)
    assert (
        f"columns/name.py:{warn_line}: UserWarning (message withheld: it may quote data)\n"
        in outcome.diagnostics
    )


async def test_a_deadline_after_the_worker_exited_is_not_a_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wall-clock deadline can fire while the supervisor waits for the pipes of a worker
    that has already exited with its result (a straggler holding stdout open): the run is
    finished, so it must end as what it was, not as "timed out" with its outputs published."""
    from ade.runtime import supervisor

    settings = load_settings({}, data_dir=tmp_path / "data", job_timeout_seconds=4.0)
    pump = supervisor._pump

    async def stdout_held_open(
        stream: trio.abc.ReceiveStream, buffer: TailBuffer, done: Callable[[], None]
    ) -> None:
        await pump(stream, buffer, lambda: None)
        await trio.sleep_forever()  # as if a process outside the group still held the pipe

    monkeypatch.setattr(supervisor, "_pump", stdout_held_open)
    monkeypatch.setattr(supervisor, "_PIPE_GRACE_SECONDS", 60.0)
    job_dir = make_job_dir(settings, write_package(tmp_path / "pkg"))
    with trio.fail_after(30):
        outcome = await supervise_job(settings, job_dir, on_event=EventLog())
    assert (outcome.status, outcome.message, outcome.limit) == (JobStatus.SUCCESS, None, None)
    assert outcome.exit_code == 0
    assert outcome.duration_seconds >= 4.0  # the deadline did fire
    assert (job_dir / "normalized.xlsx").is_file()


async def test_print_flood_is_harmless_and_capped(settings: Settings, tmp_path: Path) -> None:
    package = write_package(
        tmp_path / "pkg",
        name_module_extra="""
        import sys as _sys
        _line = "x" * 1023 + "\\n"
        for _ in range(100 * 1024):
            print(_line, end="")
            _sys.stderr.write(_line) if _ % 1024 == 0 else None
        """,
    )
    job_dir = make_job_dir(settings, package)
    outcome = await supervise_job(settings, job_dir, on_event=EventLog())
    assert outcome.status == JobStatus.SUCCESS, outcome.message
    assert outcome.stdout_bytes == 100 * 1024 * 1024
    assert outcome.stderr_bytes == 100 * 1024
    assert len(outcome.diagnostics) <= STREAM_CAP + 200
    assert (job_dir / "normalized.xlsx").is_file()


async def test_worker_could_not_start(settings: Settings, tmp_path: Path) -> None:
    job_dir = make_job_dir(settings, write_package(tmp_path / "pkg"))

    missing_python = await supervise_job(
        settings, job_dir, on_event=EventLog(), python=str(tmp_path / "no-python")
    )
    assert missing_python.status == JobStatus.ERROR
    assert missing_python.message == (
        "worker could not start: FileNotFoundError: No such file or directory"
    )
    assert missing_python.exit_code is None and missing_python.exit_signal is None

    os.chmod(job_dir / "run-request.json", 0o644)
    (job_dir / "run-request.json").write_text('{"format": 1, "job_id": 5}')
    bad_request = await supervise_job(settings, job_dir, on_event=EventLog())
    assert bad_request.status == JobStatus.ERROR
    assert bad_request.message is not None
    assert bad_request.message.startswith(
        "worker could not start: run-request.json: invalid request ("
        "required field missing @ $.workspace_id; required field missing @ $.attempt;"
    ), bad_request.message

    shutil.rmtree(job_dir)
    no_dir = await supervise_job(settings, job_dir, on_event=EventLog())
    assert no_dir.message is not None
    assert no_dir.message.startswith("worker could not start: FileNotFoundError")


async def test_worker_rejects_a_request_it_cannot_read(settings: Settings, tmp_path: Path) -> None:
    """The worker's own refusal (the supervisor's pre-check bypassed): exit 2, a result line."""
    import subprocess
    import sys

    job_dir = make_job_dir(settings, write_package(tmp_path / "pkg"))
    os.chmod(job_dir / "run-request.json", 0o644)
    (job_dir / "run-request.json").write_text("not json")
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-I",
                "-m",
                "ade.worker",
                str(job_dir / "run-request.json"),
                "--events-fd",
                str(write_fd),
            ],
            pass_fds=(write_fd,),
            capture_output=True,
            check=False,
            env={"PATH": "/usr/bin:/bin"},
        )
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as events:
            lines = events.read().splitlines()
    finally:
        pass
    assert proc.returncode == 2
    result = json.loads(lines[-1])
    assert result["type"] == "result"
    assert result["detail"]["code"] == "bad_request"
    assert result["detail"]["message"].startswith("cannot read run-request.json")
    assert proc.stdout == b""


async def test_forged_and_malformed_event_lines_are_dropped(
    settings: Settings, tmp_path: Path
) -> None:
    package = write_package(
        tmp_path / "pkg",
        name_module_extra="""
        _fd = int(_sys.argv[_sys.argv.index("--events-fd") + 1])
        _os.write(_fd, b"not json\\n" + b"y" * 200000 + b"\\n")
        _os.write(_fd, b'{"type": "BAD TYPE", "detail": {}}\\n')
        _report("hello", n=1)
        """,
    )
    job_dir = make_job_dir(settings, package)
    log = EventLog()
    outcome = await supervise_job(settings, job_dir, on_event=log)
    assert outcome.status == JobStatus.SUCCESS, outcome.message
    assert log.of("hello") == [{"n": 1}]
    assert "3 malformed or excess event lines dropped" in outcome.diagnostics


async def test_cancelling_the_caller_kills_the_job_before_cancelled_propagates(
    settings: Settings, tmp_path: Path
) -> None:
    package = write_package(
        tmp_path / "pkg",
        name_module_extra="""
        import signal as _signal, time as _time
        _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)
        _report("sleeping")
        _time.sleep(1000)
        """,
    )
    job_dir = make_job_dir(settings, package)
    log = EventLog()
    marker = str(job_dir)

    async def cancel_when_sleeping(scope: trio.CancelScope) -> None:
        while not log.of("sleeping"):
            await trio.sleep(0.01)
        scope.cancel()

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as scope:
            nursery.start_soon(cancel_when_sleeping, scope)
            await supervise_job(settings, job_dir, on_event=log)
        assert scope.cancelled_caught
    assert trio.current_time() - started < 10
    # Dead by the time supervise_job let Cancelled through: nothing of the job is left.
    assert processes_mentioning(marker) == []
    assert not (job_dir / "tmp").exists()


SERVER_SCRIPT = """
import sys
from pathlib import Path

import trio

from ade.runtime.supervisor import supervise_job
from ade.settings import load_settings

settings = load_settings({}, data_dir=Path(sys.argv[1]), job_timeout_seconds=60.0)


async def on_event(event_type, detail):
    if event_type == "sleeping":
        print("sleeping", flush=True)


trio.run(lambda: supervise_job(settings, Path(sys.argv[2]), on_event=on_event))
"""


async def test_config_code_cannot_forge_the_recorded_sandbox_layers(
    settings: Settings, tmp_path: Path
) -> None:
    """The worker reports its layers once, before any config code is imported; a second
    ``sandbox`` line on the events pipe is config code lying in the audit trail."""
    package = write_package(
        tmp_path / "pkg",
        name_module_extra="""
        _report("sandbox", layers=["forged_layer"])
        """,
    )
    job_dir = make_job_dir(settings, package, rows=[["Name", "Amount"], ["Ada", 1]])
    log = EventLog()
    outcome = await supervise_job(settings, job_dir, on_event=log)
    assert outcome.status == JobStatus.SUCCESS, (outcome.message, outcome.diagnostics)
    assert "forged_layer" not in outcome.sandbox_layers
    assert "rlimits" in outcome.sandbox_layers
    assert [event["layers"] for event in log.of("sandbox")] == [list(outcome.sandbox_layers)]


async def test_a_sigkilled_supervisor_takes_its_job_along(
    settings: Settings, tmp_path: Path
) -> None:
    """The service dies without any chance to clean up: the lifeline pipe reaches EOF and the
    worker kills its whole group (and with it the job's PID namespace)."""
    import subprocess
    import sys

    package = write_package(
        tmp_path / "pkg",
        name_module_extra="""
        import time as _time
        if _os.fork() == 0:
            _os.setsid()
            _time.sleep(1000)
            _os._exit(0)
        _report("sleeping")
        _time.sleep(1000)
        """,
    )
    job_dir = make_job_dir(settings, package)
    script = tmp_path / "server.py"
    script.write_text(SERVER_SCRIPT)
    server = await trio.lowlevel.open_process(
        [sys.executable, str(script), str(settings.data_dir), str(job_dir)],
        stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        with trio.fail_after(20):
            line = await server.stdout.receive_some(100)
        assert line.startswith(b"sleeping")
        marker = str(job_dir)
        assert processes_mentioning(marker) != []
        server.kill()
        await server.wait()
        # The dead service's cgroup for the job is left (recovery removes it), but empty. A
        # killed process drops out of /proc/*/cmdline before it leaves cgroup.procs, so both
        # are awaited: the kill is asynchronous, the end state is not negotiable.
        name = load_request(job_dir / "run-request.json").sandbox.cgroup
        procs_files = []
        if name is not None:
            _, bases, _ = controller_dirs()
            procs_files = [Path(base, name, "cgroup.procs") for base in set(bases.values())]

        def cgroup_members() -> list[str]:
            return [
                line
                for procs in procs_files
                if procs.exists()
                for line in procs.read_text().split()
            ]

        with trio.move_on_after(5.0):
            while processes_mentioning(marker) or cgroup_members():
                await trio.sleep(0.02)
        assert processes_mentioning(marker) == []
        assert cgroup_members() == []
    finally:
        server.kill()
        await server.wait()
        assert server.stdout is not None
        await server.stdout.aclose()
        remove_leftover_cgroup(job_dir.name)


async def test_no_file_descriptor_outlives_a_run(settings: Settings, tmp_path: Path) -> None:
    job_dir = make_job_dir(settings, write_package(tmp_path / "pkg"))
    await supervise_job(settings, job_dir, on_event=EventLog())  # warm-up: trio's own fds
    before = sorted(os.listdir("/proc/self/fd"))
    for python in (None, str(tmp_path / "no-python")):
        job_dir = make_job_dir(settings, write_package(tmp_path / f"pkg-{python is None}"))
        if python is None:
            outcome = await supervise_job(settings, job_dir, on_event=EventLog())
            assert outcome.status == JobStatus.SUCCESS
        else:
            outcome = await supervise_job(settings, job_dir, on_event=EventLog(), python=python)
            assert outcome.message is not None and "could not start" in outcome.message
    assert sorted(os.listdir("/proc/self/fd")) == before


async def test_config_requirements_are_importable_inside_the_sandbox(
    settings: Settings, tmp_path: Path
) -> None:
    """prepare_config installs requirements.txt into venvs/<id>/site-packages; the confined
    worker imports them through the job's .venv link."""
    from support.jobs import build_wheel

    wheel = build_wheel(tmp_path / "wheels", "adereqdep", "def answer():\n    return 42\n")
    package = write_package(
        tmp_path / "pkg",
        name_module_extra="""
        import adereqdep as _dep
        _report("dependency", answer=_dep.answer(), file=_dep.__file__)
        """,
        extra_files={"requirements.txt": f"{wheel}\n"},
    )
    job_dir = make_job_dir(settings, package)
    log = EventLog()
    outcome = await supervise_job(settings, job_dir, on_event=log)
    assert outcome.status == JobStatus.SUCCESS, (outcome.message, outcome.diagnostics)
    [report] = log.of("dependency")
    assert report["answer"] == 42
    assert report["file"] == str(job_dir / ".venv" / "site-packages" / "adereqdep" / "__init__.py")


async def test_the_worker_waits_for_non_daemon_threads_as_python_does(
    settings: Settings, tmp_path: Path
) -> None:
    """The worker skips interpreter finalization for speed, but not Python's exit semantics."""
    package = write_package(
        tmp_path / "pkg",
        name_module_extra="""
        import builtins as _builtins, threading as _threading, time as _time

        # Set by hooks/end.py: the thread reports only after the run's last pass (waiting a
        # fixed time instead raced with slow passes on a busy machine).
        _builtins.ade_test_run_ended = _threading.Event()

        def _late():
            _builtins.ade_test_run_ended.wait()
            _time.sleep(0.3)
            _report("thread_done")

        _threading.Thread(target=_late).start()
        """,
        manifest_changes={"hooks": {"on_job_end": ["hooks/end.py"]}},
        extra_files={
            "hooks/end.py": "import builtins\n\n\n"
            "def on_job_end(*, tables, summary):\n"
            "    builtins.ade_test_run_ended.set()\n"
        },
    )
    job_dir = make_job_dir(settings, package)
    log = EventLog()
    outcome = await supervise_job(settings, job_dir, on_event=log)
    assert outcome.status == JobStatus.SUCCESS, outcome.message
    assert log.of("thread_done") == [{}]
    assert [t for t, _ in log.events][-1] == "thread_done"


async def test_an_unreadable_input_is_named_by_its_uploaded_filename(
    settings: Settings, tmp_path: Path
) -> None:
    from support.jobs import queued_job, store_document

    from ade.configs.prepare import prepare_config
    from ade.runtime.jobdir import create_job_dir

    config_id = prepare_config(write_package(tmp_path / "pkg"), settings.venvs_dir).config_id
    doc = store_document(settings, "ws", "Q3 report.xlsx", b"this is not a spreadsheet")
    job_dir, _ = create_job_dir(settings, queued_job(config_id, doc), [doc])
    outcome = await supervise_job(settings, job_dir, on_event=EventLog())
    assert outcome.status == JobStatus.ERROR
    assert outcome.message is not None
    assert outcome.message.startswith("input 'Q3 report.xlsx' is not a spreadsheet")
    assert (outcome.exit_code, outcome.limit) == (1, None)
    assert "InputError: input 'Q3 report.xlsx'" in outcome.diagnostics
