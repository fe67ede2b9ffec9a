"""decide_ending and classify_failure without processes: every ending's exact message.

The process tests (test_supervisor.py, test_limits.py) prove the endings happen for real on
this machine; these pin the decision table, including endings this machine's sandbox makes
unreachable (RLIMIT_AS MemoryError when a memory cgroup exists, a plain SIGKILL, ...).
"""

from __future__ import annotations

import errno
import signal
from pathlib import Path

import pytest

from ade.errors import ConfigCodeError, InputError, PackageInvalid, PackageProblem
from ade.models import JobStatus
from ade.runtime.supervisor import RunObservation, TailBuffer, decide_ending
from ade.sandbox import SandboxSpec
from ade.settings import load_settings
from ade.worker.main import classify_failure
from ade.worker.protocol import RequestInput, RunRequest, WorkerResult

SETTINGS = load_settings({}, job_timeout_seconds=2.5, worker_cpu_seconds=9, worker_mem_mb=99)
SPEC = SandboxSpec(
    job_dir="/j",
    readonly_paths=(),
    writable_paths=("/j/tmp",),
    cpu_seconds=3,
    mem_mb=256,
    fsize_mb=10,
    max_files=64,
    max_processes=8,
    network=False,
)
REQUEST = RunRequest(
    job_id="j",
    workspace_id="w",
    attempt=1,
    config_id="c",
    inputs=(RequestInput("inputs/001-d.xlsx", "a.xlsx", "d"),),
    runtime_network_access=False,
    sandbox=SPEC,
)


def observe(**fields: object) -> RunObservation:
    run = RunObservation(request=REQUEST, duration_seconds=1.25)
    for name, value in fields.items():
        setattr(run, name, value)
    return run


def error(code: str, message: str = "") -> WorkerResult:
    return WorkerResult(code, message)


@pytest.mark.parametrize(
    ("fields", "message", "limit", "exit_code", "exit_signal"),
    [
        (
            {"launch_error": "FileNotFoundError: No such file or directory"},
            "worker could not start: FileNotFoundError: No such file or directory",
            None,
            None,
            None,
        ),
        ({"timed_out": True, "returncode": -9}, "timed out after 2.5 s", "timeout", None, 9),
        (
            {"returncode": 1, "result": error("config_error", "config code raised KeyError in x")},
            "config code raised KeyError in x",
            None,
            1,
            None,
        ),
        (
            {"returncode": 1, "result": error("input_error", "input 'a.xlsx' cannot be read")},
            "input 'a.xlsx' cannot be read",
            None,
            1,
            None,
        ),
        (
            {"returncode": 1, "result": error("memory")},
            "memory limit of 256 MiB exceeded",
            "memory",
            1,
            None,
        ),
        (
            {"returncode": 1, "result": error("fsize")},
            "file size limit of 10 MiB exceeded",
            "fsize",
            1,
            None,
        ),
        ({"returncode": -24}, "CPU limit of 3 s exceeded", "cpu", None, 24),
        ({"returncode": -25}, "file size limit of 10 MiB exceeded", "fsize", None, 25),
        (
            {"returncode": -9, "oom_killed": True},
            "memory limit of 256 MiB exceeded",
            "memory",
            None,
            9,
        ),
        ({"returncode": -9}, "killed by signal 9 (SIGKILL)", None, None, 9),
        ({"returncode": -11}, "killed by signal 11 (SIGSEGV)", None, None, 11),
        (
            {"returncode": 2, "result": error("bad_request", "run-request.json: invalid")},
            "worker could not start: run-request.json: invalid",
            None,
            2,
            None,
        ),
        (
            {"returncode": 3, "result": error("sandbox", "the sandbox could not be applied (x)")},
            "worker could not start: the sandbox could not be applied (x)",
            None,
            3,
            None,
        ),
        # After confinement a "sandbox" result is not a launch failure: the exit status rules.
        (
            {"returncode": 3, "confined": True, "oom_killed": True, "result": error("sandbox")},
            "memory limit of 256 MiB exceeded",
            "memory",
            3,
            None,
        ),
        (
            {"returncode": 0},
            "worker exited with code 0 without reporting a result",
            None,
            0,
            None,
        ),
        # Config code forged a success line, then died: the exit status wins.
        (
            {"returncode": -6, "result": WorkerResult("success")},
            "killed by signal 6 (SIGABRT)",
            None,
            None,
            6,
        ),
        (
            {
                "returncode": 0,
                "result": WorkerResult("success"),
                "publish_error": "x",
            },
            "the job's output could not be published: x",
            None,
            0,
            None,
        ),
    ],
)
def test_every_ending_has_its_message(
    fields: dict[str, object],
    message: str,
    limit: str | None,
    exit_code: int | None,
    exit_signal: int | None,
) -> None:
    outcome = decide_ending(observe(**fields), SETTINGS)
    assert outcome.status == JobStatus.ERROR
    assert outcome.message == message
    assert outcome.limit == limit
    assert (outcome.exit_code, outcome.exit_signal) == (exit_code, exit_signal)
    assert outcome.duration_seconds == 1.25


