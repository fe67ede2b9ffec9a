"""ade.outcome: the rules every surface shares (exit codes, the issues line)."""

from __future__ import annotations

import pytest

from ade.outcome import EXIT_FINISHED_WITH_ISSUES, exit_code_for, issues_line, outcome_of


@pytest.mark.parametrize(
    ("outcome", "errors", "warnings", "never"),
    [("errors", 3, 3, 0), ("warnings", 0, 3, 0), ("clean", 0, 0, 0), (None, 0, 0, 0)],
)
def test_exit_codes_by_fail_on(outcome: str | None, errors: int, warnings: int, never: int) -> None:
    assert EXIT_FINISHED_WITH_ISSUES == 3
    assert [exit_code_for(outcome, f) for f in ("errors", "warnings", "never")] == [
        errors,
        warnings,
        never,
    ]


def test_the_issues_line_and_the_outcome_come_from_a_finished_summary_only() -> None:
    summary = {"outcome": "warnings", "errors": 0, "warnings": 2, "rows_outside_tables": 2}
    assert outcome_of(summary) == "warnings"
    assert issues_line(summary) == "issues: 0 errors, 2 warnings, 2 rows outside any table"
    assert (outcome_of({}), issues_line({})) == (None, None)  # the engine did not finish
    assert outcome_of({"outcome": "bogus"}) is None
