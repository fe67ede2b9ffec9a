"""Real-world layouts end to end with the bundled roster config, in every input format:
exact tables, output cells, row accounting (asserted on every fixture) and issues."""

# ruff: noqa: E501  (the expected rows read best one per line)

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from support.engine import copy_config, edit_manifest, run_grid

from ade.samples.formats import Grid

D = datetime
FORMATS = ["xlsx", "xls", "ods", "csv"]
run = run_grid


HEADER = ["Member ID", "First Name", "Last Name", "Email"]


def member(i: int) -> list[Any]:
    return [f"M{1000 + i}", f"Ann{chr(65 + i % 26)}", f"Lee{chr(65 + i % 26)}", f"m{i}@example.com"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_blank_line_after_each_branch_loses_no_member(tmp_path: Path, fmt: str) -> None:
    rows: list[tuple[int, int, list[Any]]] = [(1, 1, ["Branch roster"]), (2, 1, HEADER)]
    r, i = 3, 0
    for branch_size in (4, 3, 5):
        for _ in range(branch_size):
            rows.append((r, 1, member(i)))
            r, i = r + 1, i + 1
        r += 1  # one blank line after each branch
    result, artifact, out = run(tmp_path, {"Members": rows}, fmt)
    assert result.rows_written == 12
    assert [row[0] for row in out[1:]] == [f"M{1000 + i}" for i in range(12)]
    [table] = artifact.tables
    assert (table.range, table.data_rows, table.blank_rows, table.ended_by) == (
        "A2:D16",
        12,
        2,
        "end_of_sheet",
    )
    sheet = artifact.inputs[0].sheets[0]
    assert sheet.accounting == {"other": 1, "table_data": 12, "table_header": 1}
    assert (result.outcome, result.rows_outside_tables, result.issue_count) == ("clean", 0, 0)


def test_csv_export_with_a_blank_line_every_38_records(tmp_path: Path) -> None:
    rows: list[tuple[int, int, list[Any]]] = [(1, 1, HEADER)]
    r = 2
    for i in range(150):
        rows.append((r, 1, member(i)))
        r += 2 if i % 38 == 37 else 1
    result, artifact, _out = run(tmp_path, {"export": rows}, "csv")
    assert (result.rows_written, result.rows_outside_tables) == (150, 0)
    assert artifact.tables[0].blank_rows == 3
    assert artifact.inputs[0].csv is not None
    assert artifact.inputs[0].csv.delimiter == ","


@pytest.mark.parametrize("blanks", [1, 2, 3, 4])
def test_blank_rows_in_a_row_up_to_the_knob(tmp_path: Path, blanks: int) -> None:
    rows = [(1, 1, HEADER), (2, 1, member(0)), (3 + blanks, 1, member(1))]
    result, artifact, _ = run(tmp_path, {"S": rows})
    if blanks <= 3:  # the roster's max_blank_rows_in_table
        assert (result.rows_written, result.rows_outside_tables) == (2, 0)
        return
    assert (result.rows_written, result.rows_outside_tables, result.outcome) == (1, 1, "warnings")
    [issue] = [i for i in artifact.issues if i.code == "row_outside_table"]
    assert (issue.input, issue.sheet, issue.row, issue.cell, issue.severity) == (
        "input.xlsx",
        "S",
        7,
        None,
        "warning",
    )
    assert issue.message == "data row outside any table: it is not in the output"
    assert "M1001" not in (tmp_path / "out" / "artifact.json").read_text()


def test_the_knob_is_a_manifest_setting(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    edit_manifest(config, lambda d: d["engine"].update(max_blank_rows_in_table=0))
    rows = [(1, 1, HEADER), (2, 1, member(0)), (4, 1, member(1))]
    result, _, _ = run(tmp_path, {"S": rows}, config=config)
    assert (result.rows_written, result.rows_outside_tables) == (1, 1)


@pytest.mark.parametrize("fmt", ["xlsx", "xls", "ods"])
def test_stacked_headers_map_by_their_leaf(tmp_path: Path, fmt: str) -> None:
    grid: Grid = {
        "S": [
            (1, 1, [None, "Member", None, "Contact", None]),
            (2, 1, ["Member #", "First Name", "Last Name", "Email", "Phone"]),
            (3, 1, ["M1001", "Ann", "Lee", "ann@example.com", "555-201-0001"]),
        ]
    }
    _result, artifact, out = run(tmp_path, grid, fmt)
    [table] = artifact.tables
    assert (table.header_row, table.group_header_row) == (2, 1)
    assert [c.header for c in table.columns] == [
        "Member #",
        "Member / First Name",
        "Member / Last Name",
        "Contact / Email",
        "Contact / Phone",
    ]
    assert [c.header_parts for c in table.columns][3] == ["Contact", "Email"]
    assert [c.field for c in table.columns] == [
        "member_id",
        "first_name",
        "last_name",
        "email",
        "phone",
    ]
    assert out[1][:5] == ("M1001", "Ann", "Lee", "ann@example.com", "(555) 201-0001")
    assert artifact.inputs[0].sheets[0].accounting == {
        "table_data": 1,
        "table_group_header": 1,
        "table_header": 1,
    }


@pytest.mark.parametrize("fmt", ["xlsx", "ods"])
def test_side_by_side_split_by_an_empty_band_not_by_a_blank_header(
    tmp_path: Path, fmt: str
) -> None:
    grid: Grid = {
        "S": [
            (
                1,
                1,
                [
                    "Member ID",
                    "First Name",
                    None,
                    "Last Name",
                    None,
                    "Member ID",
                    "First Name",
                    "Last Name",
                ],
            ),
            (2, 1, ["M1001", "Ann", "x", "Lee", None, "M2001", "Bo", "Kim"]),
            (3, 1, ["M1002", "Cy", None, "Ng", None, "M2002", "Di", "Oz"]),
        ]
    }
    result, artifact, out = run(tmp_path, grid, fmt)
    assert [(t.range, t.data_rows) for t in artifact.tables] == [("A1:D3", 2), ("F1:H3", 2)]
    assert [c.header for c in artifact.tables[0].columns] == [
        "Member ID",
        "First Name",
        None,
        "Last Name",
    ]
    assert [r[:3] for r in out[1:]] == [
        ("M1001", "Ann", "Lee"),
        ("M1002", "Cy", "Ng"),
        ("M2001", "Bo", "Kim"),
        ("M2002", "Di", "Oz"),
    ]
    assert result.rows_outside_tables == 0


def test_an_unrecognised_table_is_reported_and_written_on_request(tmp_path: Path) -> None:
    grid: Grid = {
        "Members": [(1, 1, HEADER), (2, 1, member(0))],
        "Codes": [
            (1, 1, ["Code", "Meaning", "Since"]),
            (2, 1, ["G", "Gold", 2001]),
            (3, 1, ["S", "Silver", 2003]),
        ],
    }
    result, artifact, out = run(tmp_path, grid)
    _t1, t2 = artifact.tables
    assert (t2.sheet, t2.range, t2.recognised, t2.status) == ("Codes", "A1:C3", False, "skipped")
    [issue] = [i for i in artifact.issues if i.code == "unrecognised_table"]
    assert (issue.table, issue.sheet, issue.row, issue.severity) == ("t2", "Codes", 1, "warning")
    assert issue.message == (
        "table A1:C3 has a header row ('Code', 'Meaning', 'Since') that the config's header "
        "detectors do not recognise; its 2 data row(s) are not written (manifest engine.unrecognised_tables)"
    )
    assert (result.rows_written, result.outcome, artifact.summary.unrecognised_tables) == (
        1,
        "warnings",
        1,
    )
    assert artifact.inputs[0].sheets[1].accounting == {
        "unrecognised_table_data": 2,
        "unrecognised_table_header": 1,
    }

    config = copy_config(tmp_path)
    edit_manifest(config, lambda d: d["engine"].update(unrecognised_tables="write"))
    (tmp_path / "w").mkdir()
    result, artifact, out = run(tmp_path / "w", grid, config=config)
    assert artifact.tables[1].status == "written"
    assert out[0][-3:] == ("raw_Code", "raw_Meaning", "raw_Since")
    assert out[2][-3:] == ("G", "Gold", 2001)
    assert result.rows_written == 3


def test_only_an_unrecognised_table_is_a_run_that_says_so(tmp_path: Path) -> None:
    grid: Grid = {"Codes": [(1, 1, ["Code", "Meaning", "Since"]), (2, 1, ["G", "Gold", 2001])]}
    result, artifact, out = run(tmp_path, grid)
    assert (result.tables_found, result.rows_written, result.outcome) == (1, 0, "warnings")
    assert artifact.inputs[0].sheets[0].outcome == "unrecognised_tables_only"
    assert out == [
        ("Member ID", "First Name", "Last Name", "Email", "Phone", "Date of Birth", "Join Date")
    ]


DATES = ["Member ID", "First Name", "Last Name", "Date of Birth", "Join Date"]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_day_first_and_month_first_are_decided_per_column(tmp_path: Path, fmt: str) -> None:
    grid: Grid = {
        "S": [
            (1, 1, DATES),
            (2, 1, ["M1001", "Ann", "Lee", "03/12/1985", "04/05/2020"]),
            (3, 1, ["M1002", "Bo", "Kim", "13/03/1985", "03/13/2020"]),  # day-first | month-first
            (4, 1, ["M1003", "Cy", "Ng", "1/2/85", "12/12/2020"]),
        ]
    }
    _result, artifact, out = run(tmp_path, grid, fmt)
    assert [r[5:7] for r in out[1:]] == [
        (D(1985, 12, 3), D(2020, 4, 5)),
        (D(1985, 3, 13), D(2020, 3, 13)),
        (D(1985, 2, 1), D(2020, 12, 12)),
    ]
    assert [i.code for i in artifact.issues] == []


def test_an_undecidable_or_conflicting_column_warns_and_never_guesses_silently(
    tmp_path: Path,
) -> None:
    grid: Grid = {
        "S": [
            (1, 1, DATES),
            (2, 1, ["M1001", "Ann", "Lee", "03/04/1985", "13/01/2020"]),
            (3, 1, ["M1002", "Bo", "Kim", None, "01/13/2020"]),
            (4, 1, ["M1003", "Cy", "Ng", None, "02/03/2020"]),
        ]
    }
    result, artifact, out = run(tmp_path, grid)
    assert [r[5:7] for r in out[1:]] == [
        (D(1985, 3, 4), D(2020, 1, 13)),
        (None, D(2020, 1, 13)),
        (None, "02/03/2020"),  # both orders appear in the column: kept as text
    ]
    assert [(i.cell, i.code, i.severity) for i in artifact.issues] == [
        ("D2", "ambiguous_date", "warning"),
        ("E4", "conflicting_date_order", "warning"),
        ("E4", "invalid_date", "error"),
    ]
    assert result.outcome == "errors"


@pytest.mark.parametrize("header", ["Member #", "Mbr No.", "ID", "Membership Number"])
def test_id_headers_as_people_write_them_and_leading_zeros_kept(
    tmp_path: Path, header: str
) -> None:
    grid: Grid = {
        "S": [
            (1, 1, [header, "First Name", "Last Name"]),
            (2, 1, ["00123", "Ann", "Lee"]),
            (3, 1, ["004567", "Bo", "Kim"]),
        ]
    }
    _result, artifact, out = run(tmp_path, grid, "csv")
    assert artifact.tables[0].columns[0].field == "member_id"
    assert [r[0] for r in out[1:]] == ["M00123", "M004567"]


@pytest.mark.parametrize("fmt", ["xlsx", "xls"])
def test_full_names_are_split_when_there_is_no_last_name_column(tmp_path: Path, fmt: str) -> None:
    grid: Grid = {
        "S": [
            (1, 1, ["Member ID", "Name", "Email"]),
            (2, 1, ["M1001", "Mary J. Blige", "m@example.com"]),
            (3, 1, ["M1002", "van Beethoven, Ludwig", "l@example.com"]),
            (4, 1, ["M1003", "MARTIN LUTHER KING JR.", "k@example.com"]),
            (5, 1, ["M1004", "Vincent van Gogh", "v@example.com"]),
            (6, 1, ["M1005", "Cher", "c@example.com"]),
        ]
    }
    _result, artifact, out = run(tmp_path, grid, fmt)
    assert [r[:3] for r in out[1:]] == [
        ("M1001", "Mary J.", "Blige"),
        ("M1002", "Ludwig", "van Beethoven"),
        ("M1003", "Martin Luther", "King Jr."),
        ("M1004", "Vincent", "van Gogh"),
        ("M1005", "Cher", None),
    ]
    [table] = artifact.tables
    assert (table.mapped_fields[:2], table.filled_fields, table.required_missing) == (
        ["member_id", "first_name"],
        ["last_name"],
        [],
    )
    assert [(i.cell, i.code) for i in artifact.issues] == [
        ("B6", "single_name"),
        ("B6", "required"),
    ]


def test_a_required_field_no_table_provides_is_an_error(tmp_path: Path) -> None:
    grid: Grid = {
        "S": [
            (1, 1, ["Member ID", "First Name", "Email"]),
            (2, 1, ["M1001", "Ann", "a@example.com"]),
        ]
    }
    result, artifact, _ = run(tmp_path, grid)
    assert (result.outcome, result.required_missing) == ("errors", ("last_name",))
    [issue] = [i for i in artifact.issues if i.code == "required_field_missing"]
    assert (issue.table, issue.field, issue.row, issue.severity) == ("t1", "last_name", 1, "error")


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_branch_labels_and_blank_lines_inside_a_roster(tmp_path: Path, fmt: str) -> None:
    grid: Grid = {
        "S": [
            (1, 1, HEADER),
            (2, 1, ["North branch"]),
            (3, 1, member(0)),
            (4, 1, member(1)),
            (6, 1, ["South branch"]),
            (7, 1, member(2)),
            (8, 1, ["Total: 3"]),
        ]
    }
    result, artifact, out = run(tmp_path, grid, fmt)
    assert [r[0] for r in out[1:]] == ["M1000", "M1001", "M1002"]
    assert [(t.range, t.continues, t.ended_by) for t in artifact.tables] == [
        ("A1:D4", None, "other"),
        ("A7:D7", "t1", "totals"),
    ]
    assert artifact.inputs[0].sheets[0].accounting == {
        "other": 2,
        "table_data": 3,
        "table_header": 1,
        "totals": 1,
    }
    assert (result.outcome, result.rows_outside_tables) == ("clean", 0)
