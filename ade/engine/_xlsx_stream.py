"""A streaming single-sheet .xlsx writer: rows go straight into the deflate stream of the final
zip, so neither memory nor disk grows with the sheet beyond the compressed file itself.

Why not a library: xlsxwriter's constant-memory mode (and openpyxl's write-only mode) first
write the whole uncompressed sheet XML to a temp file — ~570 MB for a million 12-column rows —
and then copy it into the zip. That breaks the worker's per-file size limit (RLIMIT_FSIZE,
100 MiB by default) long before the row limit, and doubles the disk traffic. The format needed
here is small and fixed: one worksheet of inline strings, numbers, booleans and dates, a bold
header row, four number formats. ``<dimension>`` is written up front (the row count is known
before writing) because openpyxl re-parses a sheet that lacks it.

The sheet is deflated at level 3 (``COMPRESS_LEVEL``), not zlib's default 6. Measured on the
100k x 12 benchmark sheet (``docs/benchmarks.md``, "Output compression"): level 6 took 1.67 s
of CPU for 7.07 MB, level 3 1.39 s for 7.76 MB (+10%), level 1 1.28 s for 8.32 MB (+18%),
level 9 5.38 s for 6.60 MB. Level 3 keeps most of the time saved for about half the growth.
"""

from __future__ import annotations

import datetime as dt
import decimal
import fractions
import math
import re
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from ade.engine._cells import column_letter

__all__ = ["COMPRESS_LEVEL", "EXCEL_MAX_TEXT", "StreamingXlsxWriter"]

EXCEL_MAX_TEXT = 32_767  # characters in one cell
COMPRESS_LEVEL = 3  # deflate level of every part (see the module docstring for why)

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"

# Style indexes in styles.xml's cellXfs.
_BOLD, _DATE, _DATETIME, _TIME, _DURATION = 1, 2, 3, 4, 5

_SPREADSHEETML = "application/vnd.openxmlformats-officedocument.spreadsheetml"
_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    f'<Override PartName="/xl/workbook.xml" ContentType="{_SPREADSHEETML}.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    f'ContentType="{_SPREADSHEETML}.worksheet+xml"/>'
    f'<Override PartName="/xl/styles.xml" ContentType="{_SPREADSHEETML}.styles+xml"/>'
    "</Types>"
)
_ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    f'<Relationships xmlns="{_PKG_REL}">'
    f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    f'<Relationships xmlns="{_PKG_REL}">'
    f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
    f'<Relationship Id="rId2" Type="{_REL}/styles" Target="styles.xml"/>'
    "</Relationships>"
)
_STYLES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    f'<styleSheet xmlns="{_MAIN}">'
    '<numFmts count="4">'
    '<numFmt numFmtId="164" formatCode="yyyy-mm-dd"/>'
    '<numFmt numFmtId="165" formatCode="yyyy-mm-dd hh:mm:ss"/>'
    '<numFmt numFmtId="166" formatCode="hh:mm:ss"/>'
    '<numFmt numFmtId="167" formatCode="[h]:mm:ss"/>'
    "</numFmts>"
    '<fonts count="2">'
    '<font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    "</fonts>"
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="6">'
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="166" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="167" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    "</cellXfs>"
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)

# XML 1.0 forbids most control characters; Excel spells them _xHHHH_.
_SPECIAL = re.compile(r"[&<>\x00-\x08\x0b\x0c\x0e-\x1f]")
_REPLACEMENTS = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_EXCEL_EPOCH = dt.datetime(1899, 12, 31)
_EXCEL_EPOCH_ORDINAL = _EXCEL_EPOCH.toordinal()
_WHITESPACE = " \t\n\r"


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return _REPLACEMENTS.get(char) or f"_x{ord(char):04X}_"


def _text(value: str) -> str:
    if len(value) > EXCEL_MAX_TEXT:
        value = value[:EXCEL_MAX_TEXT]  # Excel's cell limit; the output cannot hold more
    if _SPECIAL.search(value):
        value = _SPECIAL.sub(_escape_char, value)
    return value


def _serial(value: dt.datetime) -> float:
    """Excel's 1900 date system, including its phantom 1900-02-29 (as Excel and xlsxwriter)."""
    delta = value - _EXCEL_EPOCH
    serial = delta.days + (delta.seconds + delta.microseconds / 1e6) / 86400
    return serial + 1 if serial > 59 else serial


