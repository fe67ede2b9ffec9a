"""The streaming writer for normalized.xlsx (xlsxwriter in constant-memory mode).

xlsxwriter writes each row to a temp file as soon as the next row starts, so memory stays
flat, and it emits ``<dimension>``, which keeps re-reading the output cheap for openpyxl. The
options below are deliberate: strings that start with ``=`` stay strings (no formula injection
from a cell), URLs stay text, NaN/inf become Excel errors instead of a crash, and tz-aware
datetimes lose their offset (Excel has none).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["WRITABLE_TYPES", "NormalizedWriter"]

WRITABLE_TYPES = (str, int, float, bool, dt.datetime, dt.date, dt.time, dt.timedelta, type(None))

_DATE_FORMAT = "yyyy-mm-dd"
_DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"


class NormalizedWriter:
    def __init__(
        self,
        path: Path,
        sheet_name: str,
        headers: Sequence[str],
        column_types: Sequence[str | None],
        tmpdir: Path,
    ) -> None:
        import xlsxwriter

        self.path = path
        self._workbook = xlsxwriter.Workbook(
            str(path),
            {
                "constant_memory": True,
                "tmpdir": str(tmpdir),
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "nan_inf_to_errors": True,
                "remove_timezone": True,
                "default_date_format": _DATE_FORMAT,
            },
        )
        self._sheet = self._workbook.add_worksheet(sheet_name)
        bold = self._workbook.add_format({"bold": True})
        datetime_format = self._workbook.add_format({"num_format": _DATETIME_FORMAT})
        self._formats = [datetime_format if t == "datetime" else None for t in column_types]
        self._sheet.write_row(0, 0, list(headers), bold)
        self._sheet.freeze_panes(1, 0)
        self.next_row = 1  # 0-based worksheet row of the next data row

    def write_rows(self, rows: Iterable[Sequence[Any]]) -> None:
        sheet = self._sheet
        write = sheet.write
        formats = self._formats
        r = self.next_row
        if any(formats):
            for row in rows:
                for c, value in enumerate(row):
                    if value is not None:
                        write(r, c, value, formats[c])
                r += 1
        else:
            for row in rows:
                for c, value in enumerate(row):
                    if value is not None:
                        write(r, c, value)
                r += 1
        self.next_row = r

    def close(self) -> None:
        self._workbook.close()
