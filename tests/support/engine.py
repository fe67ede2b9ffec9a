"""Helpers for the engine tests: editable copies of the sample config, files read back."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import openpyxl

from ade.engine import EngineResult, parse_artifact, run_engine
from ade.engine._artifact import Artifact
from ade.samples import ROSTER_CONFIG
from ade.samples.formats import Grid, write_grid


def copy_config(tmp_path: Path, name: str = "config") -> Path:
    target = tmp_path / name
    shutil.copytree(ROSTER_CONFIG, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def edit_manifest(config: Path, change: Any) -> None:
    path = config / "manifest.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=2))


def run_grid(
    tmp_path: Path, grid: Grid, fmt: str = "xlsx", config: Path = ROSTER_CONFIG, **kw: Any
) -> tuple[EngineResult, Artifact, list[tuple[Any, ...]]]:
    """Write ``grid`` as one input file, run the engine on it, and check the row accounting:
    (result, artifact, normalized rows with the header row first)."""
    source = write_grid(tmp_path / f"input.{fmt}", grid, **kw)
    out = tmp_path / "out"
    result = run_engine([source], config, out)
    artifact = parse_artifact((out / "artifact.json").read_text())
    assert_accounted(artifact)
    return result, artifact, read_rows(out / "normalized.xlsx")


def assert_accounted(artifact: Artifact) -> None:
    """Every non-blank source row is in exactly one place, on every sheet."""
    for source in artifact.inputs:
        for sheet in source.sheets:
            assert sum(sheet.accounting.values()) == sheet.rows_read, sheet
    assert artifact.summary.rows_read == sum(s.rows_read for i in artifact.inputs for s in i.sheets)


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


def patch_zip_entry(
    path: Path, member: str, *, flag_bits: int = 0, method: int | None = None
) -> None:
    """Rewrite one entry's headers in place (local and central): OR in ``flag_bits`` (0x1 marks
    it encrypted, as a zip made with a password) and/or set its compression ``method`` (99 is
    the AES method 7-Zip and WinZip use, which Python's zipfile cannot read)."""
    import struct
    import zipfile

    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        local = zf.getinfo(member).header_offset
    central = data.find(b"PK\x01\x02")
    while central != -1:
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, central + 28)
        if bytes(data[central + 46 : central + 46 + name_len]).decode() == member:
            # flags at +8 (central) / +6 (local), method at +10 / +8
            for flags_at in (central + 8, local + 6):
                old = struct.unpack_from("<H", data, flags_at)[0]
                struct.pack_into("<H", data, flags_at, old | flag_bits)
                if method is not None:
                    struct.pack_into("<H", data, flags_at + 2, method)
        central = data.find(b"PK\x01\x02", central + 46 + name_len + extra_len + comment_len)
    path.write_bytes(bytes(data))


def rewrite_zip(source: Path, target: Path, change: Any) -> Path:
    """Copy a zip entry by entry; ``change(name, data) -> data`` may alter any entry."""
    import zipfile

    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, change(info.filename, src.read(info)))
    return target


def cfb_file(path: Path, streams: list[str]) -> Path:
    """A compound file (OLE/CFB) with the named streams, each 4096 bytes, the way Excel stores
    an encrypted workbook (EncryptionInfo + EncryptedPackage) or a legacy .xls (Workbook)."""
    sector = 512
    per_stream = 4096 // sector
    fat = [0xFFFFFFFD, 0xFFFFFFFE]  # sector 0: the FAT itself; sector 1: the directory
    starts = []
    for _ in streams:
        start = len(fat)
        starts.append(start)
        fat += [start + i + 1 for i in range(per_stream - 1)] + [0xFFFFFFFE]
    fat += [0xFFFFFFFF] * (sector // 4 - len(fat))
    header = bytearray(sector)
    header[0:8] = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
    struct.pack_into("<HHHHH", header, 24, 0x3E, 3, 0xFFFE, 9, 6)
    struct.pack_into("<III", header, 44, 1, 1, 0)  # 1 FAT sector, directory at sector 1
    struct.pack_into("<IIIII", header, 56, 4096, 0xFFFFFFFE, 0, 0xFFFFFFFE, 0)
    struct.pack_into("<I", header, 76, 0)  # DIFAT[0] = FAT at sector 0
    for i in range(1, 109):
        struct.pack_into("<I", header, 76 + 4 * i, 0xFFFFFFFF)

    def entry(name: str, kind: int, child: int, right: int, start: int, size: int) -> bytes:
        raw = bytearray(128)
        encoded = name.encode("utf-16-le") + b"\0\0"
        raw[0 : len(encoded)] = encoded
        struct.pack_into("<HBB", raw, 64, len(encoded), kind, 1)
        struct.pack_into("<III", raw, 68, 0xFFFFFFFF, right, child)
        struct.pack_into("<IQ", raw, 116, start, size)
        return bytes(raw)

    directory = entry("Root Entry", 5, 1, 0xFFFFFFFF, 0xFFFFFFFE, 0)
    for i, (name, start) in enumerate(zip(streams, starts, strict=True)):
        right = i + 2 if i + 1 < len(streams) else 0xFFFFFFFF
        directory += entry(name, 2, 0xFFFFFFFF, right, start, 4096)
    directory += b"\0" * (sector - len(directory) % sector if len(directory) % sector else 0)
    body = struct.pack(f"<{len(fat)}I", *fat) + directory[:sector]
    data = b"".join(b"\x5a" * 4096 for _ in streams)
    path.write_bytes(bytes(header) + body + data)
    return path
