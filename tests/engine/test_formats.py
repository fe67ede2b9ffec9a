""".xls, .xlsb and .ods inputs (python-calamine, behind a memory guard) and CSV encodings and
delimiters: the same rows as the xlsx reader, and the same bad-input cases for each format."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from support.engine import cfb_file, leftovers, read_rows, rewrite_zip

from ade.engine import parse_artifact, run_engine
from ade.errors import InputError
from ade.samples import ROSTER_CONFIG
from ade.samples.formats import Grid, write_grid, write_ods, write_xlsb

GRID: Grid = {
    "Notes": [(1, 1, ["Read me first"])],
    "Members": [
        (1, 2, ["Club roster"]),
        (3, 2, ["Member ID", "First Name", "Last Name", "Email", "Phone"]),
        (4, 2, [10001, "Ann", "Lee", "ann@example.com", "555-201-0001"]),
        (6, 2, ["M10002", "Bo", "Kim", "bo@example.com", 5552010002]),
    ],
}
EXPECTED = [
    ("Member ID", "First Name", "Last Name", "Email", "Phone", "Date of Birth", "Join Date"),
    ("M10001", "Ann", "Lee", "ann@example.com", "(555) 201-0001", None, None),
    ("M10002", "Bo", "Kim", "bo@example.com", "(555) 201-0002", None, None),
]


def run(tmp_path: Path, source: Path, name: str | None = None, **kw: Any):
    out = tmp_path / "out"
    result = run_engine([source], ROSTER_CONFIG, out, input_names=[name or source.name], **kw)
    return (
        result,
        parse_artifact((out / "artifact.json").read_text()),
        read_rows(out / "normalized.xlsx"),
    )


def fails(tmp_path: Path, source: Path, name: str | None = None, **kw: Any) -> str:
    with pytest.raises(InputError) as info:
        run_engine(
            [source], ROSTER_CONFIG, tmp_path / "out", input_names=[name or source.name], **kw
        )
    assert leftovers(tmp_path / "out") == []
    return info.value.message


@pytest.mark.parametrize("fmt", ["xlsx", "xls", "xlsb", "ods"])
def test_every_workbook_format_gives_the_same_rows(tmp_path: Path, fmt: str) -> None:
    source = write_grid(tmp_path / f"members.{fmt}", GRID)
    stored = tmp_path / "01J9ZXSTORED"  # uploads are stored without their names
    stored.write_bytes(source.read_bytes())
    result, artifact, rows = run(tmp_path, stored, f"members.{fmt}")
    assert rows == EXPECTED
    record = artifact.inputs[0]
    assert (record.format, record.reader) == (fmt, "xlsx-stream" if fmt == "xlsx" else "calamine")
    assert [(s.name, s.outcome, s.accounting) for s in record.sheets] == [
        ("Notes", "no_header_row", {"other": 1}),
        ("Members", "tables_found", {"other": 1, "table_data": 2, "table_header": 1}),
    ]
    assert artifact.tables[0].range == "B3:F6"
    assert (result.outcome, result.rows_outside_tables) == ("clean", 0)


@pytest.mark.parametrize("fmt", ["xls", "ods"])
def test_dates_read_as_dates(tmp_path: Path, fmt: str) -> None:
    grid: Grid = {
        "S": [
            (1, 1, ["Member ID", "First Name", "Last Name", "Date of Birth"]),
            (2, 1, ["M10001", "Ann", "Lee", datetime(1985, 4, 3)]),
        ]
    }
    _, _, rows = run(tmp_path, write_grid(tmp_path / f"d.{fmt}", grid))
    assert rows[1][5] == datetime(1985, 4, 3)


@pytest.mark.parametrize("fmt", ["xls", "xlsb", "ods"])
def test_empty_file(tmp_path: Path, fmt: str) -> None:
    empty = tmp_path / f"e.{fmt}"
    empty.write_bytes(b"")
    assert fails(tmp_path, empty) == f"input 'e.{fmt}' is empty (0 bytes)"


@pytest.mark.parametrize("fmt", ["xls", "xlsb", "ods"])
def test_workbook_with_no_rows(tmp_path: Path, fmt: str) -> None:
    source = write_grid(tmp_path / f"e.{fmt}", {"Blank": []})
    assert fails(tmp_path, source) == (
        "no table found in 1 input(s) / 1 sheet(s): no header row followed by data rows "
        f"(e.{fmt}!Blank: empty)"
    )


def test_corrupt_xls(tmp_path: Path) -> None:
    source = write_grid(tmp_path / "c.xls", GRID)
    data = source.read_bytes()
    source.write_bytes(data[: len(data) // 2])
    assert fails(tmp_path, source).startswith(
        "input 'c.xls' is a corrupt Excel 97-2003 (.xls) file"
    )


def test_corrupt_xlsb(tmp_path: Path) -> None:
    source = write_grid(tmp_path / "c.xlsb", GRID)
    broken = rewrite_zip(
        source,
        tmp_path / "broken.xlsb",
        lambda name, data: data[:7] if name == "xl/worksheets/sheet2.bin" else data,
    )
    assert fails(tmp_path, broken) == "input 'broken.xlsb' sheet 'Members' is corrupt (OSError)"


def test_corrupt_ods(tmp_path: Path) -> None:
    source = write_grid(tmp_path / "c.ods", GRID)
    broken = rewrite_zip(
        source,
        tmp_path / "broken.ods",
        lambda name, data: data[: len(data) // 2] if name == "content.xml" else data,
    )
    assert (
        fails(tmp_path, broken)
        == "input 'broken.ods' is a corrupt OpenDocument spreadsheet (ParseError)"
    )


def test_encrypted_xls(tmp_path: Path) -> None:
    source = write_grid(tmp_path / "locked.xls", GRID)
    data = bytearray(source.read_bytes())
    # Turn the WRITEACCESS record (type 0x5C, 112 bytes) into FILEPASS (0x2F): what Excel
    # writes at that place when the workbook has a password.
    at = data.index(b"\x5c\x00\x70\x00")
    data[at : at + 2] = b"\x2f\x00"
    source.write_bytes(bytes(data))
    assert fails(tmp_path, source) == (
        "input 'locked.xls' is a password-protected (encrypted) .xls workbook; remove the "
        "password in Excel and upload it again"
    )


def test_encrypted_ods(tmp_path: Path) -> None:
    def encrypt(name: str, data: bytes) -> bytes:
        if name != "META-INF/manifest.xml":
            return data
        # What a password adds per encrypted part (the part is then ciphertext).
        return data.replace(
            b'media-type="text/xml"/>',
            b'media-type="text/xml"><manifest:encryption-data/></manifest:file-entry>',
        )

    source = rewrite_zip(write_grid(tmp_path / "plain.ods", GRID), tmp_path / "locked.ods", encrypt)
    assert fails(tmp_path, source) == (
        "input 'locked.ods' is a password-protected (encrypted) OpenDocument spreadsheet; "
        "save it again without a password and upload it again"
    )


def test_encrypted_xlsb_is_an_encrypted_office_file(tmp_path: Path) -> None:
    locked = cfb_file(tmp_path / "locked.xlsb", ["EncryptionInfo", "EncryptedPackage"])
    assert fails(tmp_path, locked).startswith(
        "input 'locked.xlsb' is a password-protected (encrypted) workbook"
    )


def test_huge_sparse_xls_is_refused_before_loading(tmp_path: Path) -> None:
    grid: Grid = {"Big": [(1, 1, ["Member ID"]), (65536, 256, ["far away"])]}
    source = write_grid(tmp_path / "big.xls", grid)
    assert source.stat().st_size < 10_000
    assert fails(tmp_path, source, memory_limit_mb=256) == (
        "input 'big.xls' sheet 'Big' declares 16,777,216 cells; a .xls sheet is loaded whole, "
        "and at most 1,398,101 cells fit the memory limit of 256 MiB (ADE_WORKER_MEM_MB). "
        "Save it as .xlsx (read as a stream) or trim its used range"
    )


def test_huge_sparse_ods_is_refused_before_loading(tmp_path: Path) -> None:
    source = write_ods(
        tmp_path / "big.ods",
        {"Big": [(1, 1, ["Member ID"])]},
        trailing_rows=1_000_000,
        trailing_columns=100,
    )
    assert source.stat().st_size < 10_000
    assert fails(tmp_path, source, memory_limit_mb=512).startswith(
        "input 'big.ods' sheet 'Big' declares 100,000,100 cells; a .ods sheet is loaded whole, "
        "and at most 2,796,202 cells fit the memory limit of 512 MiB"
    )


def test_huge_sparse_xlsb_is_refused_before_loading(tmp_path: Path) -> None:
    source = write_xlsb(
        tmp_path / "big.xlsb", {"Big": [(1, 1, ["Member ID"])]}, declared=(1_048_576, 16_384)
    )
    assert fails(tmp_path, source).startswith(
        "input 'big.xlsb' sheet 'Big' declares 17,179,869,184 cells; a .xlsb sheet is loaded whole"
    )


def test_a_sheet_that_fits_the_limit_is_read(tmp_path: Path) -> None:
    grid = {"S": [(1, 1, ["Member ID", "First Name", "Last Name"]), (2, 1, ["M1", "A", "B"])]}
    result, _, _ = run(tmp_path, write_grid(tmp_path / "ok.xls", grid), memory_limit_mb=1)
    assert result.rows_written == 1


# -- CSV ------------------------------------------------------------------------------------------

CSV_ROWS = "Member ID{d}First Name{d}Last Name\nM1001{d}Zoë{d}Müller\nM1002{d}Åsa{d}Øberg\n"


@pytest.mark.parametrize(
    ("encoding", "prefix", "expected", "reason"),
    [
        ("utf-8", b"", "utf-8", "valid UTF-8"),
        ("utf-8", b"\xef\xbb\xbf", "utf-8-sig", "UTF-8 byte order mark"),
        ("utf-16", b"", "utf-16", "UTF-16 byte order mark"),
        (
            "cp1252",
            b"",
            "cp1252",
            "not UTF-8: no UTF-8 multi-byte sequence, and every non-ASCII byte is a "
            "Windows-1252 character",
        ),
    ],
)
def test_csv_encodings_are_decided_and_reported(
    tmp_path: Path, encoding: str, prefix: bytes, expected: str, reason: str
) -> None:
    source = tmp_path / "m.csv"
    source.write_bytes(prefix + CSV_ROWS.format(d=",").encode(encoding))
    result, artifact, rows = run(tmp_path, source)
    assert [r[:3] for r in rows[1:]] == [("M1001", "Zoë", "Müller"), ("M1002", "Åsa", "Øberg")]
    csv_record = artifact.inputs[0].csv
    assert csv_record is not None
    assert (csv_record.encoding, csv_record.encoding_reason) == (expected, reason)
    assert result.outcome == "clean"


@pytest.mark.parametrize(
    ("delimiter", "name"), [(",", "comma"), (";", "semicolon"), ("\t", "tab"), ("|", "pipe")]
)
def test_csv_delimiters_are_detected_and_reported(
    tmp_path: Path, delimiter: str, name: str
) -> None:
    source = tmp_path / "m.csv"
    source.write_text("Exported 2024-01-01\n" + CSV_ROWS.format(d=delimiter), encoding="utf-8")
    _, artifact, rows = run(tmp_path, source)
    assert rows[2][:3] == ("M1002", "Åsa", "Øberg")
    csv_record = artifact.inputs[0].csv
    assert csv_record is not None
    assert (csv_record.delimiter, csv_record.delimiter_reason) == (
        delimiter,
        f"{name}: splits 3 of 4 sample line(s) into 3 fields",
    )


def test_undecodable_bytes_are_an_error_issue_never_a_silent_reencoding(tmp_path: Path) -> None:
    source = tmp_path / "m.csv"
    # Valid UTF-8 (Zoë) and one damaged sequence (\xc3 then "("): not latin-1, a damaged file.
    source.write_bytes(
        b"Member ID,First Name,Last Name\nM1001,Zo\xc3\xab,Lee\nM1002,Sm\xc3(ith,Ng\n"
    )
    result, artifact, rows = run(tmp_path, source)
    assert [r[:3] for r in rows[1:]] == [("M1001", "Zoë", "Lee"), ("M1002", "Sm\ufffd(ith", "Ng")]
    [issue] = artifact.issues
    assert (issue.pass_name, issue.input, issue.row, issue.code, issue.severity) == (
        "locate",
        "m.csv",
        3,
        "undecodable_bytes",
        "error",
    )
    assert issue.message == (
        "bytes at offset 54 are not valid UTF-8; each undecodable sequence is U+FFFD in the output"
    )
    assert result.outcome == "errors"
    assert artifact.inputs[0].csv is not None
    assert artifact.inputs[0].csv.encoding == "utf-8"
    assert "ith" not in issue.message