class StreamingXlsxWriter:
    """Write ``headers`` then rows (sequences of cell values, ``None`` for empty) to ``path``.
    ``total_rows`` (data rows to come) makes the ``<dimension>`` exact."""

    def __init__(
        self,
        path: Path,
        sheet_name: str,
        headers: Sequence[str],
        column_types: Sequence[str | None],
        total_rows: int,
    ) -> None:
        self.path = path
        self._letters = [column_letter(i + 1) for i in range(max(len(headers), 1))]
        self._datetime_style = [_DATETIME if t == "datetime" else _DATE for t in column_types]
        self._zip = zipfile.ZipFile(
            path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL
        )
        try:
            self._zip.writestr("[Content_Types].xml", _CONTENT_TYPES)
            self._zip.writestr("_rels/.rels", _ROOT_RELS)
            self._zip.writestr(
                "xl/workbook.xml",
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                f'<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><bookViews><workbookView/>'
                f'</bookViews><sheets><sheet name={quoteattr(sheet_name)} sheetId="1" '
                'r:id="rId1"/></sheets></workbook>',
            )
            self._zip.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
            self._zip.writestr("xl/styles.xml", _STYLES)
            self._sheet = self._zip.open("xl/worksheets/sheet1.xml", "w", force_zip64=True)
        except BaseException:
            self._zip.close()
            raise
        last = f"{self._letters[-1]}{total_rows + 1}"
        self._sheet.write(
            (
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                f'<worksheet xmlns="{_MAIN}" xmlns:r="{_REL}">'
                f'<dimension ref="A1:{last}"/>'
                '<sheetViews><sheetView workbookViewId="0">'
                '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
                "</sheetView></sheetViews>"
                '<sheetFormatPr defaultRowHeight="15"/><sheetData>'
            ).encode()
        )
        self.next_row = 1  # 1-based sheet row of the next row written
        # Text cells cut to Excel's 32,767 characters (counted so the artifact can say so).
        self.truncated_cells = 0
        self._write([list(headers)], header=True)

    def write_rows(self, rows: Iterable[Sequence[Any]]) -> None:
        self._write(rows, header=False)

    def _write(self, rows: Iterable[Sequence[Any]], *, header: bool) -> None:
        letters = self._letters
        out: list[str] = []
        append = out.append
        r = self.next_row
        bold = f' s="{_BOLD}"' if header else ""
        for row in rows:
            append(f'<row r="{r}">')
            for c, value in enumerate(row):
                if value is None:
                    continue
                ref = f"{letters[c]}{r}"
                kind = type(value)
                if kind is str:
                    if not value:
                        continue
                    if len(value) > EXCEL_MAX_TEXT:
                        self.truncated_cells += 1
                    text = _text(value)
                    space = (
                        ' xml:space="preserve"'
                        if text[0] in _WHITESPACE or text[-1] in _WHITESPACE
                        else ""
                    )
                    append(f'<c r="{ref}"{bold} t="inlineStr"><is><t{space}>{text}</t></is></c>')
                elif kind is int:
                    append(f'<c r="{ref}"><v>{value}</v></c>')
                elif kind is float:
                    append(self._float(ref, value))
                elif kind is dt.date:
                    # Date columns after transforms: a whole-day serial straight from the
                    # ordinal, the value _serial gives for midnight of that day.
                    days = value.toordinal() - _EXCEL_EPOCH_ORDINAL
                    serial = float(days + 1 if days > 59 else days)
                    append(f'<c r="{ref}" s="{_DATE}"><v>{serial!r}</v></c>')
                else:
                    append(self._other(ref, value, c))
            append("</row>")
            r += 1
        self.next_row = r
        self._sheet.write("".join(out).encode("utf-8", "replace"))

    @staticmethod
    def _float(ref: str, value: float) -> str:
        if math.isfinite(value):
            return f'<c r="{ref}"><v>{value!r}</v></c>'
        return f'<c r="{ref}" t="e"><v>#NUM!</v></c>'

    def _other(self, ref: str, value: Any, column: int) -> str:
        if isinstance(value, bool):
            return f'<c r="{ref}" t="b"><v>{int(value)}</v></c>'
        if isinstance(value, dt.datetime):
            naive = value.replace(tzinfo=None)
            return f'<c r="{ref}" s="{self._datetime_style[column]}"><v>{_serial(naive)!r}</v></c>'
        if isinstance(value, dt.date):
            serial = _serial(dt.datetime(value.year, value.month, value.day))
            return f'<c r="{ref}" s="{_DATE}"><v>{serial!r}</v></c>'
        if isinstance(value, dt.time):
            seconds = value.hour * 3600 + value.minute * 60 + value.second
            fraction = (seconds + value.microsecond / 1e6) / 86400
            return f'<c r="{ref}" s="{_TIME}"><v>{fraction!r}</v></c>'
        if isinstance(value, dt.timedelta):
            return f'<c r="{ref}" s="{_DURATION}"><v>{value.total_seconds() / 86400!r}</v></c>'
        if isinstance(value, int):  # int subclasses (IntEnum, numpy-like)
            return f'<c r="{ref}"><v>{int(value)}</v></c>'
        if isinstance(value, float | decimal.Decimal | fractions.Fraction):
            return self._float(ref, float(value))
        if isinstance(value, str):
            return self._string_subclass(ref, value)
        raise TypeError(f"cannot write a {type(value).__name__} to a cell")

    def _string_subclass(self, ref: str, value: str) -> str:
        if len(value) > EXCEL_MAX_TEXT:
            self.truncated_cells += 1
        text = _text(str.__str__(value))
        if not text:
            return ""
        space = ' xml:space="preserve"' if text[0] in _WHITESPACE or text[-1] in _WHITESPACE else ""
        return f'<c r="{ref}" t="inlineStr"><is><t{space}>{text}</t></is></c>'

    def close(self) -> None:
        try:
            self._sheet.write(b"</sheetData></worksheet>")
            self._sheet.close()
        finally:
            self._zip.close()

    def abort(self) -> None:
        """Close without finishing (the caller discards the file)."""
        try:
            self._sheet.close()
        finally:
            self._zip.close()
