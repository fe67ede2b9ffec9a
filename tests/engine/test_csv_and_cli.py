"""CSV inputs and the ``ade run`` / ``ade demo`` commands (real subprocesses)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from support.engine import copy_config, edit_manifest, read_rows, rewrite_zip

from ade.engine import parse_artifact, run_engine
from ade.samples import ROSTER_CONFIG
from ade.samples.generate import write_messy_csv, write_messy_workbook


def test_messy_csv_exact_cells(tmp_path: Path) -> None:
    source = write_messy_csv(tmp_path / "club.csv")
    result = run_engine([source], ROSTER_CONFIG, tmp_path / "out")
    assert read_rows(tmp_path / "out" / "normalized.xlsx") == [
        ("Member ID", "First Name", "Last Name", "Email", "Phone", "Date of Birth", "Join Date"),
        ("M501", "Kim", "Lee", "kim.lee@example.com", "(555) 303-0001",
         datetime(1999, 9, 9), datetime(2020, 1, 2)),
        ("M502", "Lou", "Ray", "lou@example", "(555) 303-0002",
         datetime(1980, 1, 5), datetime(2021, 3, 4)),
    ]  # fmt: skip
    artifact = parse_artifact((tmp_path / "out" / "artifact.json").read_text())
    source_record = artifact.inputs[0]
    assert (source_record.format, source_record.sheets[0].name) == ("csv", "club")
    table = artifact.tables[0]
    assert (table.range, table.ended_by, table.data_rows) == ("A3:G5", "totals", 2)
    assert [c.header for c in table.columns] == [
        "member_no",
        "first name",
        "last name",
        "email address",
        "tel",
        "birth date",
        "start date",
    ]
    assert result.issue_count == 4
    assert [(i.cell, i.code) for i in artifact.issues] == [
        ("G4", "ambiguous_date"),  # 01/02/2020: the column gives no day/month order
        ("A4", "invalid_member_id"),  # "501" -> "M501": the config wants 4+ digits
        ("A5", "invalid_member_id"),
        ("D5", "invalid_email"),
    ]


def test_csv_in_latin1_and_semicolons(tmp_path: Path) -> None:
    source = tmp_path / "export.csv"
    source.write_bytes("Member ID;First Name;Last Name\nM1001;Zoë;Müller\n".encode("latin-1"))
    run_engine([source], ROSTER_CONFIG, tmp_path / "out")
    assert read_rows(tmp_path / "out" / "normalized.xlsx")[1][:3] == ("M1001", "Zoë", "Müller")


def test_several_inputs_in_one_run(tmp_path: Path) -> None:
    book = write_messy_workbook(tmp_path / "a.xlsx")
    text = write_messy_csv(tmp_path / "b.csv")
    result = run_engine([book, text], ROSTER_CONFIG, tmp_path / "out", input_names=["A", "B.csv"])
    assert (result.tables_found, result.rows_written) == (4, 12)
    artifact = parse_artifact((tmp_path / "out" / "artifact.json").read_text())
    assert [(t.id, t.input) for t in artifact.tables] == [
        ("t1", "A"),
        ("t2", "A"),
        ("t3", "A"),
        ("t4", "B.csv"),
    ]


def ade(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ade.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_ade_run_prints_a_summary(tmp_path: Path) -> None:
    source = write_messy_workbook(tmp_path / "messy.xlsx")
    done = ade("run", str(source), "--config", str(ROSTER_CONFIG), "--out", "result", cwd=tmp_path)
    # The sample has error-level issues (an invalid e-mail, an empty required last name, a date
    # of birth that is not a date): the run finished, with errors, and says so in its exit code.
    assert done.returncode == 3, done.stderr
    assert done.stdout.splitlines() == [
        "tables: 3 found, 3 written, 10 row(s) in normalized.xlsx",
        "  t1  messy.xlsx!Roster B4:I9  5 row(s), 7 mapped, 1 unmapped column(s)",
        "  t2  messy.xlsx!Roster A14:I17  3 row(s), 7 mapped, 2 unmapped column(s)",
        "  t3  messy.xlsx!New Signups C3:H5  2 row(s), 5 mapped, 1 unmapped column(s)",
        "  messy.xlsx!Instructions: no header row",
        "mapped fields: member_id, first_name, last_name, email, phone, date_of_birth, join_date"
        " (7 of 7)",
        "required fields missing: none",
        "issues: 3 errors, 6 warnings, 0 rows outside any table",
        "wrote result/normalized.xlsx and result/artifact.json",
        "outcome: finished with errors (exit 3, --fail-on errors)",
    ]
    assert (tmp_path / "result" / "normalized.xlsx").is_file()


@pytest.mark.parametrize(
    ("fail_on", "errors_exit", "warnings_exit", "clean_exit"),
    [("errors", 3, 0, 0), ("warnings", 3, 3, 0), ("never", 0, 0, 0)],
)
def test_ade_run_exit_code_follows_fail_on(
    tmp_path: Path, fail_on: str, errors_exit: int, warnings_exit: int, clean_exit: int
) -> None:
    header = "Member ID,First Name,Last Name,Email\n"
    files = {
        "errors.csv": header + "M1001,Ann,,a@example.com\n",  # a required value missing
        "warnings.csv": header + "M1001,Ann,Lee,a@example.com\n\n\n\n\n7,8,9\n",  # outside
        "clean.csv": header + "M1001,Ann,Lee,a@example.com\n",
    }
    codes = []
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        done = ade("run", name, "--config", str(ROSTER_CONFIG), "--out", f"out-{name}", "--fail-on",
                   fail_on, cwd=tmp_path)  # fmt: skip
        codes.append(done.returncode)
        if name == "warnings.csv":
            assert "issues: 0 errors, 1 warnings, 1 rows outside any table" in done.stdout
            assert "  rows outside any table: warnings.csv!warnings row 7" in done.stdout
    assert codes == [errors_exit, warnings_exit, clean_exit]


def test_ade_run_failures_are_one_line(tmp_path: Path) -> None:
    fake = tmp_path / "fake.xlsx"
    fake.write_text("not a workbook")
    done = ade("run", str(fake), "--config", str(ROSTER_CONFIG), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        "ade run: error: input 'fake.xlsx' is not a spreadsheet: an .xlsx workbook is a zip "
        "archive and this file is not one\n"
    )
    broken = copy_config(tmp_path)
    (broken / "manifest.json").write_text("{")
    source = write_messy_workbook(tmp_path / "messy.xlsx")
    done = ade("run", str(source), "--config", str(broken), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == (
        "ade run: error: config package is invalid (1 problem(s)): manifest.json: bad JSON at "
        "line 1 column 2: Expecting property name enclosed in double quotes\n"
    )
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_ade_run_config_error_traceback_only_with_verbose(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    path = config / "columns" / "email.py"
    path.write_text(
        path.read_text() + "\ndef validate(*, values):\n    raise ValueError(values[0])\n"
    )
    source = write_messy_workbook(tmp_path / "messy.xlsx")
    done = ade("run", str(source), "--config", str(config), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "ade run: error: config code raised ValueError in columns/email.py:validate during the "
        "validate pass",
        "ade run: re-run with --verbose to see the traceback",
    ]
    done = ade("run", str(source), "--config", str(config), "-v", cwd=tmp_path)
    assert "ValueError: alice.smith@example.com" in done.stderr


def test_ade_demo(tmp_path: Path) -> None:
    done = ade("demo", "--out", "demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "sample input: demo/sample-roster.xlsx"
    assert "tables: 3 found, 3 written, 10 row(s) in normalized.xlsx" in lines
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [
        "artifact.json",
        "normalized.xlsx",
        "sample-roster.xlsx",
    ]


def test_stored_document_without_extension_and_xlsm(tmp_path: Path) -> None:
    """Uploaded documents are stored without a name; an .xlsm is an xlsx with another
    content type. Both are read as workbooks."""

    book = write_messy_workbook(tmp_path / "messy.xlsx")
    stored = tmp_path / "01JDOCUMENT"
    stored.write_bytes(book.read_bytes())

    def macro_enabled(name: str, data: bytes) -> bytes:
        if name != "[Content_Types].xml":
            return data
        data = data.replace(
            b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
            b"application/vnd.ms-excel.sheet.macroEnabled.main+xml",
        )
        assert b"macroEnabled" in data
        return data

    macro = rewrite_zip(book, tmp_path / "macro.xlsm", macro_enabled)
    result = run_engine(
        [stored, macro], ROSTER_CONFIG, tmp_path / "out", input_names=["members", "macro.xlsm"]
    )
    assert (result.tables_found, result.rows_written) == (6, 20)


def test_side_by_side_tables_and_writer_options(tmp_path: Path) -> None:
    from support.engine import write_xlsx

    source = write_xlsx(
        tmp_path / "side.xlsx",
        {
            "Two": [
                (2, 2, ["Member ID", "First Name", "Last Name", "Notes", None, None,
                        "Member ID", "First Name", "Last Name", "Notes"]),
                (3, 2, ["M1001", "Ann", "Lee", "a", None, None, "M2001", "Bo", "Kim", "b"]),
                (4, 2, ["M1002", "Cy", "Ng", None, None, None, "M2002", "Di", "Oz", None]),
                (5, 2, ["M1003", "Ed", "Po"]),
            ]
        },
    )  # fmt: skip
    config = copy_config(tmp_path)
    edit_manifest(config, lambda d: d["writer"].update(unmapped_prefix=""))
    run_engine([source], config, tmp_path / "out")
    artifact = parse_artifact((tmp_path / "out" / "artifact.json").read_text())
    assert [(t.id, t.range, t.data_rows, t.ended_by) for t in artifact.tables] == [
        ("t1", "B2:E5", 3, "end_of_sheet"),
        ("t2", "H2:K4", 2, "end_of_sheet"),  # blank in row 5 (within the tolerance), then the end
    ]
    rows = read_rows(tmp_path / "out" / "normalized.xlsx")
    assert rows[0] == (
        "Member ID", "First Name", "Last Name", "Email", "Phone", "Date of Birth", "Join Date",
        "Notes",
    )  # fmt: skip
    assert [r[:3] + r[7:] for r in rows[1:]] == [
        ("M1001", "Ann", "Lee", "a"),
        ("M1002", "Cy", "Ng", None),
        ("M1003", "Ed", "Po", None),
        ("M2001", "Bo", "Kim", "b"),
        ("M2002", "Di", "Oz", None),
    ]
    # Without unmapped columns the output is the fields only; the artifact still lists them.
    edit_manifest(config, lambda d: d["writer"].update(append_unmapped=False))
    run_engine([source], config, tmp_path / "out2")
    assert len(read_rows(tmp_path / "out2" / "normalized.xlsx")[0]) == 7
    artifact = parse_artifact((tmp_path / "out2" / "artifact.json").read_text())
    assert [(u.column, u.header, u.output_header) for u in artifact.unmapped_columns] == [
        ("E", "Notes", None),
        ("K", "Notes", None),
    ]


def test_utf16_tab_separated_text(tmp_path: Path) -> None:
    """What Excel's "Unicode Text" export produces."""
    source = tmp_path / "export.txt"
    source.write_bytes(
        "Member ID\tFirst Name\tLast Name\r\nM1001\tZoë\tMüller\r\n".encode("utf-16")
    )
    run_engine([source], ROSTER_CONFIG, tmp_path / "out")
    assert read_rows(tmp_path / "out" / "normalized.xlsx")[1][:3] == ("M1001", "Zoë", "Müller")


