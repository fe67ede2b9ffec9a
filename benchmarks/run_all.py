"""Run every benchmark and write docs/benchmarks.md.

    .venv/bin/python benchmarks/run_all.py            # the full suite (< 10 minutes on 2 cores)
    .venv/bin/python benchmarks/run_all.py --quick    # every script in its short mode
    .venv/bin/python benchmarks/run_all.py --only api,history

Each benchmark runs as its own subprocess, one after another (they would skew each other if
run together on a small machine), and prints its results as markdown on stdout. This script
stamps each section with the machine's core count and the date and rewrites docs/benchmarks.md.

What it keeps: everything in docs/benchmarks.md outside the generated blocks. A section's
explanatory text, written by hand under its ``## Title``, stays as it is; only the block between
``<!-- results:KEY -->`` and ``<!-- /results:KEY -->`` is replaced. A section that has no such
block yet gets one appended at its end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"


@attrs.frozen
class Benchmark:
    key: str
    title: str
    script: str
    args: tuple[str, ...]
    quick_args: tuple[str, ...]
    timeout: float
    # Shown under the title when the doc has no hand-written text for the section yet.
    blurb: str
    # The script prints a plain-text table (not markdown): fence it.
    preformatted: bool = False


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "engine",
        "Engine",
        "benchmarks/engine.py",
        # One repeat per size: at 1M rows the floor, the engine and the reader, each also with
        # the previous reader, take 6-9 minutes on two shared cores (engine.py's default is 3).
        ("--repeats", "1"),
        ("--quick",),
        900,
        "Engine and reader throughput and memory against the read + write floor and the "
        "previous reader (benchmarks/engine.py).",
    ),
    Benchmark(
        "overhead",
        "Job overhead",
        "benchmarks/overhead.py",
        (),
        ("--quick",),
        180,
        "Per-job overhead against a bare interpreter spawn, and tiny-job throughput at "
        "concurrency 2 (benchmarks/overhead.py).",
    ),
    Benchmark(
        "throughput",
        "Tiny-job throughput against RQ",
        "benchmarks/throughput.py",
        (),
        ("--quick",),
        300,
        "Tiny jobs at concurrency 2: ADE in fork and spawn mode next to RQ with openpyxl "
        "preloaded, same run (benchmarks/throughput.py; needs the [bench] extra and Redis).",
    ),
    Benchmark(
        "priority",
        "Job CPU priority",
        "benchmarks/priority.py",
        (),
        ("--duration", "3", "--slices", "2"),
        300,
        "Status GET latency while CPU-bound jobs run, ADE_WORKER_NICE=0 against 10, same run "
        "(benchmarks/priority.py).",
    ),
    Benchmark(
        "api",
        "API",
        "benchmarks/api.py",
        (),
        ("--duration", "3"),
        200,
        "Submit latency and status reads under 100 concurrent clients, against the same routes "
        "of a bare quart-trio app in the same run (benchmarks/api.py).",
    ),
    Benchmark(
        "auth",
        "Auth",
        "benchmarks/auth.py",
        (),
        ("--seconds", "2", "--rounds", "2", "--clients", "20"),
        200,
        "What the API key check costs on status GET throughput: keys on against "
        "ADE_AUTH=disabled, two servers in the same run (benchmarks/auth.py).",
    ),
    Benchmark(
        "history",
        "Scale of history",
        "benchmarks/history.py",
        (),
        ("--finished", "2000", "--queued", "200", "--submits", "50", "--reads", "100"),
        240,
        "Submit, status and listing latency with 100k finished jobs in the store against an "
        "empty store, and restart time with 10k queued jobs (benchmarks/history.py).",
    ),
    Benchmark(
        "cluster",
        "Several nodes on PostgreSQL",
        "benchmarks/cluster.py",
        (),
        ("--quick",),
        900,
        "Claim throughput at 1, 2 and 3 nodes, submit latency on PostgreSQL against SQLite, "
        "and history scale on PostgreSQL: 1M finished jobs, restart and rescue with 10k queued "
        "(benchmarks/cluster.py; needs PostgreSQL).",
    ),
    Benchmark(
        "loadtest",
        "Load test",
        "benchmarks/loadtest.py",
        ("--clients", "50", "--duration", "20", "--seed", "1"),
        ("--clients", "10", "--duration", "5", "--seed", "1"),
        180,
        "The load-testing harness (docs/loadtest.md) in its standard mix: 50 clients for "
        "20 s against ADE_QUEUE_SIZE=10, ADE_MAX_CONCURRENCY=2, every invariant checked.",
        preformatted=True,
    ),
    Benchmark(
        "observe",
        "Observation cost",
        "benchmarks/observe.py",
        (),
        ("--quick",),
        120,
        "What the request id, the route-template match, the HTTP metrics and the JSON access "
        "log line add to every request, next to the same requests without them "
        "(benchmarks/observe.py).",
    ),
)


@attrs.frozen
class Outcome:
    benchmark: Benchmark
    returncode: int | None
    seconds: float
    stdout: str
    stderr: str


def run_one(benchmark: Benchmark, quick: bool) -> Outcome:
    args = benchmark.quick_args if quick else benchmark.args
    command = [sys.executable, str(ROOT / benchmark.script), *args]
    print(f"== {benchmark.title}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    if not (ROOT / benchmark.script).exists():
        return Outcome(benchmark, None, 0.0, "", f"{benchmark.script} does not exist yet")
    try:
        completed = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=benchmark.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return Outcome(
            benchmark,
            None,
            time.monotonic() - started,
            _text(exc.stdout),
            _text(exc.stderr) + f"\ntimed out after {benchmark.timeout:.0f} s",
        )
    seconds = time.monotonic() - started
    print(f"   exit {completed.returncode} after {seconds:.1f} s", file=sys.stderr, flush=True)
    return Outcome(benchmark, completed.returncode, seconds, completed.stdout, completed.stderr)


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def results_block(outcome: Outcome, cores: int | None, date: str, quick: bool) -> str:
    benchmark = outcome.benchmark
    args = benchmark.quick_args if quick else benchmark.args
    command = " ".join([".venv/bin/python", benchmark.script, *args])
    lines = [
        f"<!-- results:{benchmark.key} -->",
        f"*Measured by run_all: {date}, {cores} cores — `{command}` — {outcome.seconds:.0f} s"
        + (" — quick mode, not comparable with full runs" if quick else "")
        + "*",
        "",
    ]
    if outcome.returncode == 0 and benchmark.preformatted:
        lines += ["```text", outcome.stdout.strip(), "```"]
    elif outcome.returncode == 0:
        lines.append(markdown_of(outcome.stdout))
    else:
        status = "did not finish" if outcome.returncode is None else f"exit {outcome.returncode}"
        lines += [
            f"**The run failed ({status}).** Last output:",
            "",
            "```",
            (outcome.stdout.strip()[-1500:] + "\n" + outcome.stderr.strip()[-2500:]).strip(),
            "```",
        ]
    lines.append(f"<!-- /results:{benchmark.key} -->")
    return "\n".join(lines)


def markdown_of(stdout: str) -> str:
    """A script's stdout without its machine-readable lines (a JSON dump some scripts print
    after their table): those belong in --json files, not in the document."""
    kept = []
    for line in stdout.strip().splitlines():
        if line.lstrip().startswith(("{", "[{")):
            try:
                json.loads(line)
                continue
            except ValueError:
                pass
        kept.append(line)
    return "\n".join(kept).strip()


_GENERATED = "Generated by"
_LAST_RUN = "Last run:"

# A hand-written section may mark where its results go with this line (the first run
# replaces it with the block; later runs find the block itself).
PLACEHOLDER = "RESULTS_TABLE"

_BLOCK = re.compile(r"<!-- results:(?P<key>[\w-]+) -->.*?<!-- /results:(?P=key) -->", re.S)


def split_sections(text: str) -> tuple[str, list[tuple[str, str]]]:
    """(preamble, [(title, body)]) of a markdown file split at its ``## `` headings."""
    preamble: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("## "):
            sections.append((line[3:].strip(), []))
        elif sections:
            sections[-1][1].append(line)
        else:
            preamble.append(line)
    return "\n".join(preamble), [(title, "\n".join(body)) for title, body in sections]


