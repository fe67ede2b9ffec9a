"""The worker's entry point: confine, run the engine, report over the events fd.

Channels (why three): the events fd carries progress and exactly one final ``result`` line, as
JSON lines; stdout belongs to config code (a ``print()`` there is harmless — the supervisor caps
and discards it); stderr carries tracebacks for the capped diagnostics (which reach
events.ndjson): frames and exception types only, never a foreign exception's text, which may
quote cell values (see :func:`safe_traceback`).

Exit status (:class:`~ade.worker.protocol.ExitStatus`): 0 after a ``success`` result, 1 after an
``error`` result, 2 when the request could not be read, 3 when the sandbox could not be applied.
A death by signal (CPU limit, kill) leaves no result line; the supervisor reads the signal
instead. The wire format of all of it is :mod:`ade.worker.protocol`.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

from ade.layout import REQUEST_FILE
from ade.sandbox.spec import Preconfinement, SandboxSpec
from ade.worker.fork_protocol import Assignment
from ade.worker.protocol import (
    EVENT_LINE_LIMIT,
    RESULT_EVENT,
    SANDBOX_EVENT,
    ExitStatus,
    Limit,
    ResultCode,
    RunRequest,
    WorkerResult,
    encode_event,
    limit_message,
    load_request,
)

if TYPE_CHECKING:
    from ade.sandbox.confine import Prepared

__all__ = [
    "arm_lifeline",
    "classify_failure",
    "main",
    "preload",
    "run_assignment",
    "safe_traceback",
    "wait_for_assignment",
]

_SUMMARY_LIMIT = 16 * 1024


class _Events:
    """Writes whole lines to the events fd; never raises into the engine (a progress event must
    not fail a job because the supervisor went away)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.broken = False

    def result(self, result: WorkerResult) -> None:
        self.emit(RESULT_EVENT, result.to_detail())

    def emit(self, event_type: str, detail: dict[str, Any]) -> None:
        if self.broken:
            return
        line = encode_event(event_type, detail)
        if len(line) > EVENT_LINE_LIMIT:
            line = encode_event(event_type, {"truncated": True})
        try:
            self._stream.write(line)
            self._stream.flush()
        except OSError:
            self.broken = True


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def classify_failure(exc: BaseException, request: RunRequest) -> WorkerResult:
    """The result for an exception that ended the run.

    Limits win over the wrapper: the engine wraps whatever config code raised in
    ConfigCodeError, but a MemoryError or EFBIG underneath it is the sandbox's limit firing.
    The message never contains ``str(exc)`` of a foreign exception (it may quote cell values).
    """
    from ade.errors import ConfigCodeError, InputError, PackageInvalid

    chain = _chain(exc)
    # The engine reports config exceptions as ConfigCodeError(error_type=...) and keeps the
    # original as __context__; either way tells a limit that fired inside config code.
    if any(
        isinstance(e, MemoryError)
        or (isinstance(e, ConfigCodeError) and e.error_type == "MemoryError")
        for e in chain
    ):
        return WorkerResult(
            ResultCode.MEMORY,
            limit_message(Limit.MEMORY, request.sandbox.mem_mb),
            {"limit": Limit.MEMORY},
        )
    if any(isinstance(e, OSError) and e.errno == errno.EFBIG for e in chain):
        return WorkerResult(
            ResultCode.FSIZE,
            limit_message(Limit.FSIZE, request.sandbox.fsize_mb),
            {"limit": Limit.FSIZE},
        )
    if isinstance(exc, ConfigCodeError):
        return WorkerResult(ResultCode.CONFIG_ERROR, exc.message, dict(exc.details or {}))
    if isinstance(exc, InputError):
        return WorkerResult(ResultCode.INPUT_ERROR, exc.message)
    if isinstance(exc, PackageInvalid):
        return WorkerResult(ResultCode.PACKAGE_INVALID, exc.message, {"problems": exc.details})
    if isinstance(exc, SystemExit):
        return WorkerResult(
            ResultCode.CONFIG_ERROR,
            "config code called sys.exit() during the run",
            {"error_type": "SystemExit"},
        )
    return WorkerResult(
        ResultCode.INTERNAL,
        f"internal error in the worker ({type(exc).__name__}); see the job diagnostics",
        {"error_type": type(exc).__name__},
    )