def test_ade_run_unwritable_output_is_one_line(tmp_path: Path) -> None:
    source = write_messy_workbook(tmp_path / "messy.xlsx")
    (tmp_path / "taken").write_text("a file where the output folder should be")
    done = ade("run", str(source), "--config", str(ROSTER_CONFIG), "--out", "taken", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == "ade run: error: File exists: taken\n"


def test_ade_demo_unwritable_output_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file where the output folder should be")
    done = ade("demo", "--out", "taken", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == "ade demo: error: File exists: taken\n"


def test_ade_run_with_fail_on_errors_in_the_manifest_fails(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    edit_manifest(config, lambda d: d["engine"].update(fail_on_errors=True))
    (tmp_path / "m.csv").write_text("Member ID,First Name,Last Name\nM1001,Ann,\n")
    done = ade("run", "m.csv", "--config", str(config), "--out", "out", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == (
        "ade run: error: finished with 1 error-level issue(s), which the config's manifest "
        "makes a failure (engine.fail_on_errors); the artifact lists them\n"
    )
    assert "issues: 1 errors, 0 warnings, 0 rows outside any table" in done.stdout
    assert "outcome:" not in done.stdout  # no "finished" line for a failed run
    assert (tmp_path / "out" / "artifact.json").is_file()  # the issues stay readable