def render_doc(existing: str, blocks: dict[str, str], machine_line: str) -> str:
    """The new docs/benchmarks.md: hand-written text kept, generated blocks replaced."""
    preamble, sections = split_sections(existing)
    by_title = {title: body for title, body in sections}
    # The preamble's hand-written paragraphs stay; the title and this script's own lines
    # (recognised by their first words) are written fresh below.
    kept = [
        paragraph
        for paragraph in re.split(r"\n\s*\n", preamble)
        if paragraph.strip() and not paragraph.startswith(("# Benchmarks", _GENERATED, _LAST_RUN))
    ]
    out = ["# Benchmarks", ""]
    for paragraph in kept:
        out += [paragraph.strip(), ""]
    out += [
        f"{_GENERATED} `.venv/bin/python benchmarks/run_all.py`; the text outside the "
        "`results` blocks is written by hand and kept across runs. Figures from one run on a "
        "shared machine are noisy: compare the ratios, each measured against its baseline in "
        "the same run.",
        "",
        machine_line,
        "",
    ]
    known_titles = {benchmark.title for benchmark in BENCHMARKS}
    for benchmark in BENCHMARKS:
        body = by_title.get(benchmark.title)
        if body is None:
            body = f"\n{benchmark.blurb}\n"
        block = blocks.get(benchmark.key)
        if block is not None:
            lines = body.split("\n")
            if _BLOCK.search(body):
                body = _BLOCK.sub(lambda _m, b=block: b, body, count=1)
            elif PLACEHOLDER in (line.strip() for line in lines):
                at = [line.strip() for line in lines].index(PLACEHOLDER)
                body = "\n".join([*lines[:at], block, *lines[at + 1 :]])
            else:
                body = body.rstrip() + "\n\n" + block + "\n"
        out.append(f"## {benchmark.title}")
        out.append(body.rstrip() + "\n")
    for title, body in sections:
        if title not in known_titles:
            out.append(f"## {title}")
            out.append(body.rstrip() + "\n")
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short mode of every benchmark")
    parser.add_argument(
        "--only", help=f"comma-separated subset of {','.join(b.key for b in BENCHMARKS)}"
    )
    parser.add_argument("--output", type=Path, default=DOC, help="markdown file to (re)write")
    args = parser.parse_args(argv)
    selected = list(BENCHMARKS)
    if args.only:
        wanted = {key.strip() for key in args.only.split(",") if key.strip()}
        unknown = wanted - {b.key for b in BENCHMARKS}
        if unknown:
            parser.error(f"--only: unknown benchmark(s) {', '.join(sorted(unknown))}")
        selected = [b for b in BENCHMARKS if b.key in wanted]
    cores = os.cpu_count()
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    started = time.monotonic()
    outcomes = [run_one(benchmark, args.quick) for benchmark in selected]
    total = time.monotonic() - started
    blocks = {o.benchmark.key: results_block(o, cores, date, args.quick) for o in outcomes}
    existing = args.output.read_text() if args.output.exists() else ""
    machine_line = (
        f"{_LAST_RUN} {date} on {cores} cores, Python {sys.version.split()[0]}, "
        f"{len(selected)} benchmark(s) in {total:.0f} s."
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render_doc(existing, blocks, machine_line))
    print(f"wrote {args.output} ({total:.0f} s)", file=sys.stderr)
    if not args.quick and len(selected) == len(BENCHMARKS) and total > 600:
        print(f"warning: the suite took {total:.0f} s, over its 10-minute budget", file=sys.stderr)
    failed = [o.benchmark.key for o in outcomes if o.returncode != 0]
    for outcome in outcomes:
        print(results_block(outcome, cores, date, args.quick))
        print()
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
