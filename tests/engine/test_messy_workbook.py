"""The bundled messy workbook, end to end: exact output cells and exact artifact fields."""

# ruff: noqa: E501  (the expected rows read best one per line)

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from support.engine import read_rows

from ade.engine import ARTIFACT_SCHEMA, parse_artifact, run_engine
from ade.engine._artifact import SummaryRecord
from ade.samples import ROSTER_CONFIG
from ade.samples.generate import write_messy_workbook

D = datetime

HEADER = (
    "Member ID",
    "First Name",
    "Last Name",
    "Email",
    "Phone",
    "Date of Birth",
    "Join Date",
    "raw_Locker",
    "raw_Email (work)",
    "raw_Plan",
    "raw_Referred By",
)
N = None
EXPECTED_ROWS = [
    HEADER,
    ("M10001", "Alice", "Smith", "alice.smith@example.com", "(555) 201-0001", D(1985, 4, 3), D(2019, 1, 15), "L12", N, N, N),
    ("M10002", "Bob", "Jones", "bob.jones@example.com", "(555) 201-0002", D(1990, 3, 4), D(2020, 3, 5), N, N, N, N),
    ("M10003", "Carol", "Diaz", "carol@example", "(555) 201-0003", D(1978, 11, 30), D(2021, 6, 1), "L7", N, N, N),
    ("M10004", "Dan", N, "dan@example.com", "12345", D(1999, 12, 31), D(2022, 2, 28), N, N, N, N),
    ("M10005", "Eve", "Ng", "eve.ng@example.com", "(555) 201-0005", "not known", D(2023, 7, 4), "L3", N, N, N),
    ("M20001", "Frank", "Ochoa", "frank@example.com", "(555) 202-0001", D(1970, 1, 2), D(2015, 1, 5), N, "f.ochoa@work.example.com", "Gold", N),
    ("M20002", "Grace", "Park", "grace@example.com", "(555) 202-0002", D(1992, 2, 29), D(2016, 8, 20), N, N, "Silver", N),
    ("M20003", "Heidi", "Quinn", N, "(555) 202-0003", D(1988, 2, 3), D(2017, 9, 9), N, "heidi@work.example.com", "Gold", N),
    ("M30001", "Ivan", "Reyes", "ivan@example.com", N, D(1995, 5, 5), N, N, N, N, "Alice Smith"),
    ("M30002", "Judy", "Stone", "judy@example.com", N, D(1996, 5, 6), N, N, N, N, N),
]  # fmt: skip


@pytest.fixture
def messy_run(tmp_path: Path):
    source = write_messy_workbook(tmp_path / "messy.xlsx")
    events: list[tuple[str, dict]] = []
    out = tmp_path / "out"
    result = run_engine(
        [source], ROSTER_CONFIG, out, on_progress=lambda e, d: events.append((e, d))
    )
    return result, out, events


def test_normalized_cells_exact(messy_run) -> None:
    result, out, _ = messy_run
    assert read_rows(out / "normalized.xlsx") == EXPECTED_ROWS
    assert result.rows_written == 10
    assert result.tables_found == 3
    assert result.tables_written == 3
    assert result.mapped_fields == (
        "member_id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "date_of_birth",
        "join_date",
    )
    # Validation: 3 errors, 1 warning; transforms: 5 warnings (one phone, one unparsed date,
    # three numeric dates whose column gives no day/month order).
    assert (result.issue_count, result.errors, result.warnings) == (9, 3, 6)
    assert (result.outcome, result.rows_outside_tables) == ("errors", 0)
    assert result.required_missing == ()
    assert sorted(p.name for p in out.iterdir()) == ["artifact.json", "normalized.xlsx"]


