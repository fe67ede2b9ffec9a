"""Write the same grid as .xlsx, .xls, .ods or .csv: the fixtures of the layout tests and the
fidelity benchmark's corpus.

A grid is ``{sheet name: [(row, first column, [cells])]}`` (1-based). .xlsx goes through
xlsxwriter; .xls through xlwt (a test/benchmark dependency: python-calamine only reads, and
xlwt is the one maintained pure-Python BIFF8 writer); .ods is written here directly: it is a zip
of three small XML parts, and writing it by hand keeps the fixtures free of another dependency
and lets a test declare repeated rows (the huge-sparse case) the way LibreOffice does.
"""

from __future__ import annotations

import csv
import datetime as dt
import struct
import zipfile
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

__all__ = ["Grid", "write_grid", "write_ods", "write_xlsb"]

Grid = dict[str, list[tuple[int, int, list[Any]]]]


def write_grid(path: Path, sheets: Grid, *, encoding: str = "utf-8", delimiter: str = ",") -> Path:
    suffix = path.suffix.lower()
    if suffix == ".xlsb":
        return write_xlsb(path, sheets)
    if suffix == ".xls":
        return _write_xls(path, sheets)
    if suffix == ".ods":
        return write_ods(path, sheets)
    if suffix == ".csv":
        return _write_csv(path, sheets, encoding, delimiter)
    return _write_xlsx(path, sheets)


def _cells(rows: list[tuple[int, int, list[Any]]]) -> list[tuple[int, int, Any]]:
    return [
        (row, column + offset, value)
        for row, column, values in rows
        for offset, value in enumerate(values)
        if value is not None
    ]


def _write_xlsx(path: Path, sheets: Grid) -> Path:
    import xlsxwriter

    workbook = xlsxwriter.Workbook(str(path), {"default_date_format": "yyyy-mm-dd"})
    try:
        for name, rows in sheets.items():
            sheet = workbook.add_worksheet(name)
            for row, column, value in _cells(rows):
                sheet.write(row - 1, column - 1, value)
    finally:
        workbook.close()
    return path


def _write_xls(path: Path, sheets: Grid) -> Path:
    import xlwt

    workbook = xlwt.Workbook()
    dates = xlwt.easyxf(num_format_str="yyyy-mm-dd")
    for name, rows in sheets.items():
        sheet = workbook.add_sheet(name)
        for row, column, value in _cells(rows):
            if isinstance(value, dt.date):
                sheet.write(row - 1, column - 1, value, dates)
            else:
                sheet.write(row - 1, column - 1, value)
    workbook.save(str(path))
    return path


def _write_csv(path: Path, sheets: Grid, encoding: str, delimiter: str) -> Path:
    [rows] = sheets.values()
    grid: dict[int, dict[int, Any]] = {}
    for row, column, value in _cells(rows):
        grid.setdefault(row, {})[column] = value
    last = max(grid, default=0)
    with path.open("w", newline="", encoding=encoding) as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        for row in range(1, last + 1):
            cells = grid.get(row, {})
            width = max(cells, default=0)
            writer.writerow([_text(cells.get(c)) for c in range(1, width + 1)])
    return path


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    return str(value)


_ODS_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
)
_ODS_MIME = "application/vnd.oasis.opendocument.spreadsheet"
_ODS_MANIFEST = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" '
    'manifest:version="1.2">'
    f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{_ODS_MIME}"/>'
    '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
    "</manifest:manifest>"
)


def _ods_cell(value: Any) -> str:
    if value is None:
        return "<table:table-cell/>"
    if isinstance(value, bool):
        flag = "true" if value else "false"
        return (
            f'<table:table-cell office:value-type="boolean" office:boolean-value="{flag}">'
            f"<text:p>{flag.upper()}</text:p></table:table-cell>"
        )
    if isinstance(value, int | float):
        return (
            f'<table:table-cell office:value-type="float" office:value="{value!r}">'
            f"<text:p>{value}</text:p></table:table-cell>"
        )
    if isinstance(value, dt.date):
        text = value.isoformat()
        return (
            f'<table:table-cell office:value-type="date" office:date-value="{text}">'
            f"<text:p>{text}</text:p></table:table-cell>"
        )
    return (
        f'<table:table-cell office:value-type="string"><text:p>{escape(str(value))}</text:p>'
        "</table:table-cell>"
    )