def test_success_carries_the_summary_and_layers() -> None:
    run = observe(
        returncode=0,
        result=WorkerResult("success", summary={"rows_written": 3}),
        layers=("rlimits", "seccomp"),
    )
    run.stdout.feed(b"printed by config code\n")
    outcome = decide_ending(run, SETTINGS)
    assert outcome.status == JobStatus.SUCCESS
    assert outcome.message is None
    assert outcome.summary == {"rows_written": 3}
    assert outcome.sandbox_layers == ("rlimits", "seccomp")
    assert outcome.stdout_bytes == 23


def test_limits_without_a_request_come_from_settings() -> None:
    outcome = decide_ending(RunObservation(returncode=-24), SETTINGS)
    assert outcome.message == "CPU limit of 9 s exceeded"


def test_tail_buffer_keeps_the_end_and_counts_everything() -> None:
    buffer = TailBuffer(10)
    for chunk in (b"0123456789", b"abcdef", b"XYZ"):
        buffer.feed(chunk)
    assert buffer.total == 19
    assert buffer.text() == "[... 9 earlier bytes dropped ...]\n9abcdefXYZ"


def _raised_inside_config(exc: BaseException) -> ConfigCodeError:
    """What the engine does: ConfigCodeError raised 'from None' inside the except block."""
    try:
        try:
            raise exc
        except BaseException as inner:
            raise ConfigCodeError(
                "columns/x.py", "detect_x", "map", type(inner).__name__, "tb"
            ) from None
    except ConfigCodeError as wrapped:
        return wrapped


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (MemoryError(), "memory", "memory limit of 256 MiB exceeded"),
        (_raised_inside_config(MemoryError()), "memory", "memory limit of 256 MiB exceeded"),
        (
            _raised_inside_config(OSError(errno.EFBIG, "File too large")),
            "fsize",
            "file size limit of 10 MiB exceeded",
        ),
        (OSError(errno.EFBIG, "File too large"), "fsize", "file size limit of 10 MiB exceeded"),
        (
            _raised_inside_config(ValueError("cell value 42")),
            "config_error",
            "config code raised ValueError in columns/x.py:detect_x during the map pass",
        ),
        (
            InputError("input 'a.xlsx' is not a spreadsheet"),
            "input_error",
            "input 'a.xlsx' is not a spreadsheet",
        ),
        (
            PackageInvalid([PackageProblem("columns/x.py", "importing it raised ImportError")]),
            "package_invalid",
            "config package is invalid (1 problem(s)): "
            "columns/x.py: importing it raised ImportError",
        ),
        (SystemExit(3), "config_error", "config code called sys.exit() during the run"),
        (
            KeyError("cell value 42"),
            "internal",
            "internal error in the worker (KeyError); see the job diagnostics",
        ),
    ],
)
def test_worker_classifies_failures_without_leaking_exception_text(
    exc: BaseException, code: str, message: str
) -> None:
    got = classify_failure(exc, REQUEST)
    assert (got.code, got.message) == (code, message)
    assert "42" not in got.message


def test_signal_numbers_are_the_platform_ones() -> None:
    assert (signal.SIGXCPU, signal.SIGXFSZ) == (24, 25)
    assert Path("/proc").is_dir()
