"""Engine throughput and peak memory next to the I/O floor, measured in the same run.

    python benchmarks/engine.py            # 100k rows (3 repeats) and 1M rows (1 repeat)
    python benchmarks/engine.py --quick    # 100k rows only

The *floor* is what the chosen libraries cost with no logic at all: every row of the same
workbook read with ADE's reader (openpyxl workbook parts + its own row parser) and written with
ADE's streaming writer (``ade/engine/_xlsx_stream.py``), once each. The *engine* is
``run_engine`` with the bundled member-roster config: row detection, mapping, transforms,
validation, the disk spool between passes, and artifact.json. Each measurement runs in a
fresh subprocess; its peak RSS and CPU time come from ``os.wait4`` (the child's own rusage).
Floor and engine runs alternate.
Figures are medians of the repeats; the ratio is given on wall time and on CPU time (the
machine is shared, and CPU time is what load disturbs least).
Generated workbooks are cached in ``--bench-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def _child_floor(source: Path, out: Path) -> dict[str, float]:
    from ade.engine._readers import describe_input, open_sheets
    from ade.engine._xlsx_stream import StreamingXlsxWriter

    total = int(source.stem.rsplit("-", 1)[-1])  # members-<rows>.xlsx
    started = time.perf_counter()
    info = describe_input(source, source.name, 0)
    sheets, close = open_sheets(info)
    rows = 0
    writer = None
    try:
        for sheet in sheets:
            for _, values in sheet.rows():
                if writer is None:  # the header row; the row count is the file's, less it
                    writer = StreamingXlsxWriter(
                        out / "floor.xlsx", "Floor", [str(v) for v in values], [None] * 12, total
                    )
                    continue
                writer.write_rows((values,))
                rows += 1
    finally:
        close()
        if writer is not None:
            writer.close()
    return {"seconds": time.perf_counter() - started, "rows": rows}


def _child_engine(source: Path, out: Path) -> dict[str, float]:
    from ade.engine import run_engine
    from ade.samples import ROSTER_CONFIG

    started = time.perf_counter()
    result = run_engine([source], ROSTER_CONFIG, out)
    return {"seconds": time.perf_counter() - started, "rows": result.rows_written}


def measure(kind: str, source: Path, scratch: Path) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=scratch))
    try:
        proc = subprocess.Popen(
            [sys.executable, str(HERE), "--child", kind, str(source), str(out)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{kind} child failed with exit code {proc.returncode}")
        result = json.loads(output)
        result["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux reports KiB
        # CPU time of the child: on a shared machine it moves far less than wall time.
        result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
        return result
    finally:
        shutil.rmtree(out, ignore_errors=True)


def workbook(bench_dir: Path, rows: int) -> Path:
    from ade.samples.generate import write_large_workbook

    path = bench_dir / f"members-{rows}.xlsx"
    if not path.exists():
        print(f"generating {path} ...", file=sys.stderr, flush=True)
        partial = path.with_suffix(".partial.xlsx")
        write_large_workbook(partial, rows)
        partial.rename(path)
    return path


def run(sizes: list[tuple[int, int]], bench_dir: Path) -> list[dict[str, float]]:
    bench_dir.mkdir(parents=True, exist_ok=True)
    table = []
    for rows, repeats in sizes:
        source = workbook(bench_dir, rows)
        floor: list[dict[str, float]] = []
        engine: list[dict[str, float]] = []
        for i in range(repeats):
            # Interleaved, so drifting machine load hits both alike.
            floor.append(measure("floor", source, bench_dir))
            engine.append(measure("engine", source, bench_dir))
            print(
                f"{rows} rows, repeat {i + 1}/{repeats}: floor {floor[-1]['seconds']:.1f} s "
                f"({floor[-1]['cpu_seconds']:.1f} s CPU), engine {engine[-1]['seconds']:.1f} s "
                f"({engine[-1]['cpu_seconds']:.1f} s CPU)",
                file=sys.stderr,
                flush=True,
            )
        floor_s = statistics.median(m["seconds"] for m in floor)
        engine_s = statistics.median(m["seconds"] for m in engine)
        floor_cpu = statistics.median(m["cpu_seconds"] for m in floor)
        engine_cpu = statistics.median(m["cpu_seconds"] for m in engine)
        table.append(
            {
                "rows": rows,
                "repeats": repeats,
                "floor_rows_per_s": rows / floor_s,
                "floor_peak_rss_mib": statistics.median(m["peak_rss_mib"] for m in floor),
                "engine_rows_per_s": rows / engine_s,
                "engine_peak_rss_mib": statistics.median(m["peak_rss_mib"] for m in engine),
                "ratio": floor_s / engine_s,
                "floor_cpu_seconds": floor_cpu,
                "engine_cpu_seconds": engine_cpu,
                "cpu_ratio": floor_cpu / engine_cpu,
            }
        )
    return table


def render(table: list[dict[str, float]]) -> str:
    lines = [
        "| rows x 12 cols | repeats | floor rows/s | floor peak RSS | engine rows/s "
        "| engine peak RSS | engine / floor (wall) | engine / floor (CPU) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {int(r['rows']):,} | {int(r['repeats'])} | {r['floor_rows_per_s']:,.0f} "
            f"| {r['floor_peak_rss_mib']:.0f} MiB | {r['engine_rows_per_s']:,.0f} "
            f"| {r['engine_peak_rss_mib']:.0f} MiB | {r['ratio']:.2f}x | {r['cpu_ratio']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k rows only")
    parser.add_argument("--repeats", type=int, default=3, help="repeats for 100k rows (3)")
    parser.add_argument("--big-repeats", type=int, default=1, help="repeats for 1M rows (1)")
    parser.add_argument(
        "--bench-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "ade-bench",
        help="where generated workbooks are cached",
    )
    parser.add_argument(
        "--child", nargs=3, metavar=("KIND", "SOURCE", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        kind, source, out = args.child
        work = _child_floor if kind == "floor" else _child_engine
        print(json.dumps(work(Path(source), Path(out))))
        return 0
    sizes = [(100_000, args.repeats)]
    if not args.quick:
        sizes.append((1_000_000, args.big_repeats))
    table = run(sizes, args.bench_dir)
    print(render(table))
    print(json.dumps(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
