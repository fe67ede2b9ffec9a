"""run_all's rewrite of docs/benchmarks.md keeps hand-written text and replaces only results."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hand_written_text_survives_and_blocks_are_replaced() -> None:
    run_all = _run_all()
    existing = "\n".join(
        [
            "# Benchmarks",
            "old preamble",
            "## Engine",
            "Why the floor is openpyxl: hand-written.",
            "<!-- results:engine -->",
            "OLD ENGINE FIGURES",
            "<!-- /results:engine -->",
            "After-block note.",
            "## Job overhead",
            "Overhead prose without a block yet.",
            "## Notes",
            "A section run_all does not know.",
        ]
    )
    blocks = {
        "engine": "<!-- results:engine -->\nNEW ENGINE\n<!-- /results:engine -->",
        "overhead": "<!-- results:overhead -->\nNEW OVERHEAD\n<!-- /results:overhead -->",
    }
    doc = run_all.render_doc(existing, blocks, "Last run: today on 2 cores.")
    assert "OLD ENGINE FIGURES" not in doc
    engine = doc.split("## Engine\n", 1)[1].split("## Job overhead", 1)[0]
    assert engine.strip().splitlines() == [
        "Why the floor is openpyxl: hand-written.",
        "<!-- results:engine -->",
        "NEW ENGINE",
        "<!-- /results:engine -->",
        "After-block note.",
    ]
    overhead = doc.split("## Job overhead\n", 1)[1].split("## API", 1)[0]
    assert overhead.strip().splitlines() == [
        "Overhead prose without a block yet.",
        "",
        "<!-- results:overhead -->",
        "NEW OVERHEAD",
        "<!-- /results:overhead -->",
    ]
    # Sections with no results this run keep a blurb; unknown sections are kept at the end.
    assert "## API\n" in doc and "## Scale of history\n" in doc
    assert doc.rstrip().endswith("## Notes\nA section run_all does not know.")
    assert "Last run: today on 2 cores." in doc
    # Rendering the result again with the same blocks changes nothing.
    assert run_all.render_doc(doc, blocks, "Last run: today on 2 cores.") == doc


def test_a_failed_run_is_shown_with_its_output() -> None:
    run_all = _run_all()
    benchmark = run_all.BENCHMARKS[2]
    outcome = run_all.Outcome(benchmark, 3, 12.0, "partial table", "Traceback: boom")
    block = run_all.results_block(outcome, 2, "2026-01-01 00:00 UTC", quick=False)
    assert block.splitlines()[0] == "<!-- results:api -->"
    assert "2026-01-01 00:00 UTC, 2 cores" in block
    assert "**The run failed (exit 3).**" in block
    assert "partial table" in block and "Traceback: boom" in block


def test_placeholder_line_and_json_dumps() -> None:
    run_all = _run_all()
    existing = "## Engine\n**Results** (2 cores):\n\nRESULTS_TABLE\n\nTargets: prose.\n"
    block = "<!-- results:engine -->\nT\n<!-- /results:engine -->"
    doc = run_all.render_doc(existing, {"engine": block}, "x")
    engine = doc.split("## Engine\n", 1)[1].split("## Job overhead", 1)[0]
    assert engine.strip().splitlines() == [
        "**Results** (2 cores):",
        "",
        "<!-- results:engine -->",
        "T",
        "<!-- /results:engine -->",
        "",
        "Targets: prose.",
    ]
    assert (
        run_all.markdown_of('| a |\n|---|\n{"rows": 1}\n{not json\n') == "| a |\n|---|\n{not json"
    )
