"""Every way ADE reads an .xlsx sheet gives the same rows and the same typed values.

The fast path (regular expressions over the part's text, ``ade/engine/_xlsx_rows.py``) and the
exact path (``xml.etree``) are run on the same hand-written fixtures — every cell shape Excel and
other producers write — and on workbooks written by openpyxl and xlsxwriter; each must give the
exact expected rows, and the two must agree."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path
from typing import Any

import pytest
from support.xlsx_parts import worksheet, write_workbook

from ade.engine._readers import describe_input, open_sheets
from ade.engine._xlsx_rows import SheetRows
from ade.errors import InputError
from ade.samples.generate import write_large_workbook, write_messy_workbook

STRINGS = [
    "<t>Name</t>",
    "<t>Alice</t>",
    "<r><t>Bo</t></r><r><rPr><b/></rPr><t>b</t></r>",  # rich text
    "<t>Smith &amp; Sons</t>",
    "<t/>",
]

# (row XML, the row as read); rows read as nothing are left out of the expected list.
ROWS: list[tuple[str, tuple[int, list[Any]] | None]] = [
    (
        '<row r="1" spans="1:3"><c r="A1" t="s"><v>0</v></c>'
        '<c r="B1" t="inlineStr"><is><t>Kind</t></is></c>'
        '<c r="C1" t="inlineStr"><is><t xml:space="preserve"> Value </t></is></c></row>',
        (1, ["Name", "Kind", " Value "]),
    ),
    (
        '<row r="2"><c r="A2" t="s"><v>1</v></c><c r="B2"><v>42</v></c><c r="C2"><v>3.5</v></c>'
        '<c r="D2" t="b"><v>1</v></c><c r="E2" t="b"><v>0</v></c>'
        '<c r="F2" s="1"><v>45000</v></c><c r="G2" s="2"><v>45000.5</v></c>'
        '<c r="H2" s="3"><v>0.75</v></c><c r="I2" s="4"><v>1.5</v></c>'
        '<c r="J2" s="5"><v>0.25</v></c><c r="K2" s="6" t="n"><v>1234.5</v></c></row>',
        (
            2,
            [
                "Alice",
                42,
                3.5,
                True,
                False,
                dt.datetime(2023, 3, 15),
                dt.datetime(2023, 3, 15, 12, 0),
                dt.time(18, 0),
                dt.timedelta(days=1, hours=12),
                0.25,
                1234.5,
            ],
        ),
    ),
    (  # formulas with cached values, errors, a shared formula
        '<row r="3"><c r="A3"><f>1+1</f><v>2</v></c>'
        '<c r="B3" t="str"><f>"a"&amp;"b"</f><v>ab</v></c>'
        '<c r="C3" t="str"><f>UPPER(A2)</f><v>ALICE</v></c>'
        '<c r="D3" t="b"><f>TRUE()</f><v>1</v></c>'
        '<c r="E3" t="e"><f>1/0</f><v>#DIV/0!</v></c><c r="F3" t="e"><v>#N/A</v></c>'
        '<c r="G3"><f t="shared" ref="G3:G4" si="0">A3*2</f><v>4</v></c></row>',
        (3, [2, "ab", "ALICE", True, "#DIV/0!", "#N/A", 4]),
    ),
    ('<row r="4"><c r="G4"><f t="shared" si="0"/><v>6</v></c></row>', (4, [None] * 6 + [6])),
    (  # only empty cells: no row
        '<row r="5"><c r="A5" s="1"/><c r="B5"><v></v></c>'
        '<c r="C5" t="inlineStr"><is><t></t></is></c><c r="D5" t="s"><v>4</v></c></row>',
        None,
    ),
    (
        '<row r="6"><c r="A6" t="inlineStr"><is><t>x</t></is></c><c r="F6"><v>7</v></c></row>',
        (6, ["x", None, None, None, None, 7]),
    ),
    (
        '<row r="7"><c r="A7" t="s"><v>2</v></c><c r="B7" t="s"><v>3</v></c>'
        '<c r="C7" t="inlineStr"><is><r><t>Ri</t></r><r><t>ch</t></r></is></c></row>',
        (7, ["Bob", "Smith & Sons", "Rich"]),
    ),
    (  # merged A8:C8: the value sits in A8, the covered cells are styled blanks
        '<row r="8"><c r="A8" t="inlineStr"><is><t>Merged</t></is></c>'
        '<c r="B8" s="1"/><c r="C8" s="1"/></row>',
        (8, ["Merged"]),
    ),
    ('<row><c r="A9"><v>9</v></c></row>', (9, [9])),  # no r on the row: the one after
    (  # no r on the cells: each is the next column
        '<row r="10"><c><v>1</v></c><c t="inlineStr"><is><t>two</t></is></c></row>',
        (10, [1, "two"]),
    ),
    ('<row r="11"/>', None),
    (
        '<row r="12"><c r="C12"><v>3</v></c><c r="A12"><v>1</v></c></row>',
        (12, [1, None, 3]),
    ),
    (
        '<row r="13"><c r="A13" t="inlineStr"><is><t>&#233;t&#xE9;</t></is></c>'
        '<c r="B13" t="inlineStr"><is><t>&lt;b&gt; a>b</t></is></c>'
        '<c r="C13" t="inlineStr"><is><t>Zoë 東京\tx</t></is></c></row>',
        (13, ["été", "<b> a>b", "Zoë 東京\tx"]),
    ),
    (
        '<row r="14"><c r="A14" t="d"><v>2024-02-29T10:30:00</v></c>'
        '<c r="B14"><v>1E+20</v></c><c r="C14"><v>-7</v></c><c r="D14"><v>007</v></c></row>',
        (14, [dt.datetime(2024, 2, 29, 10, 30), 1e20, -7, 7]),
    ),
    (  # a carriage return is read as a line feed (XML end-of-line handling)
        '<row r="15"><c r="A15" t="inlineStr"><is><t>one\r\ntwo</t></is></c></row>',
        (15, ["one\ntwo"]),
    ),
    (  # attributes the fast path does not know, and odd but valid spacing
        '<row r="16" x14ac:dyDescent="0.25"><c r="A16" s="0" t="n" cm="1"><v>16</v></c>'
        '<c r = "B16" ><v >17</v ></c></row>',
        (16, [16, 17]),
    ),
    ('<row r="20"><c r="XFD20"><v>1</v></c></row>', (20, [None] * 16383 + [1])),
]
EXPECTED = [row for _, row in ROWS if row is not None]
X14AC = ' xmlns:x14ac="http://schemas.microsoft.com/office/spreadsheetml/2009/9/ac"'
MERGES = '<mergeCells count="1"><mergeCell ref="A8:C8"/></mergeCells>'


def sheets_of(path: Path, *, fast: bool = True) -> dict[str, list[tuple[int, list[Any]]]]:
    source = describe_input(path, path.name, 0)
    readers, close = open_sheets(source)
    try:
        out = {}
        for reader in readers:
            if not fast:
                parser = reader.rows.__self__  # type: ignore[attr-defined]
                assert isinstance(parser, SheetRows)
                parser.fast = False
            out[reader.name] = list(reader.rows())
        return out
    finally:
        close()


def both_paths(path: Path) -> dict[str, list[tuple[int, list[Any]]]]:
    fast, exact = sheets_of(path), sheets_of(path, fast=False)
    assert fast == exact
    return fast


def compact() -> str:
    return worksheet("".join(xml for xml, _ in ROWS), after=MERGES, root_extra=X14AC)


def test_every_cell_shape_reads_the_same_on_both_paths(tmp_path: Path) -> None:
    path = write_workbook(tmp_path / "cells.xlsx", {"Cells": compact()}, STRINGS)
    assert both_paths(path) == {"Cells": EXPECTED}


def test_pretty_printed_commented_and_prefixed_sheets_read_the_same(tmp_path: Path) -> None:
    rows = [xml for xml, _ in ROWS]
    pretty = "\n  ".join(
        x.replace("><c ", ">\n    <c ").replace("</f><v>", "</f>\n<v>") for x in rows
    )
    commented = "".join(rows[:5]) + "<!-- </row> in a comment -->" + "".join(rows[5:])
    cdata = "".join(rows).replace("<t>Kind</t>", "<t><![CDATA[Kind]]></t>")
    prefixed = "".join(rows).replace("<row", "<x:row").replace("</row>", "</x:row>")
    prefixed = prefixed.replace("<c ", "<x:c ").replace("<c>", "<x:c>").replace("</c>", "</x:c>")
    for tag in ("v", "f", "is", "t", "r", "rPr", "b"):
        prefixed = prefixed.replace(f"<{tag}>", f"<x:{tag}>").replace(f"<{tag} ", f"<x:{tag} ")
        prefixed = prefixed.replace(f"</{tag}>", f"</x:{tag}>").replace(f"<{tag}/>", f"<x:{tag}/>")
    prefixed = prefixed.replace("<x:v >17</v >", "<x:v >17</x:v >")
    path = write_workbook(
        tmp_path / "variants.xlsx",
        {
            "Pretty": worksheet("\n  " + pretty + "\n", after=MERGES, root_extra=X14AC),
            "Commented": worksheet(commented, root_extra=X14AC),
            "CData": worksheet(cdata, root_extra=X14AC),
            "Prefixed": worksheet(prefixed, root_extra=X14AC, prefix="x"),
        },
        STRINGS,
    )
    assert both_paths(path) == {
        "Pretty": EXPECTED,
        "Commented": EXPECTED,
        "CData": EXPECTED,
        "Prefixed": EXPECTED,
    }


def test_the_1904_date_system(tmp_path: Path) -> None:
    sheet = worksheet('<row r="1"><c r="A1" s="1"><v>1</v></c><c r="B1" s="1"><v>366</v></c></row>')
    path = write_workbook(tmp_path / "mac.xlsx", {"Mac": sheet}, epoch1904=True)
    assert both_paths(path) == {"Mac": [(1, [dt.datetime(1904, 1, 2), dt.datetime(1905, 1, 1)])]}


def test_rows_split_across_read_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ade.engine._xlsx_rows as xlsx_rows

    monkeypatch.setattr(xlsx_rows, "_CHUNK", 7)  # every row and tag is cut somewhere
    path = write_workbook(tmp_path / "cells.xlsx", {"Cells": compact()}, STRINGS)
    assert both_paths(path) == {"Cells": EXPECTED}


def test_workbooks_written_by_libraries_read_the_same(tmp_path: Path) -> None:
    messy = both_paths(write_messy_workbook(tmp_path / "messy.xlsx"))
    assert sum(len(rows) for rows in messy.values()) > 20
    large = both_paths(write_large_workbook(tmp_path / "large.xlsx", 500))
    assert len(large["Members"]) == 501
    assert isinstance(large["Members"][1][1][5], dt.datetime)

    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Openpyxl"
    ws.append(["text", 1, 2.5, True, dt.datetime(2020, 1, 2, 3, 4, 5), dt.date(2021, 5, 6)])
    ws.append(["=1+1", None, "a & b", "  padded  ", dt.time(7, 8, 9)])
    ws.merge_cells("A3:C3")
    ws["A3"] = "merged"
    wb.save(tmp_path / "openpyxl.xlsx")
    assert both_paths(tmp_path / "openpyxl.xlsx") == {
        "Openpyxl": [
            (
                1,
                ["text", 1, 2.5, True, dt.datetime(2020, 1, 2, 3, 4, 5), dt.datetime(2021, 5, 6)],
            ),
            # openpyxl writes no cached value for a formula: nothing to read
            (2, [None, None, "a & b", "  padded  ", dt.time(7, 8, 9)]),
            (3, ["merged"]),
        ]
    }


@pytest.mark.parametrize(
    "broken",
    [
        "truncated",
        "bad-tail",
        "undefined-entity",
        "control-character",
        "bad-shared-index",
        "negative-shared-index",
        "noncharacter",
        "cdata-end-in-text",
        "undefined-entity-in-row-attribute",
        "control-character-in-row-attribute",
        "control-character-in-formula-attribute",
    ],
)
def test_a_corrupt_sheet_is_refused_on_both_paths(tmp_path: Path, broken: str) -> None:
    good = compact()
    sheet = {
        "truncated": good[: good.index('<row r="12">') + 20],
        "bad-tail": good.replace("</mergeCells>", "</mergeCell>"),
        "undefined-entity": good.replace("<t>Kind</t>", "<t>&nbsp;</t>"),
        "control-character": good.replace("<t>Kind</t>", "<t>K\x01nd</t>"),
        "bad-shared-index": good.replace('<c r="A2" t="s"><v>1</v>', '<c r="A2" t="s"><v>99</v>'),
        # not the last string of the table, as a Python index would have it
        "negative-shared-index": good.replace(
            '<c r="A2" t="s"><v>1</v>', '<c r="A2" t="s"><v>-1</v>'
        ),
        # U+FFFF and "]]>" are not allowed in XML text (expat refuses them)
        "noncharacter": good.replace("<t>Kind</t>", "<t>K\uffffnd</t>"),
        "cdata-end-in-text": good.replace("<t>Kind</t>", "<t>K]]>nd</t>"),
        "undefined-entity-in-row-attribute": good.replace('<row r="2">', '<row r="2" s="&x;">'),
        "control-character-in-row-attribute": good.replace('<row r="2">', '<row r="2" s="\x01">'),
        "control-character-in-formula-attribute": good.replace(
            '<f t="shared" si="0"/>', '<f t="shared" si="\x01"/>'
        ),
    }[broken]
    path = write_workbook(tmp_path / "broken.xlsx", {"Cells": sheet}, STRINGS)
    for fast in (True, False):
        with pytest.raises(InputError, match="sheet 'Cells' is corrupt after row"):
            sheets_of(path, fast=fast)


def test_a_utf16_sheet_is_read_by_the_exact_path(tmp_path: Path) -> None:
    text = compact().replace('encoding="UTF-8"', 'encoding="UTF-16"')
    path = write_workbook(tmp_path / "cells.xlsx", {"Cells": "x"}, STRINGS)
    with zipfile.ZipFile(path) as zf:
        parts = {n: zf.read(n) for n in zf.namelist()}
    parts["xl/worksheets/sheet1.xml"] = text.encode("utf-16")
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    assert both_paths(path) == {"Cells": EXPECTED}


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (  # an end tag may hold whitespace before its ">"
            '<row r="1"><c r="A1"><v>1</v></c></row ><row r="2"><c r="A2"><v>2</v></c></row>',
            [(1, [1]), (2, [2])],
        ),
        (
            '<row r="1"><c r="A1"><v>1</v></c></row\n><row r="2"><c r="A2"><v>2</v></c></row\t>',
            [(1, [1]), (2, [2])],
        ),
        (  # a character reference in the row's number
            '<row r="&#53;"><c r="A5"><v>1</v></c></row><row><c r="A6"><v>2</v></c></row>',
            [(5, [1]), (6, [2])],
        ),
        (  # "]" and "]]" in text are fine; only "]]>" is not
            '<row r="1"><c r="A1" t="inlineStr"><is><t>[a]] ]b]</t></is></c>'
            '<c r="B1" t="str"><v>x]]</v></c></row>',
            [(1, ["[a]] ]b]", "x]]"])],
        ),
    ],
)
def test_valid_xml_the_fast_path_cannot_split_reads_as_the_exact_path_does(
    tmp_path: Path, rows: str, expected: list[tuple[int, list[Any]]]
) -> None:
    path = write_workbook(tmp_path / "odd.xlsx", {"Odd": worksheet(rows)}, STRINGS)
    assert both_paths(path) == {"Odd": expected}
