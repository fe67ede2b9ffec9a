"""Excel 97-2003 (.xls), Excel binary (.xlsb) and OpenDocument (.ods) inputs, read with
python-calamine.

python-calamine loads a whole sheet into a dense grid (~80 bytes per cell; a 4.8 KB file with
cells in A1 and XFD1048576 made it abort trying to allocate 512 GiB), so every sheet's size is
found *before* it is loaded, from what the file declares: the DIMENSIONS record of an .xls
sheet, the BrtWsDim record of an .xlsb sheet, and the rows and columns (repeats included) up to
the last filled cell of an .ods table. A sheet whose cell count would not fit in half the run's
memory limit (``ADE_WORKER_MEM_MB``) is refused with an error naming the sheet, its size and
the limit. .xlsx/.xlsm and .csv keep their streaming readers.

Values are made to look like the xlsx reader's: whole floats become ints (calamine gives every
number as a float), dates become datetimes, empty strings become missing cells.
"""

from __future__ import annotations

import datetime as dt
import struct
import zipfile
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError, iterparse

from ade.engine._csv import MAX_ROW_CELLS
from ade.engine._readers import InputFile, SheetReader
from ade.errors import InputError

__all__ = [
    "BYTES_PER_CELL",
    "calamine_sheets",
    "check_ods_zip",
    "check_xls",
    "declared_cells",
]

# What python-calamine holds per cell of a loaded sheet, rounded up (measured: ~80 B/cell for
# 1M x 12 cells), plus the row lists handed to Python.
BYTES_PER_CELL = 96
# A loaded sheet may take half the run's memory: the engine, the spool and the writer need the rest.
MEMORY_SHARE = 0.5
DEFAULT_MEMORY_MB = 512  # ADE_WORKER_MEM_MB's default, for runs that give no limit

_BIFF_BOF = 0x0809
_BIFF_EOF = 0x000A
_BIFF_BOUNDSHEET = 0x0085
_BIFF_FILEPASS = 0x002F
_BIFF_DIMENSIONS = 0x0200
_XLSB_WS_DIM = 0x0194  # BrtWsDim, as its two record-type bytes read little-endian
_XLSB_SHEET_DATA = 0x0191  # BrtBeginSheetData: the dimension comes before it
_ODS_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_ODS_OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"


# -- sniffing (describe_input) -------------------------------------------------------------------


def _workbook_stream(path: Path, name: str) -> bytes:
    import olefile

    try:
        with olefile.OleFileIO(str(path)) as ole:
            for stream in ("Workbook", "Book"):
                if ole.exists(stream):
                    return ole.openstream(stream).read()
    except (OSError, ValueError, struct.error) as exc:
        raise InputError(
            f"input {name!r} is a corrupt Excel 97-2003 (.xls) file ({type(exc).__name__})"
        ) from exc
    raise InputError(
        f"input {name!r} is an OLE file but not an Excel workbook (no Workbook stream); "
        "ADE reads .xls, .xlsx, .xlsm, .xlsb, .ods and .csv files"
    )


def _biff_records(data: bytes, offset: int) -> Generator[tuple[int, int, bytes], None, None]:
    """(offset, record type, payload) from ``offset`` to the end of the substream."""
    while offset + 4 <= len(data):
        kind, size = struct.unpack_from("<HH", data, offset)
        payload = data[offset + 4 : offset + 4 + size]
        yield offset, kind, payload
        if kind == _BIFF_EOF:
            return
        offset += 4 + size


def _xls_sheets(data: bytes, name: str) -> list[tuple[str, int]]:
    """(sheet name, substream offset) of each worksheet; InputError if it is encrypted."""
    sheets: list[tuple[str, int]] = []
    for _, kind, payload in _biff_records(data, 0):
        if kind == _BIFF_FILEPASS:
            raise InputError(
                f"input {name!r} is a password-protected (encrypted) .xls workbook; remove the "
                "password in Excel and upload it again"
            )
        if kind == _BIFF_BOUNDSHEET and len(payload) >= 8:
            position, _, sheet_type, length, high = struct.unpack_from("<IBBBB", payload, 0)
            raw = payload[8 : 8 + length * (2 if high & 1 else 1)]
            title = raw.decode("utf-16-le" if high & 1 else "latin-1", errors="replace")
            if sheet_type == 0:  # a worksheet (not a chart or macro sheet)
                sheets.append((title, position))
    return sheets