def test_tables_found_with_exact_ranges(messy_run) -> None:
    _, out, _ = messy_run
    artifact = parse_artifact((out / "artifact.json").read_text())
    assert artifact.schema == ARTIFACT_SCHEMA
    got = [
        (
            t.id,
            t.sheet,
            t.range,
            t.header_row,
            t.first_data_row,
            t.last_data_row,
            t.data_rows,
            t.ended_by,
            t.status,
            t.output_first_row,
            t.output_last_row,
        )
        for t in artifact.tables
    ]
    assert got == [
        ("t1", "Roster", "B4:I9", 4, 5, 9, 5, "totals", "written", 2, 6),
        ("t2", "Roster", "A14:I17", 14, 15, 17, 3, "end_of_sheet", "written", 7, 9),
        ("t3", "New Signups", "C3:H5", 3, 4, 5, 2, "end_of_sheet", "written", 10, 11),
    ]
    sheets = artifact.inputs[0].sheets
    assert [(s.name, s.index, s.outcome, s.tables, s.rows_read) for s in sheets] == [
        ("Roster", 0, "tables_found", ["t1", "t2"], 14),
        ("Instructions", 1, "no_header_row", [], 3),
        ("New Signups", 2, "tables_found", ["t3"], 4),
    ]
    assert sheets[0].row_counts == {"blank": 3, "data": 8, "header": 2, "other": 3, "totals": 1}
    # Every non-blank row accounted for: the places add up to the rows read.
    assert sheets[0].accounting == {"other": 3, "table_data": 8, "table_header": 2, "totals": 1}
    assert sheets[1].accounting == {"other": 3}
    assert sheets[2].accounting == {"other": 1, "table_data": 2, "table_header": 1}
    assert [sum(s.accounting.values()) for s in sheets] == [s.rows_read for s in sheets]
    assert [s.blank_rows for s in sheets] == [3, 0, 1]
    assert sheets[1].row_counts == {"other": 3}
    assert sheets[2].row_counts == {"blank": 1, "data": 2, "header": 1, "other": 1}


def test_mapping_scores_rules_and_collision(messy_run) -> None:
    _, out, _ = messy_run
    artifact = parse_artifact((out / "artifact.json").read_text())
    t1, t2, t3 = artifact.tables
    assert [(c.letter, c.header, c.field, c.score) for c in t1.columns] == [
        ("B", "Member #", "member_id", 2.25),
        ("C", "First Name", "first_name", 2.25),
        ("D", "Surname", "last_name", 1.75),
        ("E", "E-mail Address", "email", 2.3),
        ("F", "Phone", "phone", 2.8),
        ("G", "DOB", "date_of_birth", 1.9),
        ("H", "Joined", "join_date", 2.0),
        ("I", "Locker", None, None),
    ]
    # Every contribution is named module:function with its delta.
    assert [(r.rule, r.field, r.delta) for r in t1.columns[5].rules] == [
        ("columns/first_name.py:detect_name_values", "first_name", 0.05),
        ("columns/last_name.py:detect_name_values", "last_name", 0.05),
        ("columns/date_of_birth.py:detect_date_values", "date_of_birth", 0.4),
        ("columns/date_of_birth.py:detect_header", "date_of_birth", 1.5),
        ("columns/join_date.py:detect_date_values", "join_date", 0.4),
    ]
    # Two columns win "email": the exact label keeps it, the other stays as an unmapped column.
    work_email = t2.columns[4]
    assert (work_email.header, work_email.status, work_email.field) == (
        "Email (work)",
        "unmapped",
        None,
    )
    # "Email (work)" is a qualified email header: a synonym's 1.5, plus its values' 1.0.
    assert work_email.unmapped_reason == "field 'email' went to column D (score 3 vs 2.5)"
    assert work_email.output_header == "raw_Email (work)"
    assert t2.columns[3].field == "email"
    assert t3.mapped_fields == ["member_id", "first_name", "last_name", "email", "date_of_birth"]
    assert [(u.table, u.column, u.header, u.output_header) for u in artifact.unmapped_columns] == [
        ("t1", "I", "Locker", "raw_Locker"),
        ("t2", "E", "Email (work)", "raw_Email (work)"),
        ("t2", "I", "Plan", "raw_Plan"),
        ("t3", "H", "Referred By", "raw_Referred By"),
    ]
    assert artifact.unmapped_columns[0].reason == "no detector voted for any field"
    assert artifact.unmapped_columns[2].reason == (
        "best score 0.25 (field 'first_name') is below the threshold 1"
    )
    assert [(c.index, c.letter, c.header, c.kind, c.field) for c in artifact.output.columns][
        6:
    ] == [
        (6, "G", "Join Date", "field", "join_date"),
        (7, "H", "raw_Locker", "unmapped", None),
        (8, "I", "raw_Email (work)", "unmapped", None),
        (9, "J", "raw_Plan", "unmapped", None),
        (10, "K", "raw_Referred By", "unmapped", None),
    ]


