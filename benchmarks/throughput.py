"""Tiny-job throughput at concurrency 2: ADE (``fork`` and ``spawn``) next to RQ, same run.

    .venv/bin/python benchmarks/throughput.py             # 60 jobs per system, 2 rounds
    .venv/bin/python benchmarks/throughput.py --quick     # 20 jobs, 1 round

Needs the ``[bench]`` extra (rq) and a Redis on 127.0.0.1:6379 (``--redis`` to change).

- ADE: the runtime in-process (:func:`ade.runtime.open_runtime`), ``max_concurrency=2``, every
  job sandboxed with every layer the machine has, the jobs all submitted at once; jobs/s from
  the first submit to the last job recorded finished. Each job runs the whole engine on a
  3-row workbook (read, detect, map, write ``normalized.xlsx`` and ``artifact.json``).
- RQ: two ``rq`` workers on the local Redis whose script imports openpyxl and the task module
  before ``Worker.work()``, so each forked work horse starts warm (RQ's best case); the job
  opens the same 3-row workbook with openpyxl (read-only) and reads its rows. Unsandboxed. Jobs
  are enqueued once both workers are idle; jobs/s from the first enqueue to the last finish.
- RQ running ADE's job (a diagnosis, not the target's baseline): the same two RQ workers, but
  preloading what ADE's template preloads (:func:`ade.worker.main.preload`) and running ADE's
  whole engine on the same workbook and config in each work horse (``run_engine``, writing
  ``normalized.xlsx`` and ``artifact.json`` to a fresh folder). Unsandboxed, no job record, no
  events: what the same work costs on RQ's runtime, so ADE's runtime and sandbox are compared
  like for like.

Systems alternate per round (ADE fork, ADE spawn, RQ; then reversed) so a change in the
shared machine's load hits all alike; the medians over rounds are reported. Prints markdown.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import IDLE_SECONDS, NICE, publish

from ade.models import JobStatus
from ade.runtime import open_runtime
from ade.settings import load_settings

WORKSPACE = "bench"

TASKS = """
import openpyxl


def open_tiny(path):
    book = openpyxl.load_workbook(path, read_only=True)
    rows = list(book.active.iter_rows(values_only=True))
    book.close()
    return len(rows)


def ade_engine(path, package, out_root):
    import tempfile
    from pathlib import Path

    from ade.engine import run_engine

    out = Path(tempfile.mkdtemp(dir=out_root))
    run_engine([Path(path)], Path(package), out)
    return 4 if (out / "normalized.xlsx").is_file() and (out / "artifact.json").is_file() else 0
"""

# The RQ worker: preload openpyxl and the task module, then fork a work horse per job.
WORKER = """
import sys
sys.path.insert(0, sys.argv[1])
import openpyxl, rq_tiny_tasks  # noqa: F401  (preloaded before forking)
if sys.argv[4] == "engine":
    from ade.worker.main import preload
    preload()  # what ADE's fork template imports and warms before forking
from redis import Redis
from rq import Queue, Worker
connection = Redis.from_url(sys.argv[3])
Worker([Queue(sys.argv[2], connection=connection)], connection=connection).work()
"""


async def ade_rate(root: Path, jobs: int, mode: str) -> float:
    settings = load_settings(
        {},
        data_dir=root / "data",
        max_concurrency=2,
        queue_size=jobs + 1,
        worker_start=mode,
        worker_nice=NICE,
    )
    config_id, document_id = await publish(settings, root / "src")
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
            if final.status is not JobStatus.SUCCESS or final.worker_start != mode:
                raise SystemExit(f"benchmark job failed: {final.error_message}")
        return jobs / (time.perf_counter() - started)


def rq_rate(root: Path, jobs: int, redis_url: str, task: str = "open") -> float:
    """RQ's jobs/s; ``task`` "open" opens the workbook, "engine" runs ADE's engine on it."""
    from redis import Redis
    from rq import Queue, Worker

    (root / "rq_tiny_tasks.py").write_text(TASKS)
    workbook = root / "src" / "tiny.xlsx"
    name = f"ade-bench-{uuid.uuid4().hex[:8]}"
    connection = Redis.from_url(redis_url)
    queue = Queue(name, connection=connection)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(root), name, redis_url, task],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 60
        while len([w for w in Worker.all(queue=queue)]) < 2:
            if time.monotonic() > deadline:
                raise SystemExit("the RQ workers did not start")
            time.sleep(0.05)
        time.sleep(IDLE_SECONDS)
        started = time.perf_counter()
        if task == "engine":
            outputs = root / "rq-out"
            outputs.mkdir()
            call = ("rq_tiny_tasks.ade_engine", str(workbook), str(root / "src" / "package"))
            enqueued = [queue.enqueue(*call, str(outputs)) for _ in range(jobs)]
        else:
            call = ("rq_tiny_tasks.open_tiny", str(workbook))
            enqueued = [queue.enqueue(*call) for _ in range(jobs)]
        while True:
            done = queue.finished_job_registry.count + queue.failed_job_registry.count
            if done >= jobs:
                break
            time.sleep(0.002)
        elapsed = time.perf_counter() - started
        failed = queue.failed_job_registry.count
        if failed:
            raise SystemExit(f"{failed} RQ jobs failed")
        assert all(job.return_value() == 4 for job in enqueued[:3])
        return jobs / elapsed
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait()
        queue.delete(delete_jobs=True)
        connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 jobs, 1 round")
    parser.add_argument("--jobs", type=int, help="jobs per system and round (default 60)")
    parser.add_argument("--rounds", type=int, help="rounds (default 2)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    jobs = args.jobs or (20 if args.quick else 60)
    rounds = args.rounds or (1 if args.quick else 2)
    systems = [
        "ade fork",
        "ade spawn",
        "rq (2 workers, openpyxl preloaded)",
        "rq running ADE's engine (diagnosis)",
    ]
    rates: dict[str, list[float]] = {system: [] for system in systems}
    for index in range(rounds):
        order = systems if index % 2 == 0 else systems[::-1]
        for system in order:
            with tempfile.TemporaryDirectory(prefix="ade-throughput-") as tmp:
                root = Path(tmp)
                os.chmod(root, 0o755)
                if system.startswith("rq"):
                    # The same tiny workbook ADE's jobs read, written the same way.
                    trio.run(ade_rate, root, 1, "fork")  # also writes root/src/tiny.xlsx
                    task = "engine" if "engine" in system else "open"
                    rates[system].append(rq_rate(root, jobs, args.redis, task))
                else:
                    rates[system].append(trio.run(ade_rate, root, jobs, system.split()[1]))
    rq = statistics.median(rates[systems[2]])
    print(f"Tiny jobs at concurrency 2, {jobs} jobs per system, {rounds} round(s), median:")
    print()
    print("| system | jobs/s | vs RQ | sandboxed |")
    print("|---|---|---|---|")
    for system in systems:
        rate = statistics.median(rates[system])
        sandboxed = "no" if system.startswith("rq") else "yes, every layer"
        print(f"| {system} | {rate:.1f} | {rate / rq:.2f}x | {sandboxed} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
