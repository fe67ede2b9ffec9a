"""Input readers: every sheet of a workbook (.xlsx/.xlsm streamed here; .xls/.xlsb/.ods through
``_calamine``), or a csv file (``_csv``), as a stream of rows.

A row is ``(row_number, values)``: ``values`` is a list from column A to the row's last filled
cell, ``None`` for empty cells. Rows with no filled cell may be skipped by a reader (the row
numbers say where the gaps are).

Why not ``ReadOnlyWorksheet.iter_rows``: it pads every row to the sheet's *declared* dimension
(a sparse sheet declaring A1:XFD1048576 becomes a billion ``None``s), re-parses the whole sheet
first when the dimension is missing, and keeps one emptied XML element per row alive until the
sheet ends (~80 MB per million rows). This module uses openpyxl for the workbook parts (sheet
list, shared strings, date styles) and parses ``<row>`` elements itself, dropping each one once
read, so memory stays flat and only cells that exist are touched.
"""

from __future__ import annotations

import codecs
import hashlib
import stat
import warnings
import zipfile
import zlib
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError, iterparse

import attrs

from ade.engine._artifact import CsvRecord
from ade.engine._csv import MAX_ROW_CELLS, open_csv
from ade.errors import InputError

__all__ = [
    "MAX_ROW_CELLS",
    "InputFile",
    "SheetReader",
    "describe_input",
    "open_sheets",
]

_CFB_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_ENCRYPTED_MARKERS = (
    "EncryptionInfo".encode("utf-16-le"),
    "EncryptedPackage".encode("utf-16-le"),
)
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_XLSX_SUFFIXES = {".xlsx", ".xlsm"}
_ZIP_ENCRYPTED = 0x1  # general purpose flag bit 0
_ZIP_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)

_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_ROW = _NS + "row"
_SHEET_DATA = _NS + "sheetData"
_VALUE = _NS + "v"
_INLINE = _NS + "is"
_DIGITS = "0123456789"

Row = tuple[int, list[Any]]


@attrs.frozen
class InputFile:
    """One input as the engine saw it (the artifact's ``inputs[]`` entry is built from this)."""

    index: int
    name: str
    path: Path
    format: str  # "xlsx" | "xls" | "xlsb" | "ods" | "csv"
    size_bytes: int
    sha256: str

    @property
    def reader(self) -> str:
        """Which reader reads it: the streaming one, or python-calamine (loads a sheet whole)."""
        return {"xlsx": "xlsx-stream", "csv": "csv"}.get(self.format, "calamine")


@attrs.frozen
class SheetReader:
    name: str
    index: int
    rows: Callable[[], Generator[Row, None, None]]
    csv: CsvRecord | None = None
    # (row, byte offset) of undecodable bytes met while reading (CSV only); fills as rows are read.
    decode_errors: list[tuple[int, int]] = attrs.field(factory=list)


def describe_input(path: Path, name: str, index: int) -> InputFile:
    """Check that ``path`` looks like a spreadsheet we can read; raise :class:`InputError`
    naming what is wrong otherwise. Reads the file once (for the sha256)."""
    try:
        status = path.stat()
    except OSError as exc:
        raise InputError(f"input {name!r} cannot be read ({type(exc).__name__})") from exc
    if stat.S_ISDIR(status.st_mode):
        raise InputError(f"input {name!r} is a folder, not a file")
    size = status.st_size
    if size == 0:
        raise InputError(f"input {name!r} is empty (0 bytes)")
    digest = hashlib.sha256()
    head = b""
    cfb_encrypted = False
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                if not head:
                    head = chunk[:8]
                if head.startswith(_CFB_MAGIC) and not cfb_encrypted:
                    cfb_encrypted = any(marker in chunk for marker in _ENCRYPTED_MARKERS)
                digest.update(chunk)
    except OSError as exc:  # a folder, no read permission, an I/O error
        raise InputError(f"input {name!r} cannot be read ({type(exc).__name__})") from exc
    suffix = Path(name).suffix.lower()
    if head.startswith(_CFB_MAGIC):
        if cfb_encrypted:
            raise InputError(
                f"input {name!r} is a password-protected (encrypted) workbook; remove the "
                "password in Excel (File > Info > Protect Workbook) and upload it again"
            )
        from ade.engine._calamine import check_xls

        check_xls(path, name)
        fmt = "xls"
    elif head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
        fmt = _check_workbook_zip(path, name)
    elif suffix in _XLSX_SUFFIXES:
        raise InputError(
            f"input {name!r} is not a spreadsheet: an {suffix} workbook is a zip archive "
            "and this file is not one"
        )
    elif suffix in (".xls", ".xlsb", ".ods"):
        raise InputError(f"input {name!r} is not a {suffix} workbook: the file is damaged")
    elif _looks_like_text(path):
        fmt = "csv"
    else:
        raise InputError(
            f"input {name!r} is not a spreadsheet (ADE reads .xlsx, .xlsm, .xlsb, .xls, .ods "
            "and .csv files)"
        )
    return InputFile(index, name, path, fmt, size, digest.hexdigest())


