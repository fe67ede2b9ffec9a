"""What ``success`` means, and how a finished run's issues show at a glance.

A job (or an ``ade run``) **succeeds** when the engine finished: every input was read, the
tables were found, and normalized.xlsx and artifact.json were written. Whether its output is
clean is a separate question, answered by the engine's **outcome** (the rule is in
docs/artifact.md): ``clean``; ``warnings`` (rows outside any table, unrecognised or skipped
tables, transform or validator warnings); ``errors`` (validator errors, an empty required value,
a required field no table provides, undecodable bytes). A job whose outcome is ``errors``
*finished with errors*: its record, ``GET /jobs/{id}``, the ``finish`` event and ``ade jobs
list`` say so, and ``ade run`` / ``ade submit --wait`` exit 3 (``--fail-on`` chooses the level).
A package whose manifest sets ``engine.fail_on_errors`` turns such a run into a failed job.

This module is the one place that spells those rules; the API, the recorder and the CLI call it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "EXIT_FINISHED_WITH_ISSUES",
    "FAIL_ON",
    "OUTCOMES",
    "add_fail_on_argument",
    "exit_code_for",
    "fail_on_errors_message",
    "issues_line",
    "outcome_of",
]

OUTCOMES = ("clean", "warnings", "errors")
# `ade run` and `ade submit --wait`: 0 = finished (outcome under --fail-on), 1 = failed,
# 3 = finished, but with issues at or above --fail-on (error-level issues by default).
EXIT_FINISHED_WITH_ISSUES = 3
FAIL_ON = ("errors", "warnings", "never")
# Which outcomes each --fail-on level turns into exit 3.
_FAILING: dict[str, frozenset[str]] = {
    "errors": frozenset({"errors"}),
    "warnings": frozenset({"errors", "warnings"}),
    "never": frozenset(),
}


def outcome_of(summary: Mapping[str, Any]) -> str | None:
    """The engine's outcome from an end-of-run summary (None when the engine did not finish)."""
    outcome = summary.get("outcome")
    return outcome if outcome in OUTCOMES else None


def issues_line(summary: Mapping[str, Any]) -> str | None:
    """``issues: N errors, M warnings, K rows outside any table`` (None without a summary)."""
    if outcome_of(summary) is None:
        return None
    return (
        f"issues: {summary.get('errors', 0)} errors, {summary.get('warnings', 0)} warnings, "
        f"{summary.get('rows_outside_tables', 0)} rows outside any table"
    )


def add_fail_on_argument(parser: Any) -> None:
    """``--fail-on errors|warnings|never`` for the commands that end with a run's outcome."""
    parser.add_argument(
        "--fail-on",
        choices=FAIL_ON,
        default="errors",
        help="exit 3 when the finished run has issues of this level or worse: error-level "
        "issues (default), any warning too, or never",
    )


def exit_code_for(outcome: str | None, fail_on: str) -> int:
    """0 or :data:`EXIT_FINISHED_WITH_ISSUES` for a finished run with this ``outcome``."""
    return EXIT_FINISHED_WITH_ISSUES if outcome in _FAILING[fail_on] else 0


def fail_on_errors_message(summary: Mapping[str, Any]) -> str:
    """The failed job's message when the manifest's ``engine.fail_on_errors`` applied."""
    return (
        f"finished with {summary.get('errors', 0)} error-level issue(s), which the config's "
        "manifest makes a failure (engine.fail_on_errors); the artifact lists them"
    )
