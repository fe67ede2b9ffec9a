"""Helpers for the engine tests: editable copies of the sample config, files read back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import openpyxl

from ade.samples import ROSTER_CONFIG


def copy_config(tmp_path: Path, name: str = "config") -> Path:
    target = tmp_path / name
    shutil.copytree(ROSTER_CONFIG, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def edit_manifest(config: Path, change: Any) -> None:
    path = config / "manifest.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=2))


def read_rows(path: Path) -> list[tuple[Any, ...]]:
    workbook = openpyxl.load_workbook(path, read_only=True)
    try:
        return [tuple(row) for row in workbook.worksheets[0].iter_rows(values_only=True)]
    finally:
        workbook.close()


def write_xlsx(path: Path, sheets: dict[str, list[tuple[int, int, list[Any]]]]) -> Path:
    """sheets: name -> [(row, first column, cells)] (1-based)."""
    import xlsxwriter

    workbook = xlsxwriter.Workbook(str(path), {"default_date_format": "yyyy-mm-dd"})
    for name, rows in sheets.items():
        sheet = workbook.add_worksheet(name)
        for row, column, cells in rows:
            for offset, value in enumerate(cells):
                if value is not None:
                    sheet.write(row - 1, column - 1 + offset, value)
    workbook.close()
    return path


def leftovers(out_dir: Path) -> list[str]:
    """What a failed run left in its output folder (must be nothing)."""
    if not out_dir.exists():
        return []
    return sorted(p.name for p in out_dir.iterdir())


SIMPLE_HEADER = ["Member ID", "First Name", "Last Name", "Email"]


def simple_table(rows: int = 3, first_row: int = 1, column: int = 1) -> list[tuple[int, int, list]]:
    table: list[tuple[int, int, list]] = [(first_row, column, list(SIMPLE_HEADER))]
    for i in range(1, rows + 1):
        table.append(
            (first_row + i, column, [f"M{1000 + i}", f"First{i}", f"Last{i}", f"p{i}@example.com"])
        )
    return table