def _describe(exc: BaseException) -> str:
    """The last line of a traceback entry, without foreign exception text.

    ADE's own errors carry messages written to be safe (file, function, pass, input name). Any
    other exception's text may quote a cell value (``ValueError(f"bad {value}")``), so only its
    type — and for OSError the errno name — is shown.
    """
    from ade.errors import AdeError

    name = type(exc).__qualname__
    if isinstance(exc, AdeError):
        return f"{name}: {exc.message}"
    if isinstance(exc, OSError) and exc.errno in errno.errorcode:
        return f"{name} [{errno.errorcode[exc.errno]}] (message withheld: it may quote data)"
    return f"{name} (message withheld: it may quote data)"


def safe_traceback(exc: BaseException) -> str:
    """A traceback for the diagnostics: every frame (file, line, function, source line) of every
    chained exception, oldest first, but no exception text that could carry cell values.

    The engine reports config failures as ConfigCodeError raised ``from None`` while handling
    the config's own exception, which stays reachable as ``__context__``: its frames (the
    config's file and line) are exactly what the config author needs.
    """
    parts: list[str] = []
    for position, item in enumerate(reversed(_chain(exc))):
        if position:
            parts.append("\nwhich led to:\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_list(traceback.extract_tb(item.__traceback__)))
        parts.append(_describe(item) + "\n")
    return "".join(parts)


def _install_safe_hooks() -> None:
    """Make the interpreter's own reports on stderr as careful as :func:`safe_traceback`.

    Python prints an exception that ends a thread, an exception raised in ``__del__`` and every
    warning with its text — and config code can raise ``ValueError(f"bad {value}")`` in a
    thread or ``warnings.warn(f"odd {value}")``. stderr becomes the diagnostics in
    events.ndjson, so these reports keep their frames and types but withhold the text.
    """
    import threading
    import types
    import warnings

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return  # as Python's own hook: a thread ending with sys.exit() is not an error
        name = args.thread.name if args.thread is not None else "?"
        if args.exc_value is None:
            sys.stderr.write(f"Exception in thread {name}: {args.exc_type.__qualname__}\n")
        else:
            sys.stderr.write(f"Exception in thread {name}:\n" + safe_traceback(args.exc_value))

    def unraisable_hook(args: Any) -> None:
        # A function (``__del__``) or class is named; any other object only by its type: its
        # repr could show data.
        obj = args.object
        if isinstance(obj, (types.FunctionType, types.MethodType, type)):
            where = f" in {obj.__qualname__}"
        elif obj is not None:
            where = f" in a {type(obj).__qualname__} object"
        else:
            where = ""
        if args.exc_value is None:
            sys.stderr.write(f"Exception ignored{where}: {args.exc_type.__qualname__}\n")
        else:
            sys.stderr.write(f"Exception ignored{where}:\n" + safe_traceback(args.exc_value))

    def show_warning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        stream = file if file is not None else sys.stderr
        try:
            stream.write(
                f"{filename}:{lineno}: {category.__qualname__} "
                "(message withheld: it may quote data)\n"
            )
        except (OSError, ValueError):
            pass  # as Python's own: a closed stderr loses the warning, not the job

    threading.excepthook = thread_hook
    sys.unraisablehook = unraisable_hook
    warnings.showwarning = show_warning


def _summary(result: object) -> dict[str, Any]:
    """The engine's summary numbers, if they fit in one small line."""
    import json

    from ade.serde import converter

    try:
        raw = converter.unstructure(result)
        text = json.dumps(raw, default=str)
    except Exception:
        return {}
    if not isinstance(raw, dict) or len(text) > _SUMMARY_LIMIT:
        return {}
    # Output paths point into tmp/output, which the supervisor empties when it publishes.
    return {k: v for k, v in raw.items() if not k.endswith("_path")}


def _warm_up_before_confinement() -> None:
    """Load the host files trusted libraries read lazily, while they are still readable.

    The filesystem allow-list (Landlock) hides /etc; openpyxl builds a ``MimeTypes()`` at import,
    which reads /etc/mime.types. Initialised here, it is cached and never read again.
    """
    import mimetypes

    mimetypes.init()


def _confine(spec: SandboxSpec, events: _Events, prepared: Prepared | None = None) -> bool:
    """Apply the job's sandbox — all of it, or the job-specific rest of a process ``prepared``
    ahead of its job; on failure report it and return False (config code never runs)."""
    from ade.sandbox.confine import confine_with_report, finish, report_missing

    _warm_up_before_confinement()
    try:
        if prepared is None:
            layers = report_missing(confine_with_report(spec))
        else:
            layers = report_missing(finish(spec, prepared))
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        events.result(
            WorkerResult(
                ResultCode.SANDBOX,
                f"the sandbox could not be applied ({type(exc).__name__}: {exc})",
            )
        )
        return False
    events.emit(SANDBOX_EVENT, {"layers": list(layers)})
    _install_safe_hooks()
    return True


def _run(request: RunRequest, job_dir: Path, events: _Events) -> int:
    if not _confine(request.sandbox, events):
        return ExitStatus.SANDBOX
    return _run_engine(request, job_dir, events)


def _run_engine(request: RunRequest, job_dir: Path, events: _Events) -> int:
    # Temp files (openpyxl's write-only mode makes some) and HOME stay inside the job directory.
    tmp = job_dir / request.tmp_dir
    os.environ["TMPDIR"] = str(tmp)
    os.environ["HOME"] = str(tmp)
    tempfile.tempdir = str(tmp)
    # The snapshot is shared by every job of this config: never write __pycache__ into it.
    sys.dont_write_bytecode = True
    if request.site_packages:
        # Appended, not prepended: a config's requirements cannot shadow the engine's libraries.
        sys.path.append(str(job_dir / request.site_packages))

    try:
        from ade.engine import run_engine

        result = run_engine(
            [job_dir / item.path for item in request.inputs],
            job_dir / request.snapshot,
            job_dir / request.output_dir,
            input_names=[item.name for item in request.inputs],
            on_progress=events.emit,
            memory_limit_mb=request.sandbox.mem_mb,
        )
    except BaseException as exc:
        failure = classify_failure(exc, request)
        # Drop the frames (and whatever big objects they hold) before reporting a MemoryError.
        trace = safe_traceback(exc) if failure.code != ResultCode.MEMORY else ""
        del exc
        sys.stderr.write(trace or "MemoryError: the memory limit was reached\n")
        events.result(failure)
        return ExitStatus.FAILED
    events.result(WorkerResult(ResultCode.SUCCESS, summary=_summary(result)))
    return ExitStatus.SUCCESS


def arm_lifeline(fd: int) -> None:
    """Die with the supervisor, even when it is SIGKILLed.

    ``fd`` is the read end of a pipe whose only write end the supervisor holds; the kernel closes
    it when the supervisor dies, however it dies. We ask for SIGIO on that fd (owner: this
    process) and, on end-of-file, SIGKILL our whole process group; with a PID namespace the
    namespace's init dies with us and takes every process of the job along.

    Why a signal and not a watcher thread: the sandbox's Landlock and seccomp filters bind the
    thread that applies them; a thread started before confinement would stay unconfined inside
    the job process wherever confine cannot fork. Why not PR_SET_PDEATHSIG: trio starts
    processes from a worker thread, and the death signal fires when that *thread* exits.
    """

    def on_sigio(signum: int, frame: object) -> None:
        try:
            data = os.read(fd, 1)
        except BlockingIOError:
            return  # readable for another reason; the supervisor never writes
        except OSError:
            data = b""
        if data == b"":
            os.killpg(0, signal.SIGKILL)

    os.set_blocking(fd, False)
    signal.signal(signal.SIGIO, on_sigio)
    fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)
    on_sigio(signal.SIGIO, None)  # the supervisor may have died before we armed


