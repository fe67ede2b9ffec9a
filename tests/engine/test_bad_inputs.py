"""Inputs ADE cannot use: each gets a clear InputError and leaves nothing behind."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
from support.engine import (
    cfb_file,
    leftovers,
    patch_zip_entry,
    read_rows,
    simple_table,
    write_xlsx,
)

from ade.engine import parse_artifact, run_engine
from ade.engine._readers import MAX_ROW_CELLS
from ade.errors import InputError
from ade.samples import ROSTER_CONFIG
from ade.samples.generate import write_messy_workbook


def fails(tmp_path: Path, source: Path, name: str | None = None) -> str:
    out = tmp_path / "out"
    names = [name] if name else None
    with pytest.raises(InputError) as info:
        run_engine([source], ROSTER_CONFIG, out, input_names=names)
    assert leftovers(out) == []
    return info.value.message


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.xlsx"
    empty.write_bytes(b"")
    assert fails(tmp_path, empty) == "input 'empty.xlsx' is empty (0 bytes)"


def test_a_folder_given_as_input(tmp_path: Path) -> None:
    folder = tmp_path / "exports.xlsx"
    folder.mkdir()
    assert fails(tmp_path, folder) == "input 'exports.xlsx' is a folder, not a file"


def test_text_file_named_xlsx(tmp_path: Path) -> None:
    fake = tmp_path / "report.xlsx"
    fake.write_text("this is a note, not a workbook\n")
    assert fails(tmp_path, fake) == (
        "input 'report.xlsx' is not a spreadsheet: an .xlsx workbook is a zip archive and "
        "this file is not one"
    )


def test_binary_file_with_unknown_name(tmp_path: Path) -> None:
    blob = tmp_path / "upload.bin"
    blob.write_bytes(bytes(range(256)) * 8)
    assert fails(tmp_path, blob) == (
        "input 'upload.bin' is not a spreadsheet "
        "(ADE reads .xlsx, .xlsm, .xlsb, .xls, .ods and .csv files)"
    )


def test_truncated_zip(tmp_path: Path) -> None:
    good = write_messy_workbook(tmp_path / "good.xlsx")
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert fails(tmp_path, broken) == (
        "input 'broken.xlsx' is a corrupt zip archive (BadZipFile); the workbook is damaged "
        "or was not fully uploaded"
    )


def test_corrupt_sheet_data_inside_a_valid_zip(tmp_path: Path) -> None:
    good = write_messy_workbook(tmp_path / "good.xlsx")
    broken = tmp_path / "broken.xlsx"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(broken, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = data[: len(data) // 2]  # cut mid-element
            dst.writestr(info, data)
    assert fails(tmp_path, broken) == (
        "input 'broken.xlsx' sheet 'Roster' is corrupt after row 7 (ParseError)"
    )


def test_zip_that_is_not_a_workbook(tmp_path: Path) -> None:
    archive = tmp_path / "photos.xlsx"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.txt", "hello")
    assert fails(tmp_path, archive) == (
        "input 'photos.xlsx' is a zip archive but not a spreadsheet (no xl/workbook.xml, "
        "xl/workbook.bin or content.xml)"
    )


@pytest.mark.parametrize(
    ("parts", "what"),
    [
        (
            ["[Content_Types].xml", "xl/workbook.bin"],
            "could not be opened as a .xlsb workbook (CalamineError); it is damaged",
        ),
        (["mimetype", "content.xml"], "is a corrupt OpenDocument spreadsheet (ParseError)"),
    ],
)
def test_other_spreadsheet_zips_are_read_by_their_format(
    tmp_path: Path, parts: list[str], what: str
) -> None:
    # Whatever the name says, the parts decide the format; a damaged one says so.
    archive = tmp_path / "upload.xlsx"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in parts:
            zf.writestr(part, "x")
    assert fails(tmp_path, archive) == f"input 'upload.xlsx' {what}"


@pytest.mark.parametrize(
    ("flag_bits", "method", "reason"),
    [
        (
            0x1,
            None,
            "is encrypted (a zip password); save the workbook again from Excel without a password",
        ),
        (
            0,
            99,
            "uses zip compression method 99, which ADE cannot read; save the workbook again "
            "from Excel",
        ),
    ],
)
def test_workbook_zip_with_an_unreadable_entry(
    tmp_path: Path, flag_bits: int, method: int | None, reason: str
) -> None:
    source = write_messy_workbook(tmp_path / "locked.xlsx")
    patch_zip_entry(source, "xl/worksheets/sheet1.xml", flag_bits=flag_bits, method=method)
    assert fails(tmp_path, source) == (
        f"input 'locked.xlsx' cannot be read: its part xl/worksheets/sheet1.xml {reason}"
    )


def test_password_protected_workbook(tmp_path: Path) -> None:
    locked = cfb_file(tmp_path / "locked.xlsx", ["EncryptionInfo", "EncryptedPackage"])
    assert fails(tmp_path, locked) == (
        "input 'locked.xlsx' is a password-protected (encrypted) workbook; remove the password "
        "in Excel (File > Info > Protect Workbook) and upload it again"
    )


def test_ole_file_with_a_damaged_workbook_stream(tmp_path: Path) -> None:
    legacy = cfb_file(tmp_path / "old.xls", ["Workbook"])
    assert fails(tmp_path, legacy) == (
        "input 'old.xls' is a corrupt Excel 97-2003 (.xls) file (no BOF record)"
    )


def test_display_name_is_used_in_messages(tmp_path: Path) -> None:
    stored = tmp_path / "01J9ZX"  # documents are stored without their names
    stored.write_bytes(b"")
    assert fails(tmp_path, stored, "members.xlsx") == "input 'members.xlsx' is empty (0 bytes)"


def test_no_header_anywhere_is_an_error_naming_each_sheet(tmp_path: Path) -> None:
    notes = write_xlsx(
        tmp_path / "notes.xlsx",
        {
            "Readme": [(1, 1, ["Nothing to see here"]), (3, 1, [12, 14, 19])],
            "Empty": [],
        },
    )
    assert fails(tmp_path, notes) == (
        "no table found in 1 input(s) / 2 sheet(s): no header row followed by data rows "
        "(notes.xlsx!Readme: no header row, notes.xlsx!Empty: empty); "
        "1 data row(s) outside any table"
    )


def test_a_sheet_without_header_next_to_a_good_one_is_reported(tmp_path: Path) -> None:
    book = write_xlsx(
        tmp_path / "mixed.xlsx",
        {"Lookup": [(1, 1, ["Code", "Meaning"]), (2, 1, ["G", "Gold"])], "Data": simple_table()},
    )
    run_engine([book], ROSTER_CONFIG, tmp_path / "out")
    artifact = parse_artifact((tmp_path / "out" / "artifact.json").read_text())
    assert [(s.name, s.outcome, s.tables) for s in artifact.inputs[0].sheets] == [
        ("Lookup", "no_header_row", []),
        ("Data", "tables_found", ["t1"]),
    ]


def test_16384_columns(tmp_path: Path) -> None:
    import xlsxwriter

    wide = tmp_path / "wide.xlsx"
    workbook = xlsxwriter.Workbook(str(wide), {"constant_memory": True})
    sheet = workbook.add_worksheet("Wide")
    sheet.write_row(0, 0, ["Member ID", "First Name", *[f"c{i}" for i in range(16382)]])
    sheet.write_row(1, 0, ["M1", "Ann", *range(16382)])
    workbook.close()
    assert fails(tmp_path, wide) == (
        f"input 'wide.xlsx' sheet 'Wide' row 1 has 16384 filled cells; ADE reads at most "
        f"{MAX_ROW_CELLS} columns per row"
    )


def test_huge_declared_dimension_but_sparse(tmp_path: Path) -> None:
    """A cell at XFD1048576 makes the declared dimension A1:XFD1048576 (17 billion cells).
    Nothing may be allocated by that: only the cells present are read."""
    import xlsxwriter

    sparse = tmp_path / "sparse.xlsx"
    workbook = xlsxwriter.Workbook(str(sparse))
    sheet = workbook.add_worksheet("Sparse")
    for row, column, cells in simple_table(rows=2):
        sheet.write_row(row - 1, column - 1, cells)
    sheet.write(1048575, 16383, "stray")
    workbook.close()
    with zipfile.ZipFile(sparse) as zf:
        assert b'<dimension ref="A1:XFD1048576"/>' in zf.read("xl/worksheets/sheet1.xml")
    out = tmp_path / "out"
    result = run_engine([sparse], ROSTER_CONFIG, out)
    assert result.rows_written == 2
    assert read_rows(out / "normalized.xlsx")[1][:4] == (
        "M1001",
        "First1",
        "Last1",
        "p1@example.com",
    )
    artifact = parse_artifact((out / "artifact.json").read_text())
    sheet_record = artifact.inputs[0].sheets[0]
    assert sheet_record.rows_read == 4
    assert sheet_record.row_counts == {"blank": 1048572, "data": 2, "header": 1, "other": 1}
    assert artifact.tables[0].range == "A1:D3"


def test_csv_with_nul_bytes_is_not_text(tmp_path: Path) -> None:
    bad = tmp_path / "members.csv"
    bad.write_bytes(b"Member ID,First Name\x00\x00\x00,Last\n")
    assert fails(tmp_path, bad) == (
        "input 'members.csv' is not a spreadsheet "
        "(ADE reads .xlsx, .xlsm, .xlsb, .xls, .ods and .csv files)"
    )


def test_a_failing_second_input_leaves_nothing(tmp_path: Path) -> None:
    good = write_messy_workbook(tmp_path / "good.xlsx")
    bad = tmp_path / "bad.xlsx"
    shutil.copy(good, bad)
    bad.write_bytes(bad.read_bytes()[:100])
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"'bad\.xlsx' is a corrupt zip archive"):
        run_engine([good, bad], ROSTER_CONFIG, out)
    assert leftovers(out) == []
