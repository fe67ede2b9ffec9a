"""Job overhead: what the runtime adds to a tiny job, against a bare interpreter spawn, per
job start mode (``ADE_WORKER_START=fork`` and ``spawn``).

    .venv/bin/python benchmarks/overhead.py            # 30 latency rounds, 40 throughput jobs
    .venv/bin/python benchmarks/overhead.py --quick    # 8 rounds, 12 jobs

1. Baseline, measured in the same run: median wall time of ``python -I -c "import openpyxl"``
   (a fresh interpreter that loads the spreadsheet library: the floor for any job that runs in
   its own process).
2. Latency, per mode: median submit -> terminal time of a tiny job (a 3-row workbook, a 2-field
   config) through :func:`ade.runtime.open_runtime` with the real sandboxed worker, one job at a
   time, each submitted to an idle worker (a pause between jobs, not counted, lets the spawn
   standby be ready as it is for a job that arrives at an idle service). The ratio latency /
   baseline is the overhead factor (targets: fork <= 0.5, spawn with its standby <= 1.0).
3. Throughput, per mode: tiny jobs per second with ``max_concurrency=2``, all submitted at
   once, next to the bare spawn's rate with two spawns at a time.
4. Sandbox cost per job: :func:`ade.sandbox.bench.measure` (each layer confined in a fresh
   worker, plus the parent's cgroup work), i.e. "layers on" minus "layers off".

Prints markdown (the block run_all.py puts under ``## Job overhead``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import trio

from ade.auth import Workspace
from ade.configs.prepare import prepare_config
from ade.ids import new_id
from ade.models import ConfigVersion, Document, JobStatus
from ade.runtime import open_runtime
from ade.settings import Settings, load_settings
from ade.store import open_store
from ade.store.access import access_store

WORKSPACE = "bench"
MANIFEST = {
    "schema": "ade.manifest/v1",
    "title": "Overhead benchmark",
    "version": "1.0.0",
    "columns": {
        "order": ["name", "amount"],
        "fields": {
            "name": {"label": "Name"},
            "amount": {"label": "Amount", "type": "number"},
        },
    },
}
FILES = {
    "row_types/header.py": (
        "def detect_header(values, non_empty):\n"
        "    texts = [v for v in values if isinstance(v, str)]\n"
        "    return {'header': 1.0} if non_empty and len(texts) == non_empty else {}\n"
    ),
    "row_types/data.py": (
        "def detect_data(values, non_empty):\n    return {'data': 0.5} if non_empty else {}\n"
    ),
    "columns/name.py": (
        "def detect_by_header(header):\n"
        "    return 1.0 if str(header).strip().lower() == 'name' else 0.0\n"
    ),
    "columns/amount.py": (
        "def detect_by_header(header):\n"
        "    return 1.0 if str(header).strip().lower() == 'amount' else 0.0\n"
    ),
}
ROWS: list[list[object]] = [["Name", "Amount"], ["Ada", 10], ["Grace", 20.5], ["Linus", 3]]


# What a warm, pre-imported parent ("zygote") forking one child per job would cost: the same
# tiny engine run in a forked child of a process that already imported the engine. Run in its
# own interpreter so this benchmark's process stays as the runtime sees it.
WARM_FORK = """
import os, statistics, sys, tempfile, time
from pathlib import Path
import openpyxl, ade.engine
from ade.engine import run_engine
package, workbook, rounds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
times = []
for _ in range(rounds + 1):
    out = Path(tempfile.mkdtemp())
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        run_engine([workbook], package, out)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    times.append(time.perf_counter() - started)
    assert status == 0 and (out / "normalized.xlsx").exists()