def test_issues_transforms_hooks_and_passes(messy_run) -> None:
    _, out, events = messy_run
    artifact = parse_artifact((out / "artifact.json").read_text())
    issues = [
        (i.table, i.sheet, i.row, i.cell, i.field, i.code, i.severity, i.message, i.output_row)
        for i in artifact.issues
        if i.pass_name == "validate"
    ]
    assert issues == [
        ("t1", "Roster", 8, "D8", "last_name", "required", "error", "Last Name is required", 5),
        ("t1", "Roster", 7, "E7", "email", "invalid_email", "error", "not a valid email address", 4),
        ("t1", "Roster", 8, "F8", "phone", "invalid_phone", "warning",
         "phone number is not in (555) 123-4567 form", 5),
        ("t1", "Roster", 9, "G9", "date_of_birth", "invalid_date", "error", "not a date", 6),
    ]  # fmt: skip
    assert artifact.issues_truncated is False
    ambiguous = "day and month could be swapped; read month-first because no date in this column shows the order"
    assert [
        (i.table, i.cell, i.field, i.code, i.message, i.output_row)
        for i in artifact.issues
        if i.pass_name == "transform"
    ] == [
        ("t1", "F8", "phone", "unrecognized_phone", "not a 10-digit number", 5),
        ("t1", "G6", "date_of_birth", "ambiguous_date", ambiguous, 3),
        ("t1", "G9", "date_of_birth", "unparsed_date", "not a known date format", 6),
        ("t2", "H15", "join_date", "ambiguous_date", ambiguous, 7),
        ("t3", "G5", "date_of_birth", "ambiguous_date", ambiguous, 11),
    ]  # fmt: skip
    assert artifact.summary == SummaryRecord(
        outcome="errors",
        errors=3,
        warnings=6,
        rows_read=21,
        rows_written=10,
        rows_outside_tables=0,
        tables_found=3,
        tables_written=3,
        unrecognised_tables=0,
        required_missing=[],
    )
    fields = {f.field: (f.checked, f.errors, f.warnings) for f in artifact.validation.fields}
    assert fields["last_name"] == (10, 1, 0)
    assert fields["join_date"] == (8, 0, 0)
    transforms = {t.field: (t.values, t.changed, t.warnings) for t in artifact.transforms}
    assert transforms["phone"] == (8, 6, 1)
    assert transforms["date_of_birth"] == (10, 9, 3)
    assert [(h.hook, h.rule, h.annotations) for h in artifact.hooks] == [
        ("on_job_start", "hooks/audit.py:on_job_start", [{"inputs": 1}]),
        ("after_mapping", "hooks/audit.py:after_mapping", [{"tables": 3, "unmapped_columns": 4}]),
        ("on_job_end", "hooks/audit.py:on_job_end", [{"rows_written": 10, "issues": 9}]),
    ]
    assert [p.name for p in artifact.passes] == ["detect", "map", "transform", "validate", "write"]
    assert artifact.passes[0].stats == {
        "rows": 21,
        "sheets": 3,
        "tables": 3,
        "rows_outside_tables": 0,
    }
    assert [e for e, _ in events] == ["pass_started", "pass_finished"] * 5
    assert events[-1][1]["pass"] == "write"
    assert events[-1][1]["rows"] == 10