def _join_non_daemon_threads() -> None:
    threading = sys.modules.get("threading")
    if threading is None:
        return
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join()


def main(argv: list[str] | None = None) -> int:
    """Returns the exit status when the job never started; after a run it ends the process
    itself (``os._exit``) with 0 or 1."""
    parser = argparse.ArgumentParser(prog="python -I -m ade.worker")
    parser.add_argument("request", type=Path, nargs="?", help="the job's run-request.json")
    parser.add_argument(
        "--standby",
        action="store_true",
        help="preload, then take the job's assignment from stdin (ADE_WORKER_START=spawn)",
    )
    parser.add_argument("--events-fd", type=int, required=True, help="fd for JSON-line events")
    parser.add_argument(
        "--lifeline-fd",
        type=int,
        default=None,
        help="pipe that reaches EOF when the supervisor dies",
    )
    parser.add_argument(
        "--nice", type=int, default=None, help="CPU priority to start at (the standby's)"
    )
    parser.add_argument(
        "--preconfine",
        default=None,
        help="the standby's job-independent confinement (JSON Preconfinement), applied "
        "before it waits for its assignment",
    )
    args = parser.parse_args(argv)
    if args.nice is not None:
        from ade.sandbox.layers import set_cpu_priority

        set_cpu_priority(args.nice)
    if args.standby:
        wait_for_assignment(args.events_fd, args.lifeline_fd, args.preconfine)
    if args.request is None:
        parser.error("the run request is required without --standby")
    if args.lifeline_fd is not None:
        arm_lifeline(args.lifeline_fd)
    try:
        stream = os.fdopen(args.events_fd, "wb")
    except OSError as exc:
        sys.stderr.write(f"ade.worker: events fd {args.events_fd} unusable: {exc}\n")
        return ExitStatus.BAD_REQUEST
    events = _Events(stream)
    try:
        request = load_request(args.request)
    except ValueError as exc:
        sys.stderr.write(f"ade.worker: {exc}\n")
        events.result(WorkerResult(ResultCode.BAD_REQUEST, str(exc)))
        return ExitStatus.BAD_REQUEST
    code = _run(request, args.request.resolve().parent, events)
    _exit_after_run(code)


