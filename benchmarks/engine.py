"""Engine and reader throughput and peak memory next to the I/O floor, measured in the same run.

    python benchmarks/engine.py            # 100k rows (3 repeats) and 1M rows (1 repeat)
    python benchmarks/engine.py --quick    # 100k rows only

The *floor* is what reading and writing cost with no logic at all: every row of the same
workbook read with ADE's reader and written with ADE's streaming writer
(``ade/engine/_xlsx_stream.py``), once each. The *engine* is ``run_engine`` with the bundled
member-roster config: row detection, mapping, transforms, validation, the disk spool between
passes, and artifact.json. Each also runs with the **previous reader** (``-previous``): the
exact ``xml.etree`` path of ``ade/engine/_xlsx_rows.py``, which is the row parser ADE had
before its fast path, and the writer's previous deflate level (6) — the engine as it was.

The *reader* rows read every row and nothing else, with each candidate measured side by side:
ADE's reader (fast path), the previous reader, python-calamine (loads the sheet whole; 100k
only, as 1M rows take over a GiB) with ADE's value conversion, and lxml ``iterparse`` giving
only each cell's raw text (no typing: an upper bound on an lxml reader; runs only where lxml
is installed, e.g. the ``[bench]`` extra).

Each measurement runs in a fresh subprocess; its peak RSS and CPU time come from ``os.wait4``
(the child's own rusage). Kinds alternate within each repeat. Figures are medians of the
repeats; ratios are given on wall time and on CPU time (the machine is shared, and CPU time is
what load disturbs least). Generated workbooks are cached in ``--bench-dir``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
_MAIN_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def _use_previous_reader() -> None:
    """The engine as it was before the fast reader: the exact row parser, deflate level 6."""
    from ade.engine import _xlsx_rows, _xlsx_stream

    _xlsx_rows.SheetRows.__init__.__kwdefaults__["fast"] = False
    _xlsx_stream.COMPRESS_LEVEL = 6


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


def _child_reader(source: Path, out: Path) -> dict[str, float]:
    from ade.engine._readers import describe_input, open_sheets

    started = time.perf_counter()
    sheets, close = open_sheets(describe_input(source, source.name, 0))
    rows = 0
    try:
        for sheet in sheets:
            for _ in sheet.rows():
                rows += 1
    finally:
        close()
    return {"seconds": time.perf_counter() - started, "rows": rows}


def _child_calamine(source: Path, out: Path) -> dict[str, float]:
    from python_calamine import CalamineWorkbook

    from ade.engine._calamine import _value

    started = time.perf_counter()
    workbook = CalamineWorkbook.from_path(str(source))
    rows = 0
    for name in workbook.sheet_names:
        for raw in workbook.get_sheet_by_name(name).iter_rows():
            values = [_value(v) for v in raw]
            while values and values[-1] is None:
                values.pop()
            rows += 1
    return {"seconds": time.perf_counter() - started, "rows": rows}


def _child_lxml(source: Path, out: Path) -> dict[str, float]:
    import zipfile

    from lxml import etree

    started = time.perf_counter()
    rows = 0
    value_tag = _MAIN_NS + "v"
    with zipfile.ZipFile(source) as zf, zf.open("xl/worksheets/sheet1.xml") as fh:
        for _, row in etree.iterparse(fh, events=("end",), tag=_MAIN_NS + "row"):
            values = []
            for cell in row:
                if cell.get("t") == "inlineStr":
                    values.append("".join(cell.itertext()))
                else:
                    values.append(cell.findtext(value_tag))
            rows += 1
            row.clear()
            while row.getprevious() is not None:
                del row.getparent()[0]
    return {"seconds": time.perf_counter() - started, "rows": rows}


def _previous(work: Callable[[Path, Path], dict[str, float]]) -> Any:
    def run(source: Path, out: Path) -> dict[str, float]:
        _use_previous_reader()
        return work(source, out)

    return run


CHILDREN: dict[str, Callable[[Path, Path], dict[str, float]]] = {
    "floor": _child_floor,
    "floor-previous": _previous(_child_floor),
    "engine": _child_engine,
    "engine-previous": _previous(_child_engine),
    "reader": _child_reader,
    "reader-previous": _previous(_child_reader),
    "reader-calamine": _child_calamine,
    "reader-lxml": _child_lxml,
}
BIG_SKIP = {"reader-calamine"}  # loads the whole sheet: over a GiB at 1M rows


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


def kinds_available() -> list[str]:
    kinds = list(CHILDREN)
    if importlib.util.find_spec("lxml") is None:
        kinds.remove("reader-lxml")
    return kinds


def run(
    sizes: list[tuple[int, int]], bench_dir: Path, only: list[str] | None = None
) -> list[dict[str, Any]]:
    bench_dir.mkdir(parents=True, exist_ok=True)
    table = []
    for rows, repeats in sizes:
        source = workbook(bench_dir, rows)
        kinds = [
            k
            for k in kinds_available()
            if (rows < 1_000_000 or k not in BIG_SKIP) and (not only or k in only)
        ]
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
        for i in range(repeats):
            for kind in kinds:  # interleaved, so drifting machine load hits all alike
                runs[kind].append(measure(kind, source, bench_dir))
            print(
                f"{rows} rows, repeat {i + 1}/{repeats}: "
                + ", ".join(
                    f"{k} {runs[k][-1]['seconds']:.1f} s ({runs[k][-1]['cpu_seconds']:.1f} CPU)"
                    for k in kinds
                ),
                file=sys.stderr,
                flush=True,
            )
        entry: dict[str, Any] = {"rows": rows, "repeats": repeats}
        for kind, measured in runs.items():
            seconds = statistics.median(m["seconds"] for m in measured)
            entry[kind] = {
                "rows_per_s": rows / seconds,
                "seconds": seconds,
                "cpu_seconds": statistics.median(m["cpu_seconds"] for m in measured),
                "peak_rss_mib": statistics.median(m["peak_rss_mib"] for m in measured),
            }
        table.append(entry)
    return table


def _ratio(entry: dict[str, Any], top: str, bottom: str) -> str:
    if top not in entry or bottom not in entry:
        return "-"
    wall = entry[bottom]["seconds"] / entry[top]["seconds"]
    cpu = entry[bottom]["cpu_seconds"] / entry[top]["cpu_seconds"]
    return f"{wall:.2f}x / {cpu:.2f}x"


def render(table: list[dict[str, Any]]) -> str:
    lines = [
        "| rows x 12 cols | measure | rows/s | CPU s | peak RSS |",
        "|---|---|---|---|---|",
    ]
    for entry in table:
        for kind in CHILDREN:
            if kind in entry:
                m = entry[kind]
                lines.append(
                    f"| {int(entry['rows']):,} | {kind} | {m['rows_per_s']:,.0f} "
                    f"| {m['cpu_seconds']:.2f} | {m['peak_rss_mib']:.0f} MiB |"
                )
    lines += [
        "",
        "| rows x 12 cols | repeats | engine / floor | engine / floor-previous "
        "| engine / engine-previous | reader / reader-previous |",
        "|---|---|---|---|---|---|",
    ]
    for entry in table:
        lines.append(
            f"| {int(entry['rows']):,} | {int(entry['repeats'])} "
            f"| {_ratio(entry, 'engine', 'floor')} "
            f"| {_ratio(entry, 'engine', 'floor-previous')} "
            f"| {_ratio(entry, 'engine', 'engine-previous')} "
            f"| {_ratio(entry, 'reader', 'reader-previous')} |"
        )
    lines.append("")
    lines.append("Ratios are rows/s over rows/s, wall / CPU (above 1: the first is faster).")
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
        "--only",
        type=lambda text: text.split(","),
        help="comma-separated measures to run (e.g. floor,engine); default: all",
    )
    parser.add_argument(
        "--small-rows", type=int, default=100_000, help="rows of the small workbook (100000)"
    )
    parser.add_argument(
        "--child", nargs=3, metavar=("KIND", "SOURCE", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        kind, source, out = args.child
        print(json.dumps(CHILDREN[kind](Path(source), Path(out))))
        return 0
    unknown = set(args.only or ()) - set(CHILDREN)
    if unknown:
        parser.error(f"--only: unknown measure(s) {', '.join(sorted(unknown))}")
    sizes = [(args.small_rows, args.repeats)]
    if not args.quick:
        sizes.append((1_000_000, args.big_repeats))
    table = run(sizes, args.bench_dir, args.only)
    print(render(table))
    print(json.dumps(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