def write_ods(
    path: Path, sheets: Grid, *, trailing_rows: int = 0, trailing_columns: int = 0
) -> Path:
    """``trailing_*`` add a repeated filled block after the grid (a sheet declaring a huge
    used range in a few bytes, as a test of the memory guard)."""
    parts = [
        f'<?xml version="1.0" encoding="UTF-8"?>\n<office:document-content {_ODS_NS} '
        'office:version="1.2"><office:body><office:spreadsheet>'
    ]
    for name, rows in sheets.items():
        parts.append(f"<table:table table:name={quoteattr(name)}>")
        grid: dict[int, dict[int, Any]] = {}
        for row, column, value in _cells(rows):
            grid.setdefault(row, {})[column] = value
        previous = 0
        for row in sorted(grid):
            if row - previous > 1:
                parts.append(
                    f'<table:table-row table:number-rows-repeated="{row - previous - 1}">'
                    "<table:table-cell/></table:table-row>"
                )
            cells = grid[row]
            parts.append("<table:table-row>")
            parts.extend(_ods_cell(cells.get(c)) for c in range(1, max(cells) + 1))
            parts.append("</table:table-row>")
            previous = row
        if trailing_rows:
            parts.append(
                f'<table:table-row table:number-rows-repeated="{trailing_rows}">'
                f'<table:table-cell table:number-columns-repeated="{trailing_columns}" '
                'office:value-type="float" office:value="1"><text:p>1</text:p>'
                "</table:table-cell></table:table-row>"
            )
        parts.append("</table:table>")
    parts.append("</office:spreadsheet></office:body></office:document-content>")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), _ODS_MIME, compress_type=zipfile.ZIP_STORED)
        zf.writestr("content.xml", "".join(parts))
        zf.writestr("META-INF/manifest.xml", _ODS_MANIFEST)
    return path


# -- .xlsb (no maintained Python writer exists: the few BIFF12 records a grid needs) ---------------

_XLSB_TYPES = {
    "row": 0,
    "real": 5,
    "string": 6,
    "sheet": 129,
    "sheet_end": 130,
    "book": 131,
    "book_end": 132,
    "sheets": 143,
    "sheets_end": 144,
    "data": 145,
    "data_end": 146,
    "dimension": 148,
    "bundle": 156,
}


def _xlsb_record(kind: str, payload: bytes = b"") -> bytes:
    number = _XLSB_TYPES[kind]
    head = bytes([number]) if number < 128 else bytes([(number & 0x7F) | 0x80, number >> 7])
    size = len(payload)
    length = bytearray()
    while True:
        byte = size & 0x7F
        size >>= 7
        length.append(byte | (0x80 if size else 0))
        if not size:
            break
    return head + bytes(length) + payload


def _wide(text: str) -> bytes:
    return struct.pack("<I", len(text)) + text.encode("utf-16-le")


def write_xlsb(path: Path, sheets: Grid, *, declared: tuple[int, int] | None = None) -> Path:
    """Strings and numbers only. ``declared`` overrides the (rows, columns) the first sheet's
    BrtWsDim declares (the huge-sparse case)."""
    book = [_xlsb_record("book"), _xlsb_record("sheets")]
    rels = []
    types = []
    parts: dict[str, bytes] = {}
    for number, (name, rows) in enumerate(sheets.items(), start=1):
        book.append(
            _xlsb_record(
                "bundle", struct.pack("<II", 0, number) + _wide(f"rId{number}") + _wide(name)
            )
        )
        rels.append(
            f'<Relationship Id="rId{number}" Type="http://schemas.openxmlformats.org/'
            f'officeDocument/2006/relationships/worksheet" Target="worksheets/sheet{number}.bin"/>'
        )
        types.append(
            f'<Override PartName="/xl/worksheets/sheet{number}.bin" ContentType="application/'
            'vnd.ms-excel.worksheet"/>'
        )
        cells = _cells(rows)
        last_row = max((r for r, _, _ in cells), default=1)
        last_col = max((c for _, c, _ in cells), default=1)
        if declared is not None and number == 1:
            last_row, last_col = declared
        sheet = [
            _xlsb_record("sheet"),
            _xlsb_record("dimension", struct.pack("<IIII", 0, last_row - 1, 0, last_col - 1)),
            _xlsb_record("data"),
        ]
        by_row: dict[int, list[tuple[int, Any]]] = {}
        for row, column, value in cells:
            by_row.setdefault(row, []).append((column, value))
        for row in sorted(by_row):
            sheet.append(_xlsb_record("row", struct.pack("<IIHBBBI", row - 1, 0, 300, 0, 0, 0, 0)))
            for column, value in sorted(by_row[row], key=lambda cv: cv[0]):
                if isinstance(value, int | float) and not isinstance(value, bool):
                    payload = struct.pack("<IId", column - 1, 0, float(value))
                    sheet.append(_xlsb_record("real", payload))
                else:
                    sheet.append(
                        _xlsb_record(
                            "string", struct.pack("<II", column - 1, 0) + _wide(str(value))
                        )
                    )
        sheet += [_xlsb_record("data_end"), _xlsb_record("sheet_end")]
        parts[f"xl/worksheets/sheet{number}.bin"] = b"".join(sheet)
    book += [_xlsb_record("sheets_end"), _xlsb_record("book_end")]
    parts["xl/workbook.bin"] = b"".join(book)
    rel = "http://schemas.openxmlformats.org/package/2006/relationships"
    parts["xl/_rels/workbook.bin.rels"] = (
        f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{rel}">'
        + "".join(rels)
        + "</Relationships>"
    ).encode()
    parts["_rels/.rels"] = (
        f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{rel}">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/officeDocument" Target="xl/workbook.bin"/></Relationships>'
    ).encode()
    parts["[Content_Types].xml"] = (
        '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
        'package/2006/content-types"><Default Extension="rels" ContentType="application/'
        'vnd.openxmlformats-package.relationships+xml"/><Override PartName="/xl/workbook.bin" '
        'ContentType="application/vnd.ms-excel.sheet.binary.macroEnabled.main"/>'
        + "".join(types)
        + "</Types>"
    ).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    return path