def _check_workbook_zip(path: Path, name: str) -> str:
    """The format of a zip input ("xlsx", "xlsb" or "ods"), or InputError saying why not."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InputError(
            f"input {name!r} is a corrupt zip archive ({type(exc).__name__}); "
            "the workbook is damaged or was not fully uploaded"
        ) from exc
    names = {info.filename for info in infos}
    fmt = "xlsx"
    if "xl/workbook.xml" not in names:
        from ade.engine._calamine import check_ods_zip

        if "xl/workbook.bin" in names:
            fmt = "xlsb"
        elif "content.xml" in names and "mimetype" in names:
            check_ods_zip(path, name)
            fmt = "ods"
        else:
            raise InputError(
                f"input {name!r} is a zip archive but not a spreadsheet (no xl/workbook.xml, "
                "xl/workbook.bin or content.xml)"
            )
    # zipfile would raise RuntimeError / NotImplementedError on the first read of such a part.
    for info in infos:
        if info.flag_bits & _ZIP_ENCRYPTED:
            reason = (
                "is encrypted (a zip password); save the workbook again from Excel without a "
                "password"
            )
        elif info.compress_type not in _ZIP_METHODS:
            reason = (
                f"uses zip compression method {info.compress_type}, which ADE cannot read; "
                "save the workbook again from Excel"
            )
        else:
            continue
        raise InputError(f"input {name!r} cannot be read: its part {info.filename} {reason}")
    return fmt


def _looks_like_text(path: Path) -> bool:
    with path.open("rb") as fh:
        sample = fh.read(8192)
    if sample.startswith(_UTF16_BOMS):
        return True  # Excel's "Unicode text" export: UTF-16, tab-separated
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        if exc.start >= len(sample) - 4:
            return True  # a multi-byte character cut by the sample's end
    # Legacy single-byte text (cp1252 / latin-1) is still text if it is mostly printable.
    printable = sum(1 for b in sample if b >= 32 or b in (9, 10, 13))
    return printable >= 0.95 * len(sample)


def open_sheets(
    source: InputFile, memory_limit_mb: int | None = None
) -> tuple[list[SheetReader], Callable[[], None]]:
    """The sheets of ``source`` as row streams, plus a ``close`` function. ``memory_limit_mb``
    bounds the readers that load a sheet whole (.xls, .xlsb, .ods)."""
    if source.format == "csv":
        sheet = open_csv(source.path, source.name)
        return [SheetReader(sheet.name, 0, sheet.rows, sheet.dialect, sheet.decode_errors)], _noop
    if source.format != "xlsx":
        from ade.engine._calamine import calamine_sheets

        return calamine_sheets(source, memory_limit_mb)
    return _xlsx_sheets(source)


def _noop() -> None:
    return None


# -- xlsx ---------------------------------------------------------------------------------------


def _xlsx_sheets(source: InputFile) -> tuple[list[SheetReader], Callable[[], None]]:
    import openpyxl  # imported here: csv-only runs never pay for it

    # A file object, not the path: openpyxl refuses paths without an Excel extension, and
    # stored uploads have none (the sniffing in describe_input already proved it is a zip).
    handle = source.path.open("rb")
    try:
        with warnings.catch_warnings():
            # openpyxl warns about parts it drops (data validation, extensions); irrelevant here.
            warnings.simplefilter("ignore")
            wb = openpyxl.load_workbook(handle, read_only=True, data_only=True, keep_links=False)
    except Exception as exc:
        handle.close()
        raise InputError(
            f"input {source.name!r} could not be opened as a workbook ({type(exc).__name__}); "
            "it is damaged or not an Excel file"
        ) from exc
    date_styles = frozenset(wb._date_formats)
    timedelta_styles = frozenset(wb._timedelta_formats)
    sheets = []
    for index, ws in enumerate(wb.worksheets):
        parser = _SheetParser(
            source.name,
            ws.title,
            lambda ws=ws: ws._get_source(),
            ws._shared_strings,  # the reader's table, shared by all sheets (not copied)
            date_styles,
            timedelta_styles,
            wb.epoch,
        )
        sheets.append(SheetReader(ws.title, index, parser.rows))

    def close() -> None:
        try:
            wb.close()
        finally:
            handle.close()

    return sheets, close


class _SheetParser:
    def __init__(
        self,
        input_name: str,
        sheet_name: str,
        open_source: Callable[[], Any],
        shared_strings: list[Any],
        date_styles: frozenset[int],
        timedelta_styles: frozenset[int],
        epoch: Any,
    ) -> None:
        self.input_name = input_name
        self.sheet_name = sheet_name
        self.open_source = open_source
        self.shared_strings = shared_strings
        self.date_styles = date_styles
        self.timedelta_styles = timedelta_styles
        self.epoch = epoch
        self.column_cache: dict[str, int] = {}

    def rows(self) -> Generator[Row, None, None]:
        row_number = 0
        try:
            with self.open_source() as src:
                sheet_data = None
                # "start" events are only needed to find <sheetData>, so that each parsed
                # <row> can be dropped from it: otherwise the tree keeps every row.
                for event, element in iterparse(src, events=("start", "end")):
                    if event == "end":
                        if element.tag == _ROW:
                            r = element.get("r")
                            row_number = int(r) if r else row_number + 1
                            values = self._row_values(element, row_number)
                            if sheet_data is not None:
                                sheet_data.clear()
                            if values:
                                yield row_number, values
                    elif element.tag == _SHEET_DATA:
                        sheet_data = element
        except InputError:
            raise
        except (
            ParseError,
            zipfile.BadZipFile,
            zlib.error,
            EOFError,
            KeyError,
            IndexError,  # a shared-string index past the table's end
            ValueError,
        ) as exc:
            raise InputError(
                f"input {self.input_name!r} sheet {self.sheet_name!r} is corrupt after row "
                f"{row_number} ({type(exc).__name__})"
            ) from exc

    def _row_values(self, row: Any, row_number: int) -> list[Any]:
        cells: list[tuple[int, Any]] = []
        column = 0
        cache = self.column_cache
        for cell in row:
            ref = cell.get("r")
            if ref:
                letters = ref.rstrip(_DIGITS)
                column = cache.get(letters) or self._column(letters)
            else:
                column += 1
            kind = cell.get("t", "n")
            if kind == "inlineStr":
                value = _inline_text(cell)
            else:
                text = cell.findtext(_VALUE)
                if not text:
                    continue
                if kind == "n":
                    value = self._number(text, cell.get("s"))
                elif kind == "s":
                    value = self.shared_strings[int(text)]
                    if not isinstance(value, str):
                        value = str(value)  # rich text
                elif kind == "b":
                    value = text == "1"
                elif kind == "d":
                    from openpyxl.utils.datetime import from_ISO8601

                    value = from_ISO8601(text)
                else:  # "str" (formula result) and "e" (an error such as #DIV/0!)
                    value = text
            if value is None or value == "":
                continue
            cells.append((column, value))
        if not cells:
            return []
        if len(cells) > MAX_ROW_CELLS:
            raise InputError(
                f"input {self.input_name!r} sheet {self.sheet_name!r} row {row_number} has "
                f"{len(cells)} filled cells; ADE reads at most {MAX_ROW_CELLS} columns per row"
            )
        last = max(c for c, _ in cells)
        if len(cells) == last and _in_order(cells):
            return [v for _, v in cells]  # the common case: a dense row starting at column A
        return _dense(cells, last)

    def _column(self, letters: str) -> int:
        from openpyxl.utils import column_index_from_string

        try:
            index = column_index_from_string(letters)
        except ValueError as exc:
            raise InputError(
                f"input {self.input_name!r} sheet {self.sheet_name!r} has a cell with an "
                "invalid reference"
            ) from exc
        self.column_cache[letters] = index
        return index

    def _number(self, text: str, style: str | None) -> Any:
        try:
            value: Any = int(text)
        except ValueError:
            value = float(text)
        if style and int(style) in self.date_styles:
            from openpyxl.utils.datetime import from_excel

            try:
                return from_excel(value, self.epoch, timedelta=int(style) in self.timedelta_styles)
            except (OverflowError, ValueError):
                return value  # a date-formatted number outside Excel's date range: keep it
        return value


def _in_order(cells: list[tuple[int, Any]]) -> bool:
    return all(c == i for i, (c, _) in enumerate(cells, start=1))


def _dense(cells: list[tuple[int, Any]], last: int) -> list[Any]:
    values: list[Any] = [None] * last
    for column, value in cells:
        values[column - 1] = value
    return values


def _inline_text(cell: Any) -> str | None:
    child = cell.find(_INLINE)
    if child is None:
        return None
    return "".join(t for t in child.itertext()) or None