def _exit_after_run(code: int) -> NoReturn:
    # Skip interpreter finalization (tearing down openpyxl, lxml, ... takes tens of ms): every
    # output is closed and the result is on the pipe; only the standard streams need a flush.
    # Python's own exit waits for non-daemon threads; so do we, so that config code behaves
    # as it would anywhere else (a thread that never ends still meets the wall-clock limit).
    _join_non_daemon_threads()
    for standard_stream in (sys.stdout, sys.stderr):
        try:
            standard_stream.flush()
        except (OSError, ValueError):
            pass  # a config closed or broke its own stdout: nothing left to lose
    os._exit(code)


def preload() -> None:
    """Import, ahead of any job, what every job uses: the engine (openpyxl included), the
    sandbox and the converter — trusted library code only, never a config's. The fork
    template does this once and forks per job; the spawn standby once per job, before it
    knows its job. Also loads the host files libraries read lazily (:func:`
    _warm_up_before_confinement`), while they are readable."""
    import gc

    # The engine loads its spreadsheet libraries lazily (a spawned worker confines itself first):
    # here they are what a job would otherwise import, ~100 ms of it, so they load ahead too.
    import olefile
    import openpyxl
    import openpyxl.utils.datetime
    import python_calamine

    import ade.engine
    import ade.engine._calamine
    import ade.sandbox.confine
    import ade.sandbox.layers
    import ade.serde  # noqa: F401

    del olefile, openpyxl, python_calamine
    _warm_up_libraries()

    _warm_up_before_confinement()
    # Every fork after this (the template's per job, the PID namespace's in confine) shares the
    # imported heap copy-on-write; a garbage collection walking it would write to every page
    # and copy it all. Frozen objects are never collected or touched: a tiny job's engine run
    # in a forked child measured 52 ms without this and 24 ms with it (same run).
    gc.freeze()


