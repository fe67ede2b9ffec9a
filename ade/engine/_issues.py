"""The one place issues are collected, whichever pass finds them.

Counts are always complete; the issues themselves are listed up to the manifest's
``engine.max_issues``, in the order found. An issue names where (input, sheet, row, cell,
table, field) and what (a code and a message); never a cell value: messages written by config
code are passed through :func:`~ade.engine._returns.redact` before they get here, and the
engine's own messages hold counts and positions only.
"""

from __future__ import annotations

from ade.engine._artifact import IssueRecord

__all__ = ["IssueLog"]


class IssueLog:
    def __init__(self, max_issues: int) -> None:
        self.max_issues = max_issues
        self.issues: list[IssueRecord] = []
        self.errors = 0
        self.warnings = 0
        self.by_code: dict[str, int] = {}

    @property
    def total(self) -> int:
        return self.errors + self.warnings

    @property
    def truncated(self) -> bool:
        return self.total > len(self.issues)

    def add(self, issue: IssueRecord) -> None:
        if issue.severity == "error":
            self.errors += 1
        else:
            self.warnings += 1
        self.by_code[issue.code] = self.by_code.get(issue.code, 0) + 1
        if len(self.issues) < self.max_issues:
            self.issues.append(issue)

    def counts(self, pass_name: str) -> tuple[int, int]:
        """(errors, warnings) among the *listed* issues of one pass (tests and hooks)."""
        mine = [i for i in self.issues if i.pass_name == pass_name]
        return sum(i.severity == "error" for i in mine), sum(i.severity != "error" for i in mine)