print(statistics.median(times[1:]))
"""


def warm_fork_engine(package: Path, workbook: Path, rounds: int) -> float:
    completed = subprocess.run(
        [sys.executable, "-I", "-c", WARM_FORK, str(package), str(workbook), str(rounds)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(completed.stdout)


def bare_spawn() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-I", "-c", "import openpyxl"], check=True)
    return time.perf_counter() - started


async def bare_throughput(jobs: int, parallel: int) -> float:
    limiter = trio.CapacityLimiter(parallel)

    async def one() -> None:
        async with limiter:
            await trio.run_process([sys.executable, "-I", "-c", "import openpyxl"])

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(jobs):
            nursery.start_soon(one)
    return jobs / (time.perf_counter() - started)


async def publish(settings: Settings, root: Path) -> tuple[str, str]:
    import openpyxl

    package = root / "package"
    (package / "manifest.json").parent.mkdir(parents=True)
    (package / "manifest.json").write_text(json.dumps(MANIFEST))
    for relative, text in FILES.items():
        (package / relative).parent.mkdir(parents=True, exist_ok=True)
        (package / relative).write_text(text)
    build = prepare_config(package, settings.venvs_dir)
    workbook = openpyxl.Workbook()
    for row in ROWS:
        workbook.active.append(row)
    workbook.save(root / "tiny.xlsx")
    data = (root / "tiny.xlsx").read_bytes()
    now = datetime.now(UTC)
    document = Document(
        new_id(), WORKSPACE, "tiny.xlsx", len(data), hashlib.sha256(data).hexdigest(), now
    )
    path = settings.documents_dir / WORKSPACE / document.id
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    store = open_store(settings)
    try:
        # Workspaces are explicit: the store refuses rows in one that does not exist.
        await access_store(store).create_workspace(Workspace(WORKSPACE, now))
        await store.insert_config(
            ConfigVersion(build.config_id, WORKSPACE, "tiny", "1", build.content_hash, now)
        )
        await store.insert_document(document)
    finally:
        store.close()
    return build.config_id, document.id


PHASES = (
    ("submit returned", None),
    ("worker confined (start + imports or fork + sandbox)", "sandbox"),
    ("engine started", "pass_started"),
    ("engine done (last pass finished)", "write"),
    ("job recorded finished (exit, publish outputs, cleanup)", "finish"),
)


def phase_marks(events: list, submit_seconds: float) -> list[float]:
    """Seconds from submit to each phase, from the events' own timestamps."""
    start = events[0].ts
    marks = [submit_seconds]
    for _, marker in PHASES[1:]:
        for event in events:
            if event.type == marker or (
                marker == "write"
                and event.type == "pass_finished"
                and event.detail.get("pass") == "write"
            ):
                marks.append(submit_seconds + (event.ts - start).total_seconds())
                break
        else:
            marks.append(float("nan"))
    return marks


# Between latency rounds: an idle worker, as a job arriving at a quiet service finds it (the
# spawn standby has started and imported by then; the fork template is always ready).
IDLE_SECONDS = 0.6
MODES = ("fork", "spawn")
# Jobs run at nice 0 here, like the bare interpreter they are compared with: on a machine other
# work keeps busy, nice 10 (the service's default) would measure that work, not the start-up.
# benchmarks/priority.py measures what nice buys.
NICE = 0


async def runtime_latency(
    root: Path, rounds: int, mode: str
) -> tuple[list[float], tuple[str, ...], list[list[float]], list[float]]:
    settings = load_settings(
        {},
        data_dir=root / f"latency-{mode}",
        max_concurrency=1,
        queue_size=10,
        worker_start=mode,
        worker_nice=NICE,
    )
    config_id, document_id = await publish(settings, root / f"latency-{mode}-src")
    latencies: list[float] = []
    phases: list[list[float]] = []
    own: list[float] = []
    layers: tuple[str, ...] = ()
    async with open_runtime(settings) as runtime:
        for index in range(rounds + 1):
            await trio.sleep(IDLE_SECONDS)
            started = time.perf_counter()
            job = await runtime.submit(
                workspace_id=WORKSPACE, config_version_id=config_id, document_ids=[document_id]
            )
            submitted = time.perf_counter() - started
            final = await runtime.wait(WORKSPACE, job.id)
            elapsed = time.perf_counter() - started
            if final.status is not JobStatus.SUCCESS:
                raise SystemExit(f"benchmark job failed: {final.error_message}")
            layers = final.sandbox_layers
            assert final.worker_start == mode, final.worker_start
            if index:  # the first job warms the page cache and the store
                latencies.append(elapsed)
                events = await runtime.read_events(WORKSPACE, job.id)
                phases.append(phase_marks(events, submitted))
                # What the actors add around the supervised subprocess.
                own.append(elapsed - events[-1].detail["duration_seconds"])
    return latencies, layers, phases, own


