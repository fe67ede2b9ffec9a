"""The streaming .xlsx writer: every cell type round-trips through openpyxl, and the sheet
never exists uncompressed on disk (so a per-file size limit bounds only the final file)."""

from __future__ import annotations

import datetime as dt
import decimal
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import openpyxl

from ade.engine._xlsx_stream import EXCEL_MAX_TEXT, StreamingXlsxWriter


def test_every_cell_type_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "out.xlsx"
    writer = StreamingXlsxWriter(
        path, "A&B 'q'", ["Text", "Number", "When", "Other"], [None, None, "datetime", None], 5
    )
    utc = dt.UTC
    writer.write_rows(
        [
            ["a < b & c > d", 42, dt.datetime(2024, 2, 29, 13, 45, 30), True],
            ["  padded  ", 2.5, dt.datetime(2024, 1, 1, 8, 0, tzinfo=utc), dt.date(1999, 12, 31)],
            ["bell\x07tab\tnl\nend", float("nan"), None, dt.time(6, 30)],
            ["=1+1", decimal.Decimal("1.25"), None, dt.timedelta(hours=36)],
            ["x" * (EXCEL_MAX_TEXT + 10), -7, None, ""],
        ]
    )
    writer.close()
    assert writer.truncated_cells == 1
    workbook = openpyxl.load_workbook(path)
    sheet = workbook.active
    assert sheet.title == "A&B 'q'"
    assert sheet.freeze_panes == "A2"
    assert [c.font.b for c in sheet[1]] == [True, True, True, True]
    rows = [tuple(c.value for c in row) for row in sheet.iter_rows()]
    assert rows[0] == ("Text", "Number", "When", "Other")
    assert rows[1] == ("a < b & c > d", 42, dt.datetime(2024, 2, 29, 13, 45, 30), True)
    assert rows[2] == ("  padded  ", 2.5, dt.datetime(2024, 1, 1, 8, 0), dt.datetime(1999, 12, 31))
    # XML cannot carry \x07: it is stored the way Excel spells it (Excel decodes it on load,
    # openpyxl shows the escape); tab and newline are legal and stay as they are.
    assert rows[3] == ("bell_x0007_tab\tnl\nend", "#NUM!", None, dt.time(6, 30))
    assert rows[4] == ("=1+1", 1.25, None, dt.timedelta(hours=36))  # text, never a formula
    assert rows[5][:2] == ("x" * EXCEL_MAX_TEXT, -7)
    assert rows[5][3] is None
    assert sheet["C2"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert sheet["D3"].number_format == "yyyy-mm-dd"
    with zipfile.ZipFile(path) as zf:
        assert b'<dimension ref="A1:D6"/>' in zf.read("xl/worksheets/sheet1.xml")


def test_a_date_cell_has_the_serial_of_its_midnight(tmp_path: Path) -> None:
    # date cells take their serial from the day ordinal; it must be the serial the datetime
    # path gives for that midnight, across Excel's phantom 1900-02-29 and before its epoch.
    days = [
        dt.date(1899, 12, 30),
        dt.date(1899, 12, 31),
        dt.date(1900, 1, 1),
        dt.date(1900, 2, 28),
        dt.date(1900, 3, 1),
        dt.date(1985, 3, 13),
        dt.date(2024, 2, 29),
    ]
    path = tmp_path / "dates.xlsx"
    writer = StreamingXlsxWriter(path, "S", ["date", "midnight"], ["date", "date"], len(days))
    writer.write_rows([d, dt.datetime(d.year, d.month, d.day)] for d in days)
    writer.close()
    with zipfile.ZipFile(path) as zf:
        xml = zf.read("xl/worksheets/sheet1.xml").decode()
    cells = re.findall(r'<c r="([AB])(\d+)" s="(\d+)"><v>([^<]*)</v></c>', xml)
    date_cells = [(row, style, v) for col, row, style, v in cells if col == "A"]
    midnight_cells = [(row, style, v) for col, row, style, v in cells if col == "B"]
    assert date_cells == midnight_cells
    assert [v for _, _, v in date_cells] == [
        "-1.0",
        "0.0",
        "1.0",
        "59.0",
        "61.0",
        "31119.0",
        "45351.0",
    ]


def test_empty_output_is_a_valid_workbook(tmp_path: Path) -> None:
    path = tmp_path / "empty.xlsx"
    StreamingXlsxWriter(path, "Members", ["Member ID"], [None], 0).close()
    workbook = openpyxl.load_workbook(path, read_only=True)
    assert [tuple(r) for r in workbook.active.iter_rows(values_only=True)] == [("Member ID",)]
    workbook.close()


def test_a_sheet_far_larger_than_the_file_size_limit_is_written(tmp_path: Path) -> None:
    """RLIMIT_FSIZE caps each file. The sheet XML here is ~20 MB uncompressed; with a 4 MiB
    limit a writer that spools the sheet to a temp file first (xlsxwriter, openpyxl) dies with
    EFBIG, this one writes only the compressed file."""
    script = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from ade.engine._xlsx_stream import StreamingXlsxWriter\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))\n"
        "w = StreamingXlsxWriter(Path(sys.argv[1]), 'S', list('abcd'), [None] * 4, 100000)\n"
        "for i in range(100):\n"
        "    w.write_rows([f'member {j}', j, 'same text in every row', 1.5] for j in range(1000))\n"
        "w.close()\n"
    )
    out = tmp_path / "big.xlsx"
    done = subprocess.run(
        [sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(out) as zf:
        info = zf.getinfo("xl/worksheets/sheet1.xml")
    assert info.file_size > 4 * (4 << 20)  # the XML really is much larger than the limit
    assert out.stat().st_size < 4 << 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.xlsx"]  # no temp files