def _warm_up_libraries() -> None:
    """Do once, ahead of the jobs, the first-use work libraries do lazily: cattrs generates
    (and caches) its structuring code per class on first use, openpyxl initialises its
    descriptors and style tables on the first workbook it loads. In a job these cost ~60 ms
    of a tiny job's ~85 ms engine run. Only ADE's own classes and a workbook openpyxl writes
    here, in memory: no config code, no job data."""
    import io
    import warnings

    import openpyxl

    from ade.engine import Artifact, EngineResult
    from ade.serde import converter
    from ade.worker.protocol import RunRequest

    converter.get_structure_hook(RunRequest)
    converter.get_structure_hook(SandboxSpec)
    converter.get_unstructure_hook(Artifact)
    converter.get_unstructure_hook(EngineResult)
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["warm-up", 1, 2.5])
    buffer = io.BytesIO()
    book.save(buffer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = openpyxl.load_workbook(buffer, read_only=True, data_only=True, keep_links=False)
    for worksheet in loaded.worksheets:
        for _ in worksheet.iter_rows(values_only=True):
            pass
    loaded.close()


def run_assignment(
    data: bytes,
    events_fd: int,
    lifeline_fd: int | None,
    prepared: Prepared | None = None,
) -> NoReturn:
    """Run the one job described by ``data`` (an :class:`Assignment`) in this process.

    The order is the point: the lifeline first (die with the service), then the job's own
    environment and directory, then the confinement — the WHOLE of it, or for a standby
    ``prepared`` ahead of its job (lifeline already armed) the job-specific rest — and only
    then the run request and the job's inputs are read. Used by the forked child of a
    template and by the spawn standby; both received ``data`` from the service, not from the
    job.
    """
    if lifeline_fd is not None and prepared is None:
        arm_lifeline(lifeline_fd)
    # The command line a spawned worker has: config code sees the same in every mode.
    sys.argv = ["ade.worker", "--events-fd", str(events_fd)]
    if lifeline_fd is not None:
        sys.argv += ["--lifeline-fd", str(lifeline_fd)]
    events = _Events(os.fdopen(events_fd, "wb"))
    try:
        from ade.serde import converter

        assignment = Assignment.decode(data)
        spec = converter.structure(assignment.spec, SandboxSpec)
        os.environ.clear()
        os.environ.update(assignment.env)
        os.chdir(assignment.job_dir)
    except Exception as exc:  # ValueError, a cattrs error, an unreachable job directory
        sys.stderr.write(f"ade.worker: unusable assignment: {type(exc).__name__}\n")
        events.result(WorkerResult(ResultCode.BAD_REQUEST, f"unusable assignment ({exc})"))
        _exit_after_run(ExitStatus.BAD_REQUEST)
    if not _confine(spec, events, prepared):
        _exit_after_run(ExitStatus.SANDBOX)
    job_dir = Path(assignment.job_dir)
    try:
        request = load_request(job_dir / REQUEST_FILE)
        if request.sandbox != spec:
            raise ValueError("run-request.json: its sandbox differs from the one applied")
    except ValueError as exc:
        sys.stderr.write(f"ade.worker: {exc}\n")
        events.result(WorkerResult(ResultCode.BAD_REQUEST, str(exc)))
        _exit_after_run(ExitStatus.BAD_REQUEST)
    _exit_after_run(_run_engine(request, job_dir, events))


def wait_for_assignment(
    events_fd: int,
    lifeline_fd: int | None,
    preconfinement: str | None = None,
    *,
    preloaded: bool = False,
) -> NoReturn:
    """The spawn standby: armed, imported, confined as far as it can be without its job
    (``preconfinement``, JSON :class:`Preconfinement`; None: all of it waits for the job), and
    waiting; its assignment arrives on stdin (EOF: the service no longer needs it, exit
    quietly). A required layer that failed here is reported to the job when it arrives.
    Also a template's child forked ahead of its job (``preloaded``: the template imported)."""
    if lifeline_fd is not None:
        arm_lifeline(lifeline_fd)  # from the start: a SIGKILLed service takes us along
    if not preloaded:
        preload()
    prepared = None
    if preconfinement is not None:
        import json

        from ade.sandbox.confine import prepare
        from ade.serde import converter

        # Forks into a PID namespace: from here on we are the job's process.
        prepared = prepare(converter.structure(json.loads(preconfinement), Preconfinement))
    data = _read_to_end(0)
    if not data:
        os._exit(0)
    run_assignment(data, events_fd, lifeline_fd, prepared)


def _read_to_end(fd: int) -> bytes:
    """Everything on ``fd`` until end-of-file. Raw reads, not ``sys.stdin``: a forked child
    shares its template's stdin object, whose fd 0 it replaced."""
    chunks: list[bytes] = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)