def _xls_dimension(data: bytes, position: int) -> int:
    for _, kind, payload in _biff_records(data, position):
        if kind == _BIFF_DIMENSIONS:
            if len(payload) >= 12:  # BIFF8: 32-bit rows
                first_row, last_row, first_col, last_col = struct.unpack_from("<IIHH", payload)
            else:
                first_row, last_row, first_col, last_col = struct.unpack_from("<HHHH", payload)
            return max(0, last_row - first_row) * max(0, last_col - first_col)
    return 0


def check_xls(path: Path, name: str) -> None:
    """An .xls input that is damaged or encrypted is refused before anything else reads it."""
    data = _workbook_stream(path, name)
    if not data.startswith(struct.pack("<H", _BIFF_BOF)):
        raise InputError(f"input {name!r} is a corrupt Excel 97-2003 (.xls) file (no BOF record)")
    _xls_sheets(data, name)


def check_ods_zip(path: Path, name: str) -> None:
    with zipfile.ZipFile(path) as zf:
        try:
            manifest = zf.read("META-INF/manifest.xml")
        except KeyError:
            return
    if b"encryption-data" in manifest:
        raise InputError(
            f"input {name!r} is a password-protected (encrypted) OpenDocument spreadsheet; "
            "save it again without a password and upload it again"
        )


# -- sizes ---------------------------------------------------------------------------------------


def declared_cells(source: InputFile) -> dict[str, int]:
    """Cell count of each sheet as the file declares it (by sheet name; for .xlsb by sheet
    order as ``#<n>``), read without loading any sheet."""
    if source.format == "xls":
        data = _workbook_stream(source.path, source.name)
        return {
            title: _xls_dimension(data, position)
            for title, position in _xls_sheets(data, source.name)
        }
    if source.format == "xlsb":
        return _xlsb_dimensions(source)
    return _ods_extents(source)


def _xlsb_dimensions(source: InputFile) -> dict[str, int]:
    sizes: dict[str, int] = {}
    with zipfile.ZipFile(source.path) as zf:
        parts = sorted(
            (n for n in zf.namelist() if n.startswith("xl/worksheets/") and n.endswith(".bin")),
            key=lambda n: (len(n), n),
        )
        for number, part in enumerate(parts, start=1):
            with zf.open(part) as fh:
                head = fh.read(4096)
            sizes[f"#{number}"] = _xlsb_dimension(head)
    return sizes


def _xlsb_dimension(data: bytes) -> int:
    offset = 0
    while offset < len(data):
        kind = data[offset]
        offset += 1
        if kind & 0x80 and offset < len(data):
            kind |= data[offset] << 8
            offset += 1
        size = shift = 0
        for _ in range(4):
            if offset >= len(data):
                return 0
            byte = data[offset]
            offset += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if kind == _XLSB_WS_DIM and offset + 16 <= len(data):
            first_row, last_row, first_col, last_col = struct.unpack_from("<IIII", data, offset)
            return (last_row - first_row + 1) * (last_col - first_col + 1)
        if kind == _XLSB_SHEET_DATA:
            return 0
        offset += size
    return 0


def _ods_extents(source: InputFile) -> dict[str, int]:
    """Rows x columns up to the last filled cell of each table, repeats counted."""
    sizes: dict[str, int] = {}
    row_tag, cell_tag = _ODS_TABLE + "table-row", _ODS_TABLE + "table-cell"
    covered_tag, table_tag = _ODS_TABLE + "covered-table-cell", _ODS_TABLE + "table"
    value_type = _ODS_OFFICE + "value-type"
    try:
        with zipfile.ZipFile(source.path) as zf, zf.open("content.xml") as fh:
            rows = last_row = last_col = 0
            for event, element in iterparse(fh, events=("start", "end")):
                tag = element.tag
                if event == "start":
                    if tag == table_tag:
                        rows = last_row = last_col = 0
                    continue
                if tag == row_tag:
                    repeat = int(element.get(_ODS_TABLE + "number-rows-repeated", "1"))
                    column = filled_to = 0
                    for cell in element:
                        if cell.tag not in (cell_tag, covered_tag):
                            continue
                        span = int(cell.get(_ODS_TABLE + "number-columns-repeated", "1"))
                        column += span
                        if cell.get(value_type) is not None or len(cell):
                            filled_to = column
                    rows += repeat
                    if filled_to:
                        last_row = rows
                        last_col = max(last_col, filled_to)
                    element.clear()
                elif tag == table_tag:
                    sizes[element.get(_ODS_TABLE + "name", "")] = last_row * last_col
                    element.clear()
    except (zipfile.BadZipFile, KeyError, ParseError, ValueError, OSError) as exc:
        raise InputError(
            f"input {source.name!r} is a corrupt OpenDocument spreadsheet ({type(exc).__name__})"
        ) from exc
    return sizes


