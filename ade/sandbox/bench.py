"""``python -m ade.sandbox.bench [-n 20]``: what the sandbox costs per job, layer by layer.

Each round does what the service does for a job: create the job cgroup, start a fresh
``python -I`` worker, move it into the cgroup from the parent (as the supervisor does), confine
it, and remove the cgroup. The worker reports :attr:`ConfineResult.timings`; the parent times
its own cgroup work. Medians over the rounds. :func:`measure` is what benchmarks call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import attrs

from ade.sandbox import cgroup as _cgroup
from ade.sandbox.scratch import scratch_job
from ade.serde import converter

__all__ = ["SandboxCost", "main", "measure"]

_CHILD = """
import json, sys, time
from ade.sandbox.confine import confine_with_report
from ade.sandbox.spec import SandboxSpec
from ade.serde import converter
spec = converter.loads(sys.argv[1], SandboxSpec)
start = time.perf_counter()
result = confine_with_report(spec)
total = (time.perf_counter() - start) * 1000
print(json.dumps({"timings": result.timings, "total": total, "missing": result.missing}))
"""


@attrs.frozen
class SandboxCost:
    rounds: int
    # step -> median milliseconds, in the order confine runs them
    worker_steps: tuple[tuple[str, float], ...]
    worker_total_ms: float
    cgroup_create_ms: float
    cgroup_move_ms: float  # in the parent, overlapping the worker's start-up
    cgroup_remove_ms: float
    missing: tuple[tuple[str, str], ...]

    @property
    def total_ms(self) -> float:
        """Work done per job by the worker plus the parent's cgroup create and remove (the
        move overlaps the worker's interpreter start-up, so it is not on the job's path)."""
        return self.worker_total_ms + self.cgroup_create_ms + self.cgroup_remove_ms


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def measure(rounds: int = 20, *, network: bool = False) -> SandboxCost:
    steps: dict[str, list[float]] = {}
    totals: list[float] = []
    creates: list[float] = []
    moves: list[float] = []
    removes: list[float] = []
    missing: tuple[tuple[str, str], ...] = ()
    for i in range(rounds):
        with scratch_job(
            f"ade-bench-{os.getpid()}-{i}",
            mem_mb=256,
            max_processes=64,
            fsize_mb=10,
            max_files=64,
            network=network,
        ) as scratch:
            creates.append(scratch.cgroup_create_ms)
            proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _CHILD, converter.dumps(scratch.spec)],
                stdout=subprocess.PIPE,
                cwd=scratch.workdir,
                env={"PATH": "/usr/bin:/bin", "MALLOC_ARENA_MAX": "2"},
            )
            try:
                if scratch.cgroup is not None:
                    start = time.perf_counter()
                    _cgroup.add_process(scratch.cgroup, proc.pid)
                    moves.append(_ms(start))
                out, _ = proc.communicate(timeout=30)
            finally:
                if proc.poll() is None:  # a failed move or a timeout: never leave it running
                    proc.kill()
                    proc.communicate()
            report = json.loads(out.decode().strip().splitlines()[-1])
            for step, ms in report["timings"]:
                steps.setdefault(step, []).append(ms)
            totals.append(report["total"])
            missing = tuple(tuple(x) for x in report["missing"])  # type: ignore[misc]
            if scratch.cgroup is not None:
                start = time.perf_counter()
                _cgroup.remove_job_cgroup(scratch.cgroup)
                removes.append(_ms(start))

    def med(values: list[float]) -> float:
        return round(statistics.median(values), 3) if values else 0.0

    return SandboxCost(
        rounds=rounds,
        worker_steps=tuple((step, med(v)) for step, v in steps.items()),
        worker_total_ms=med(totals),
        cgroup_create_ms=med(creates),
        cgroup_move_ms=med(moves),
        cgroup_remove_ms=med(removes),
        missing=missing,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ade.sandbox.bench")
    parser.add_argument("-n", "--rounds", type=int, default=20)
    parser.add_argument("--network", action="store_true", help="as for a job allowed network")
    args = parser.parse_args(argv)
    cost = measure(args.rounds, network=args.network)
    print(f"sandbox cost per job, median of {cost.rounds} rounds (ms)")
    for step, ms in cost.worker_steps:
        print(f"  worker  {step:<18} {ms:8.3f}")
    print(f"  worker  {'total confine()':<18} {cost.worker_total_ms:8.3f}")
    print(f"  parent  {'cgroup create':<18} {cost.cgroup_create_ms:8.3f}")
    print(f"  parent  {'cgroup remove':<18} {cost.cgroup_remove_ms:8.3f}")
    print(f"  parent  {'cgroup move':<18} {cost.cgroup_move_ms:8.3f}  (overlaps worker start-up)")
    print(f"  TOTAL on the job's path {cost.total_ms:8.3f}")
    for layer, reason in cost.missing:
        print(f"  missing {layer}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
