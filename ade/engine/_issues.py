"""The one place issues are collected, whichever pass finds them.

Counts are always complete; the issues themselves are listed up to the manifest's
``engine.max_issues``, in the order found. An issue names where (input, sheet, row, cell,
table, field) and what (a code and a message); never a cell value: messages written by config
code are passed through :func:`~ade.engine._returns.redact` before they get here, and the
engine's own messages hold counts and positions only.
"""

from __future__ import annotations

from ade.engine._artifact import IssueRecord

__all__ = ["IssueLog", "new_issue"]


def new_issue(
    pass_name: str,
    input_name: str,
    code: str,
    severity: str,
    message: str,
    *,
    sheet: str | None = None,
    row: int | None = None,
    table: str | None = None,
    cell: str | None = None,
    field: str | None = None,
    output_row: int | None = None,
) -> IssueRecord:
    return IssueRecord(
        pass_name=pass_name,
        table=table,
        input=input_name,
        sheet=sheet,
        row=row,
        cell=cell,
        field=field,
        code=code,
        severity=severity,
        message=message,
        output_row=output_row,
    )


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