def test_artifact_round_trips_and_rejects_unknown_keys(messy_run) -> None:
    _, out, _ = messy_run
    text = (out / "artifact.json").read_text()
    parse_artifact(text)
    doc = json.loads(text)
    doc["tables"][0]["surprise"] = 1
    with pytest.raises(Exception, match="surprise"):
        parse_artifact(json.dumps(doc))
    doc = json.loads(text)
    del doc["issues"][0]["cell"]
    with pytest.raises(Exception, match="cell"):
        parse_artifact(json.dumps(doc))
    doc = json.loads(text)
    doc["inputs"][0]["sheets"][0]["accounting"]["other"] -= 1  # a row unaccounted for
    with pytest.raises(
        ValueError, match=r"sheets\[0\]\.accounting adds up to 13, not rows_read 14"
    ):
        parse_artifact(json.dumps(doc))


def test_output_declares_its_dimension(messy_run) -> None:
    """openpyxl re-reads a sheet without <dimension> twice; ADE's output always has one."""
    import zipfile

    _, out, _ = messy_run
    with zipfile.ZipFile(out / "normalized.xlsx") as zf:
        sheet = zf.read("xl/worksheets/sheet1.xml")
    assert b'<dimension ref="A1:K11"/>' in sheet


def test_too_many_tables_is_an_input_error(tmp_path: Path, monkeypatch) -> None:
    from ade.engine import _locate
    from ade.errors import InputError

    monkeypatch.setattr(_locate, "MAX_TABLES", 2)
    source = write_messy_workbook(tmp_path / "messy.xlsx")
    with pytest.raises(InputError) as info:
        run_engine([source], ROSTER_CONFIG, tmp_path / "out")
    assert info.value.message == (
        "input 'messy.xlsx' has more than 2 tables (sheet 'New Signups', row 5); ADE stops there"
    )


def test_too_many_tables_across_inputs_says_the_limit_is_per_run(
    tmp_path: Path, monkeypatch
) -> None:
    from ade.engine import _locate
    from ade.errors import InputError

    monkeypatch.setattr(_locate, "MAX_TABLES", 4)  # the messy workbook has 3
    first = write_messy_workbook(tmp_path / "first.xlsx")
    second = write_messy_workbook(tmp_path / "second.xlsx")
    with pytest.raises(InputError) as info:
        run_engine([first, second], ROSTER_CONFIG, tmp_path / "out")
    assert info.value.message == (
        "the inputs have more than 4 tables together (the limit was reached in input "
        "'second.xlsx', sheet 'Roster', row 17); ADE stops there"
    )


def test_progress_events_carry_counts_only(tmp_path: Path, monkeypatch) -> None:
    from ade.engine import _plan

    monkeypatch.setattr(_plan, "PROGRESS_EVERY_ROWS", 4)
    source = write_messy_workbook(tmp_path / "messy.xlsx")
    events: list[tuple[str, dict]] = []
    run_engine(
        [source], ROSTER_CONFIG, tmp_path / "out", on_progress=lambda e, d: events.append((e, d))
    )
    progress = [(d["pass"], d["rows"]) for e, d in events if e == "pass_progress"]
    assert progress == [
        ("detect", 4),
        ("detect", 8),
        ("detect", 12),
        ("detect", 16),
        ("detect", 20),
        ("transform", 5),
        ("transform", 8),
        ("write", 5),
        ("write", 8),
    ]
    finished = {d["pass"]: d for e, d in events if e == "pass_finished"}
    assert finished["map"] == {
        "pass": "map",
        "seconds": finished["map"]["seconds"],
        "tables": 3,
        "tables_written": 3,
        "mapped_columns": 19,
        "unmapped_columns": 4,
    }


def test_output_larger_than_an_excel_sheet_is_refused_before_writing(
    tmp_path: Path, monkeypatch
) -> None:
    from ade.engine import _map
    from ade.errors import InputError

    monkeypatch.setattr(_map, "EXCEL_MAX_ROWS", 9)
    source = write_messy_workbook(tmp_path / "messy.xlsx")
    with pytest.raises(InputError) as info:
        run_engine([source], ROSTER_CONFIG, tmp_path / "out")
    assert info.value.message == (
        "the normalized output would be 11 rows by 11 columns; an Excel sheet holds at most "
        "9 rows and 16384 columns"
    )
    assert list((tmp_path / "out").iterdir()) == []