# -- reading -------------------------------------------------------------------------------------


def calamine_sheets(
    source: InputFile, memory_limit_mb: int | None
) -> tuple[list[SheetReader], Callable[[], None]]:
    from python_calamine import CalamineError, CalamineWorkbook

    limit_mb = memory_limit_mb or DEFAULT_MEMORY_MB
    max_cells = int(limit_mb * 1024 * 1024 * MEMORY_SHARE) // BYTES_PER_CELL
    sizes = declared_cells(source)
    # python-calamine parses every sheet of an .xls or .ods file when it opens it: check the
    # sizes first. An .xlsb file opens lazily; its sheets are numbered, named once it is open.
    if source.format != "xlsb":
        _guard(source, sizes, max_cells, limit_mb)
    try:
        workbook = CalamineWorkbook.from_path(str(source.path))
        metadata = list(workbook.sheets_metadata)
    except (CalamineError, ValueError, OSError) as exc:
        raise InputError(
            f"input {source.name!r} could not be opened as a .{source.format} workbook "
            f"({type(exc).__name__}); it is damaged"
        ) from exc
    worksheets = [m.name for m in metadata if str(m.typ).endswith("WorkSheet")]
    if source.format == "xlsb":
        named = {
            title: sizes.get(f"#{number}", 0) for number, title in enumerate(worksheets, start=1)
        }
        _guard(source, named, max_cells, limit_mb)
    readers = [
        SheetReader(title, index, _rows_of(workbook, source, title))
        for index, title in enumerate(worksheets)
    ]
    return readers, lambda: None


def _guard(source: InputFile, sizes: dict[str, int], max_cells: int, limit_mb: int) -> None:
    for title, cells in sizes.items():
        if cells > max_cells:
            raise InputError(
                f"input {source.name!r} sheet {title!r} declares {cells:,} cells; a "
                f".{source.format} sheet is loaded whole, and at most {max_cells:,} cells fit "
                f"the memory limit of {limit_mb} MiB (ADE_WORKER_MEM_MB). Save it as .xlsx "
                "(read as a stream) or trim its used range"
            )


def _rows_of(
    workbook: Any, source: InputFile, title: str
) -> Callable[[], Generator[tuple[int, list[Any]], None, None]]:
    def rows() -> Generator[tuple[int, list[Any]], None, None]:
        from python_calamine import CalamineError

        try:
            sheet = workbook.get_sheet_by_name(title)
            first_row, first_col = sheet.start or (0, 0)
            for offset, raw in enumerate(sheet.iter_rows()):
                values = [_value(v) for v in raw]
                while values and values[-1] is None:
                    values.pop()
                if not values or values.count(None) == len(values):
                    continue
                if len(values) - values.count(None) > MAX_ROW_CELLS:
                    raise InputError(
                        f"input {source.name!r} sheet {title!r} row {first_row + offset + 1} "
                        f"has more than {MAX_ROW_CELLS} filled cells; ADE reads at most "
                        f"{MAX_ROW_CELLS} columns per row"
                    )
                yield first_row + offset + 1, [None] * first_col + values
        except (CalamineError, ValueError, OSError) as exc:
            raise InputError(
                f"input {source.name!r} sheet {title!r} is corrupt ({type(exc).__name__})"
            ) from exc

    return rows


def _value(value: Any) -> Any:
    kind = type(value)
    if kind is float:
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if kind is str:
        return value if value != "" else None
    if kind is dt.date:
        return dt.datetime(value.year, value.month, value.day)
    return value
