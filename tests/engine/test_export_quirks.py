"""What real exports put around and inside a roster, end to end with the bundled roster config:
page lines and repeated headers, subtotals, label footers, dashed rules, header spellings,
dates with a time of day, Excel's CSV quirks. Exact tables, output cells and row accounting."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from support.engine import read_rows, run_grid

from ade.engine import parse_artifact, run_engine
from ade.engine._csv import decide_delimiter
from ade.samples import ROSTER_CONFIG
from ade.samples.formats import Grid

HEADER = ["Member ID", "First Name", "Last Name", "Email"]


def member(i: int) -> list[Any]:
    return [f"M{2000 + i}", f"Ann{chr(65 + i)}", f"Lee{chr(65 + i)}", f"m{i}@example.com"]


def ids(out: list[tuple[Any, ...]]) -> list[Any]:
    return [row[0] for row in out[1:]]


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_a_report_printed_to_pages_loses_no_member_and_writes_no_page_line(
    tmp_path: Path, fmt: str
) -> None:
    grid: Grid = {
        "S": [
            (1, 1, ["MEMBERSHIP REPORT"]),
            (2, 1, ["Printed on 2024-03-01 09:15 by admin"]),
            (4, 1, HEADER),
            (5, 1, member(0)),
            (6, 1, member(1)),
            (7, 1, member(2)),
            (8, 1, ["Page 1 of 2"]),
            (10, 1, HEADER),  # the header again at the top of the next page
            (11, 1, member(3)),
            (12, 1, member(4)),
            (13, 1, ["M 2009"]),  # a member with only an ID is still a member
            (14, 1, ["Page 2 of 2"]),
            (15, 1, ["* pending renewal"]),
        ]
    }
    result, artifact, out = run_grid(tmp_path, grid, fmt)
    assert ids(out) == ["M2000", "M2001", "M2002", "M2003", "M2004", "M2009"]
    assert [(t.range, t.data_rows, t.ended_by) for t in artifact.tables] == [
        ("A4:D7", 3, "other"),
        ("A10:D13", 3, "other"),
    ]
    assert artifact.inputs[0].sheets[0].accounting == {
        "other": 5,
        "table_data": 6,
        "table_header": 2,
    }
    # The ID-only member is written, and its missing names are the only issues.
    assert sorted((i.code, i.field, i.row) for i in artifact.issues) == [
        ("required", "first_name", 13),
        ("required", "last_name", 13),
    ]
    assert (result.outcome, result.rows_outside_tables) == ("errors", 0)


@pytest.mark.parametrize("fmt", ["xlsx", "ods"])
def test_subtotal_rows_end_a_branch_and_the_table_goes_on(tmp_path: Path, fmt: str) -> None:
    grid: Grid = {
        "S": [
            (1, 1, HEADER),
            (2, 1, member(0)),
            (3, 1, member(1)),
            (4, 1, ["Subtotal: 2"]),  # one cell
            (5, 1, member(2)),
            (6, 1, member(3)),
            (7, 1, ["Branch subtotal", 2]),  # a label and a count
            (8, 1, member(4)),
            (9, 1, ["Grand Total", 5]),
        ]
    }
    result, artifact, out = run_grid(tmp_path, grid, fmt)
    assert ids(out) == ["M2000", "M2001", "M2002", "M2003", "M2004"]
    assert [(t.range, t.continues, t.ended_by) for t in artifact.tables] == [
        ("A1:D3", None, "totals"),
        ("A5:D6", "t1", "totals"),
        ("A8:D8", "t1", "totals"),
    ]
    assert artifact.inputs[0].sheets[0].accounting == {
        "table_data": 5,
        "table_header": 1,
        "totals": 3,
    }
    assert (result.outcome, result.rows_outside_tables) == ("clean", 0)


def test_dashed_rules_and_label_footers_are_not_members(tmp_path: Path) -> None:
    grid: Grid = {
        "S": [
            (1, 1, HEADER),
            (2, 1, ["-----"] * 4),
            (3, 1, member(0)),
            (4, 1, member(1)),
            (5, 1, ["_____", "_____", None, "_ _ _ _"]),
            (6, 1, ["Prepared by:", "Membership Secretary"]),
            (7, 1, ["Report date: ", dt.datetime(2024, 3, 1)]),
            (8, 1, ["2 members"]),
        ]
    }
    result, artifact, out = run_grid(tmp_path, grid)
    assert ids(out) == ["M2000", "M2001"]
    [table] = artifact.tables
    assert (table.range, table.data_rows, table.ended_by) == ("A1:D4", 2, "other")
    assert artifact.inputs[0].sheets[0].accounting == {
        "other": 5,
        "table_data": 2,
        "table_header": 1,
    }
    assert (result.outcome, result.rows_outside_tables) == ("clean", 0)


def test_a_roster_split_by_an_empty_column_is_one_table(tmp_path: Path) -> None:
    header = ["Member ID", "First Name", None, "Last Name", "Email"]
    rows = [(2 + i, 1, [*member(i)[:2], None, *member(i)[2:]]) for i in range(4)]
    result, artifact, out = run_grid(tmp_path, {"S": [(1, 1, header), *rows]})
    [table] = artifact.tables
    assert (table.range, table.data_rows) == ("A1:E5", 4)
    assert [c.field for c in table.columns] == [
        "member_id",
        "first_name",
        None,
        "last_name",
        "email",
    ]
    assert [row[:4] for row in out[1:]] == [tuple(member(i)) for i in range(4)]
    assert result.rows_outside_tables == 0


def test_header_spellings_of_system_exports_map(tmp_path: Path) -> None:
    header = [
        "Membership #",  # "#", "No", "Nbr": all say "number"
        "Given Name(s)",
        "Surname",
        " Email Address ",
        "Mobile No.",
        "D.O.B.",
        "Date\nJoined",
        "Status",
    ]
    row = ["M3001", "Zoë", "Núñez", "ZOE@EXAMPLE.COM ", 4155550123, dt.datetime(1985, 3, 13)]
    joined = dt.datetime(2019, 6, 1, 14, 32)  # a date-time cell with a time of day
    grid: Grid = {"S": [(1, 1, header), (2, 1, [*row, joined, "Active"])]}
    result, artifact, out = run_grid(tmp_path, grid)
    [table] = artifact.tables
    assert [c.field for c in table.columns] == [
        "member_id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "date_of_birth",
        "join_date",
        None,
    ]
    assert out[1][:7] == (
        "M3001",
        "Zoë",
        "Núñez",
        "zoe@example.com",
        "(415) 555-0123",
        dt.datetime(1985, 3, 13),
        dt.datetime(2019, 6, 1),
    )
    assert result.outcome == "clean"


def test_text_dates_as_exports_write_them(tmp_path: Path) -> None:
    header = ["Member ID", "First Name", "Last Name", "DOB", "Joined"]
    written = [
        ("1985-03-13 00:00:00", "2019-06-01T14:32:05"),  # pandas / database exports
        ("13-Mar-1985", "01-Jun-2019"),  # Excel's d-mmm-yyyy in a CSV save
        ("1985/03/13", "2019/06/01 9:05 AM"),
    ]
    rows = [(2 + i, 1, [f"M300{i}", "Ann", "Lee", *dates]) for i, dates in enumerate(written)]
    result, _, out = run_grid(tmp_path, {"S": [(1, 1, header), *rows]}, "csv")
    assert [row[5:7] for row in out[1:]] == [
        (dt.datetime(1985, 3, 13), dt.datetime(2019, 6, 1)),
    ] * 3
    assert result.outcome == "clean"


def test_an_excel_csv_with_sep_line_crlf_and_trailing_delimiters(tmp_path: Path) -> None:
    source = tmp_path / "members.csv"
    source.write_bytes(
        "sep=;\r\nMember No;First Name;Surname;Notes;\r\n"
        'M4001;José;García;"Paid; cash\r\nin March";\r\n'
        "M4002;Zoë;Lefèvre;;\r\n".encode("cp1252")
    )
    out = tmp_path / "out"
    result = run_engine([source], ROSTER_CONFIG, out)
    artifact = parse_artifact((out / "artifact.json").read_text())
    [table] = artifact.tables
    assert (table.range, table.data_rows) == ("A2:D4", 2)
    assert artifact.inputs[0].sheets[0].accounting == {
        "other": 1,  # the sep= line
        "table_data": 2,
        "table_header": 1,
    }
    rows = read_rows(out / "normalized.xlsx")
    assert [r[:3] for r in rows[1:]] == [("M4001", "José", "García"), ("M4002", "Zoë", "Lefèvre")]
    assert rows[1][-1] == "Paid; cash\nin March"  # the quoted line break (xlsx stores LF)
    assert result.rows_outside_tables == 0


@pytest.mark.parametrize(
    ("sample", "delimiter"),
    [
        ("sep=;\r\nID,Name;Email\r\nM1,Ann;a@e.com\r\n", ";"),  # commas inside, ; declared
        ("sep=\t\nID\tName\nM1\tAnn\n", "\t"),
        ("SEP=|\nID|Name\n", "|"),
        ("separator\nID;Name;Email\nM1;Ann;a@e.com\n", ";"),  # not a declaration: decided
    ],
)
def test_a_sep_first_line_declares_the_delimiter(sample: str, delimiter: str) -> None:
    assert decide_delimiter(sample)[0] == delimiter


def test_a_template_with_required_marks_year_columns_and_a_count_row(tmp_path: Path) -> None:
    header = ["Member ID*", "First Name*", "Last Name*", "Email:", 2023, 2024]
    grid: Grid = {
        "S": [
            (1, 1, ["Fields marked * are required"]),
            (2, 1, header),
            (3, 1, [*member(0), "paid", "paid"]),
            (4, 1, [*member(1), None, "due"]),
            (5, 1, ["Number of members", 2]),
            (6, 1, ["Count", 2]),
        ]
    }
    result, artifact, out = run_grid(tmp_path, grid)
    [table] = artifact.tables
    assert (table.range, table.data_rows, table.ended_by) == ("A2:F4", 2, "totals")
    assert [(c.header, c.field) for c in table.columns] == [
        ("Member ID*", "member_id"),
        ("First Name*", "first_name"),
        ("Last Name*", "last_name"),
        ("Email:", "email"),
        ("2023", None),
        ("2024", None),
    ]
    assert [row[:4] for row in out[1:]] == [tuple(member(0)), tuple(member(1))]
    assert artifact.inputs[0].sheets[0].accounting == {
        "other": 1,
        "table_data": 2,
        "table_header": 1,
        "totals": 2,
    }
    assert result.rows_outside_tables == 0


def test_members_whose_names_start_like_a_summary_stay_members(tmp_path: Path) -> None:
    # Numeric IDs first: the surname is the first text cell. "Sum" and "Mean" are names on a
    # member's full row; "Count | 3" on a short row is a summary.
    header = ["Member ID", "Last Name", "First Name", "Email"]
    names = [("Sum", "Ann"), ("Summers", "Bo"), ("Mean", "Cy")]
    rows = [
        (2 + i, 1, [5001 + i, last, first, f"m{i}@e.com"]) for i, (last, first) in enumerate(names)
    ]
    grid: Grid = {"S": [(1, 1, header), *rows, (5, 1, ["Count", 3])]}
    result, artifact, out = run_grid(tmp_path, grid)
    assert result.rows_written == 3
    assert [row[:3] for row in out[1:]] == [
        ("M5001", "Ann", "Sum"),
        ("M5002", "Bo", "Summers"),
        ("M5003", "Cy", "Mean"),
    ]
    assert artifact.inputs[0].sheets[0].accounting == {
        "table_data": 3,
        "table_header": 1,
        "totals": 1,
    }


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_placeholders_are_missing_values_and_whole_decimals_are_whole_numbers(
    tmp_path: Path, fmt: str
) -> None:
    # "N/A" and "-" mean "no value": the output cell is empty, and only a required field left
    # empty is an issue. "10001.0" (a number column saved as decimals) is the number 10001.
    header = ["Member ID", "First Name", "Last Name", "Email", "Phone", "DOB"]
    grid: Grid = {
        "S": [
            (1, 1, header),
            (2, 1, ["10001.0", "Ann", "Lee", "ann@example.com", "5551234567.0", "1985-03-13"]),
            (3, 1, ["10002", "Bo", "Na", "N/A", "n/a", "-"]),
            (4, 1, ["N/A", "-", "Nil", "-", "--", "none"]),
            (5, 1, ["10004", "Cy", "Wu", "cy@example.com", "555-765-4321", "sometime"]),
        ]
    }
    result, artifact, out = run_grid(tmp_path, grid, fmt)
    born = dt.datetime(1985, 3, 13)
    assert out[1:] == [
        ("M10001", "Ann", "Lee", "ann@example.com", "(555) 123-4567", born, None),
        ("M10002", "Bo", "Na", None, None, None, None),
        (None, None, "Nil", None, None, None, None),  # "Na" and "Nil" are family names
        ("M10004", "Cy", "Wu", "cy@example.com", "(555) 765-4321", "sometime", None),
    ]  # fmt: skip
    issues = sorted((i.row, i.field, i.code) for i in artifact.issues if i.field != "join_date")
    assert issues == [
        (4, "first_name", "required"),
        (4, "member_id", "required"),
        (5, "date_of_birth", "invalid_date"),
        (5, "date_of_birth", "unparsed_date"),
    ]
    assert (result.outcome, result.errors, result.warnings) == ("errors", 3, 1)