async def runtime_throughput(root: Path, jobs: int, mode: str) -> float:
    settings = load_settings(
        {},
        data_dir=root / f"throughput-{mode}",
        max_concurrency=2,
        queue_size=jobs + 1,
        worker_start=mode,
        worker_nice=NICE,
    )
    config_id, document_id = await publish(settings, root / f"throughput-{mode}-src")
    async with open_runtime(settings) as runtime:
        await trio.sleep(IDLE_SECONDS * 2)  # both workers' templates / standbys ready
        started = time.perf_counter()
        submitted = [
            await runtime.submit(
                workspace_id=WORKSPACE, config_version_id=config_id, document_ids=[document_id]
            )
            for _ in range(jobs)
        ]
        for job in submitted:
            final = await runtime.wait(WORKSPACE, job.id)
            if final.status is not JobStatus.SUCCESS:
                raise SystemExit(f"benchmark job failed: {final.error_message}")
        return jobs / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--rounds", type=int, help="latency rounds (default 30, quick 8)")
    parser.add_argument("--jobs", type=int, help="throughput jobs (default 40, quick 12)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (8 if args.quick else 30)
    jobs = args.jobs or (12 if args.quick else 40)

    with tempfile.TemporaryDirectory(prefix="ade-overhead-") as tmp:
        root = Path(tmp)
        bare_spawn()  # warm the page cache like the runtime's first job does
        baseline = [bare_spawn() for _ in range(rounds)]
        by_mode = {mode: trio.run(runtime_latency, root, rounds, mode) for mode in MODES}
        bare_rate = trio.run(bare_throughput, jobs, 2)
        rates = {mode: trio.run(runtime_throughput, root, jobs, mode) for mode in MODES}
        baseline += [bare_spawn() for _ in range(rounds)]  # before and after: same load
        snapshots = list((root / "latency-fork" / "venvs").glob("*/ade-build/snapshot"))
        warm = warm_fork_engine(snapshots[0], root / "latency-fork-src" / "tiny.xlsx", rounds)

    try:
        from ade.sandbox.bench import measure

        sandbox = measure(max(5, rounds // 2))
        sandbox_line = (
            f"| sandbox cost per job (layers on - off, `ade.sandbox.bench`) "
            f"| {sandbox.total_ms:.1f} ms | worker confine {sandbox.worker_total_ms:.1f} ms + "
            f"cgroup create/remove {sandbox.cgroup_create_ms + sandbox.cgroup_remove_ms:.1f} ms |"
        )
    except Exception as exc:  # the figure is optional: say why it is missing
        sandbox_line = f"| sandbox cost per job | n/a | {type(exc).__name__}: {exc} |"

    base = statistics.median(baseline)
    targets = {"fork": 0.5, "spawn": 1.0}
    print("| measure | value | note |")
    print("|---|---|---|")
    print(
        f'| bare `python -I -c "import openpyxl"` | {base * 1000:.0f} ms '
        f"| median of {len(baseline)} (half before, half after the runtime runs) |"
    )
    for mode in MODES:
        latencies, _, _, own = by_mode[mode]
        latency = statistics.median(latencies)
        ratio = latency / base
        verdict = "meets" if ratio <= targets[mode] else "misses"
        print(
            f"| tiny job submit -> terminal, `{mode}` | {latency * 1000:.0f} ms "
            f"| median of {rounds}; p90 {statistics.quantiles(latencies, n=10)[-1] * 1000:.0f} ms; "
            f"runtime's own share {statistics.median(own) * 1000:.1f} ms |"
        )
        print(
            f"| overhead ratio, `{mode}` | **{ratio:.2f}x** "
            f"| {verdict} the {targets[mode]}x target |"
        )
    for mode in MODES:
        print(
            f"| tiny-job throughput, concurrency 2, `{mode}` | {rates[mode]:.1f} jobs/s "
            f"| {jobs} jobs |"
        )
    print(f"| bare spawn throughput, 2 at a time | {bare_rate:.1f} /s | same count |")
    print(sandbox_line)
    print(
        f"| same tiny engine run, forked from a warm pre-imported parent | {warm * 1000:.0f} ms "
        f"| no sandbox, no runtime: the floor of `fork` mode |"
    )
    for mode in MODES:
        _, layers, phases, _ = by_mode[mode]
        print()
        print(
            f"Where a tiny job's time goes in `{mode}` mode (median ms after submit, from the "
            "job's own events):"
        )
        print()
        print("| phase | at |")
        print("|---|---|")
        for position, (label, _) in enumerate(PHASES):
            at = statistics.median(marks[position] for marks in phases)
            print(f"| {label} | {at * 1000:.0f} ms |")
    print()
    print(f"Sandbox layers applied to the benchmark jobs: {', '.join(layers) or 'none'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
