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
read, so memory stays flat and only cells that exist are touched (`_xlsx_rows`).
"""

from __future__ import annotations

import codecs
import hashlib
import stat
import warnings
import zipfile
from collections.abc import Callable, Generator
from pathlib import Path

import attrs

from ade.engine._artifact import CsvRecord
from ade.engine._csv import MAX_ROW_CELLS, open_csv
from ade.engine._xlsx_rows import Row, SheetRows
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
    # openpyxl's reader steps for the workbook parts (sheet list, shared strings, styles),
    # imported here so csv-only runs never pay for them. Not ``load_workbook``: in read-only
    # mode it builds a ReadOnlyWorksheet per sheet, which parses a sheet that has no
    # ``<dimension>`` element *whole* at open, looking for one — a second full parse.
    from openpyxl.reader.excel import ExcelReader
    from openpyxl.styles.stylesheet import apply_stylesheet

    # A file object, not the path: openpyxl refuses paths without an Excel extension, and
    # stored uploads have none (the sniffing in describe_input already proved it is a zip).
    handle = source.path.open("rb")
    try:
        with warnings.catch_warnings():
            # openpyxl warns about parts it drops (data validation, extensions); irrelevant here.
            warnings.simplefilter("ignore")
            reader = ExcelReader(handle, read_only=True, data_only=True, keep_links=False)
            reader.read_manifest()
            reader.read_strings()
            reader.read_workbook()
            apply_stylesheet(reader.archive, reader.wb)
            parts = [
                (sheet.name, rel.target)
                for sheet, rel in reader.parser.find_sheets()
                if rel.target in reader.valid_files and "chartsheet" not in rel.Type
            ]
    except Exception as exc:
        handle.close()
        raise InputError(
            f"input {source.name!r} could not be opened as a workbook ({type(exc).__name__}); "
            "it is damaged or not an Excel file"
        ) from exc
    wb = reader.wb
    date_styles = frozenset(wb._date_formats)
    timedelta_styles = frozenset(wb._timedelta_formats)
    sheets = []
    for index, (title, target) in enumerate(parts):
        parser = SheetRows(
            source.name,
            title,
            lambda target=target: reader.archive.open(target),
            reader.shared_strings,  # one table shared by all sheets (not copied)
            date_styles,
            timedelta_styles,
            wb.epoch,
        )
        sheets.append(SheetReader(title, index, parser.rows))

    def close() -> None:
        try:
            reader.archive.close()
        finally:
            handle.close()

    return sheets, close
