"""The table locator driven directly with small classified grids (no files, no config code):
exact tables, header rows, row accounting and issues for every layout it handles."""

from __future__ import annotations

from typing import Any

import pytest

from ade.engine._locator import TableDraft, TableLocator

Grid = list[tuple[int, str, list[Any]]]
H = ["ID", "Name", "Email"]


class Run:
    def __init__(self, grid: Grid, max_blank_rows: int = 3, layout_rows: int = 100) -> None:
        self.rows: dict[str, list[int]] = {}
        self.issues: list[tuple[str, int, int]] = []
        self.n = 0
        self.locator = TableLocator(
            self.new_id,
            sample_rows=100,
            chunk_rows=1000,
            max_blank_rows=max_blank_rows,
            on_chunk=self.on_chunk,
            on_table_end=lambda t: None,
            on_issue=lambda code, row, n: self.issues.append((code, row, n)),
            layout_rows=layout_rows,
        )
        for number, kind, values in grid:
            self.locator.feed(number, kind, values)
        self.locator.finish()
        # The engine's first law, on every grid: the places add up to the rows read.
        assert sum(self.locator.kinds.values()) == self.locator.rows_read == len(grid)

    def new_id(self) -> str:
        self.n += 1
        return f"t{self.n}"

    def on_chunk(self, table: TableDraft, numbers: list[int], rows: list[list[Any]]) -> None:
        self.rows.setdefault(table.id, []).extend(numbers)

    @property
    def tables(self) -> list[tuple[Any, ...]]:
        return [
            (
                t.id,
                t.header_row,
                t.first_column,
                t.last_column,
                t.data_rows,
                t.blank_rows,
                t.ended_by,
            )
            for t in self.locator.tables
        ]

    @property
    def kinds(self) -> dict[str, int]:
        return self.locator.kinds


def rows(first: int, n: int, column: int = 1) -> Grid:
    return [
        (first + i, "data", [None] * (column - 1) + [f"M{i}", i, f"x{i}@e.com"]) for i in range(n)
    ]


@pytest.mark.parametrize("blanks", [1, 2, 3])
def test_blank_rows_inside_a_table_do_not_end_it(blanks: int) -> None:
    grid: Grid = [(1, "header", H), *rows(2, 2), *rows(4 + blanks, 3)]
    run = Run(grid)
    last = 4 + blanks + 2
    assert run.tables == [("t1", 1, 1, 3, 5, blanks, "end_of_sheet")]
    assert run.rows["t1"] == [2, 3, 4 + blanks, 5 + blanks, 6 + blanks]
    assert run.locator.last_row == last
    assert run.kinds == {"table_header": 1, "table_data": 5}
    assert run.locator.blank_rows == blanks
    assert run.issues == []


def test_more_blank_rows_than_the_knob_end_the_table_and_later_rows_are_reported() -> None:
    grid: Grid = [(1, "header", H), *rows(2, 2), *rows(8, 2)]  # 4 blank rows: 4..7
    run = Run(grid, max_blank_rows=3)
    assert run.tables == [("t1", 1, 1, 3, 2, 0, "blank")]
    assert run.kinds == {"table_header": 1, "table_data": 2, "outside_table": 2}
    assert run.issues == [("row_outside_table", 8, 1), ("row_outside_table", 9, 1)]


def test_the_knob_at_zero_ends_a_table_at_the_first_blank_row() -> None:
    run = Run([(1, "header", H), *rows(2, 1), *rows(4, 1)], max_blank_rows=0)
    assert run.tables == [("t1", 1, 1, 3, 1, 0, "blank")]
    assert run.kinds["outside_table"] == 1


def test_a_header_a_totals_or_an_other_row_still_ends_a_table_at_once() -> None:
    grid: Grid = [
        (1, "header", H),
        *rows(2, 2),
        (5, "totals", ["Total", 2]),  # after a blank row
        (7, "header", H),
        *rows(8, 1),
        (9, "other", ["Note: see below"]),
        (10, "data", [None] * 5 + ["x", 1, 2]),  # nothing open, not t2's shape: outside
    ]
    run = Run(grid)
    assert run.tables == [
        ("t1", 1, 1, 3, 2, 0, "totals"),  # a blank row, then the totals row ended it
        ("t2", 7, 1, 3, 1, 0, "other"),
    ]
    assert run.kinds == {
        "table_header": 2,
        "table_data": 3,
        "totals": 1,
        "other": 1,
        "outside_table": 1,
    }


def test_a_table_interrupted_by_a_label_or_totals_continues_below() -> None:
    grid: Grid = [
        (1, "header", H),
        *rows(2, 2),
        (5, "other", ["North branch"]),  # a section label after a blank row
        *rows(6, 2),
        (8, "totals", ["Total", 4]),
        (9, "other", ["Note: two more joined late"]),  # two interruptions in a row
        *rows(11, 1),
        (12, "other", ["a"]),
        (13, "other", ["b"]),
        (14, "other", ["c"]),  # three: the table is over
        *rows(15, 1),
    ]
    run = Run(grid)
    assert run.tables == [
        ("t1", 1, 1, 3, 2, 0, "other"),
        ("t2", 1, 1, 3, 2, 0, "totals"),
        ("t3", 1, 1, 3, 1, 0, "other"),
    ]
    assert [(t.continues, t.first_data_row) for t in run.locator.tables] == [
        (None, 2), ("t1", 6), ("t1", 11),
    ]  # fmt: skip
    assert run.kinds == {"table_header": 1, "table_data": 5, "other": 5, "totals": 1,
                         "outside_table": 1}  # fmt: skip
    assert run.issues == [("row_outside_table", 15, 1)]


def test_an_unrecognised_table_below_is_not_absorbed_by_the_table_above() -> None:
    grid: Grid = [
        (1, "header", ["ID", "First", "Last", "Email", "Phone", "Born"]),
        (2, "data", ["M1", "Ann", "Lee", "a@e.com", "555", "1990-01-01"]),
        (3, "totals", ["Total", 1]),
        (5, "other", ["Code", "Meaning", "Fee"]),
        (6, "data", ["G", "Gold", 40]),
    ]
    run = Run(grid)
    assert [(t.recognised, t.header_row, t.continues) for t in run.locator.tables] == [
        (True, 1, None), (False, 5, None),
    ]  # fmt: skip


def test_data_of_another_shape_after_a_gap_is_not_the_same_table() -> None:
    grid: Grid = [(1, "header", H), *rows(2, 2), (5, "data", [None] * 6 + ["a", 1, 2])]
    run = Run(grid)
    assert run.tables == [("t1", 1, 1, 3, 2, 0, "blank")]
    assert run.issues == [("row_outside_table", 5, 1)]


def test_stacked_headers_are_joined_into_the_column_headers() -> None:
    grid: Grid = [
        (1, "other", ["Club roster"]),  # a one-cell banner is never a group header
        (2, "other", [None, "Contact", None, "Hours", None]),
        (3, "header", ["ID", "Email", "Phone", "Mon", "Tue"]),
        (4, "data", ["M1", "a@e.com", "555", 2, 3]),
    ]
    run = Run(grid)
    [table] = run.locator.tables
    assert table.headers == [
        "ID",
        "Contact / Email",
        "Contact / Phone",
        "Hours / Mon",
        "Hours / Tue",
    ]
    assert table.header_parts == [["ID"], ["Contact", "Email"], ["Contact", "Phone"],
                                  ["Hours", "Mon"], ["Hours", "Tue"]]  # fmt: skip
    assert (table.header_row, table.group_row) == (3, 2)
    assert run.kinds == {"other": 1, "table_group_header": 1, "table_header": 1, "table_data": 1}


def test_a_text_row_above_a_header_after_a_blank_row_is_not_a_group_header() -> None:
    run = Run(
        [(1, "other", ["Contact", None, "Hours"]), (3, "header", H), *rows(4, 1)],
    )
    assert run.locator.tables[0].headers == H
    assert run.kinds == {"other": 1, "table_header": 1, "table_data": 1}


def test_side_by_side_tables_split_where_an_empty_band_runs_down() -> None:
    # One empty header column between the tables, empty in every data row too: two tables.
    grid: Grid = [
        (1, "header", ["ID", "Name", None, "Code", "Label"]),
        (2, "data", ["M1", "Ann", None, "G", "Gold"]),
        (3, "data", ["M2", "Bob", None, "S", "Silver"]),
    ]
    run = Run(grid)
    assert run.tables == [
        ("t1", 1, 1, 2, 2, 0, "end_of_sheet"),
        ("t2", 1, 4, 5, 2, 0, "end_of_sheet"),
    ]
    assert run.kinds == {"table_header": 1, "table_data": 2}


def test_a_blank_header_cell_over_a_filled_column_does_not_split() -> None:
    # Two blank header cells, but the data fills them: one table with unnamed columns.
    grid: Grid = [
        (1, "header", ["ID", "Name", None, None, "Email"]),
        (2, "data", ["M1", "Ann", "x", "y", "a@e.com"]),
        (3, "data", ["M2", "Bob", None, "z", "b@e.com"]),
    ]
    run = Run(grid)
    [table] = run.locator.tables
    assert (table.first_column, table.last_column) == (1, 5)
    assert table.headers == ["ID", "Name", None, None, "Email"]


def test_the_layout_is_fixed_after_layout_rows_and_later_cells_in_the_band_are_reported() -> None:
    grid: Grid = [
        (1, "header", ["ID", "Name", None, "Code"]),
        (2, "data", ["M1", "Ann", None, "G"]),
        (3, "data", ["M2", "Bob", None, "S"]),
        (4, "data", ["M3", "Cy", "stray", "B"]),  # after the layout was decided on 2 rows
    ]
    run = Run(grid, layout_rows=2)
    assert [(t[2], t[3], t[4]) for t in run.tables] == [(1, 2, 3), (4, 4, 3)]
    assert run.issues == [("cells_outside_table", 4, 1)]
    assert run.locator.tables[0].cells_outside == 1


def test_an_unrecognised_table_is_found_by_its_shape() -> None:
    grid: Grid = [
        (1, "other", ["Lookup codes"]),
        (2, "other", ["Code", "Meaning", "Since"]),  # no detector recognised these labels
        (3, "data", ["G", "Gold", 2001]),
        (5, "data", ["S", "Silver", 2003]),  # after a blank row: same table
    ]
    run = Run(grid)
    [table] = run.locator.tables
    assert (table.recognised, table.header_row, table.data_rows, table.headers) == (
        False,
        2,
        2,
        ["Code", "Meaning", "Since"],
    )
    assert run.kinds == {"other": 1, "unrecognised_table_header": 1, "unrecognised_table_data": 2}
    assert run.issues == []


def test_an_all_text_data_row_heads_an_unrecognised_table_only_at_its_start() -> None:
    grid: Grid = [
        (1, "data", ["x", 1, 2]),  # outside
        (2, "data", ["Code", "Meaning", "Note"]),  # text, but the row above was data: outside
        (3, "data", ["G", "Gold", 3]),
    ]
    run = Run(grid)
    assert run.locator.tables == []
    assert run.kinds == {"outside_table": 3}
    assert [i[1] for i in run.issues] == [1, 2, 3]


def test_data_rows_with_no_table_are_issues_with_their_row_numbers() -> None:
    run = Run([(4, "data", [1, 2, 3]), (9, "data", [4, 5, 6])])
    assert run.issues == [("row_outside_table", 4, 1), ("row_outside_table", 9, 1)]
    assert run.kinds == {"outside_table": 2}
    assert run.locator.blank_rows == 7


def test_table_open_tells_classification_about_blank_gaps() -> None:
    events: list[Any] = []
    locator = TableLocator(
        lambda: "t1",
        sample_rows=1,
        chunk_rows=10,
        max_blank_rows=2,
        on_chunk=lambda *a: events.append(a),
        on_table_end=lambda t: None,
        on_issue=lambda *a: None,
    )
    assert locator.table_open(1) is False
    locator.feed(1, "header", H)
    locator.feed(2, "data", ["M1", 1, "a"])
    assert [locator.table_open(n) for n in (3, 5, 6)] == [True, True, False]


def test_a_label_between_the_header_and_its_first_data_row_does_not_end_it() -> None:
    grid: Grid = [(1, "header", H), (2, "other", ["North branch"]), *rows(3, 2)]
    run = Run(grid)
    assert run.tables == [("t1", 1, 1, 3, 2, 0, "end_of_sheet")]
    assert run.kinds == {"table_header": 1, "other": 1, "table_data": 2}


def test_claimed_rows_reach_the_chunks_exactly_padded_to_the_tables_width() -> None:
    # Past the layout rows, a row of the one open table is claimed on a short path (kept as
    # it came); a short row is padded, and a row with a cell right of the table goes the
    # long way (its outside cell reported). Every chunk row must be exactly the table's width.
    chunks: list[list[Any]] = []
    grid: Grid = [(1, "header", H)]
    grid += [(2 + i, "data", [f"M{i}", i, f"x{i}@e.com"]) for i in range(3)]
    grid += [(5, "data", ["M3", 3]), (6, "data", ["M4", None, "e4", "extra"]), (7, "data", ["M5"])]
    locator = TableLocator(
        lambda: "t1",
        sample_rows=2,
        chunk_rows=4,
        max_blank_rows=3,
        on_chunk=lambda t, numbers, rows: chunks.append((numbers, [list(r) for r in rows])),
        on_table_end=lambda t: None,
        on_issue=lambda code, row, n: chunks.append((code, row, n)),
        layout_rows=2,
    )
    for number, kind, values in grid:
        locator.feed(number, kind, values)
    locator.finish()
    assert chunks == [
        (
            [2, 3, 4, 5],
            [["M0", 0, "x0@e.com"], ["M1", 1, "x1@e.com"], ["M2", 2, "x2@e.com"], ["M3", 3, None]],
        ),
        ("cells_outside_table", 6, 1),
        ([6, 7], [["M4", None, "e4"], ["M5", None, None]]),
    ]
    (table,) = locator.tables
    assert (table.data_rows, table.first_data_row, table.last_data_row) == (6, 2, 7)
    assert table.sample == [["M0", 0, "x0@e.com"], ["M1", 1, "x1@e.com"]]
    assert table.cells_outside == 1
    assert locator.kinds == {"table_header": 1, "table_data": 6}


def test_a_table_split_by_an_empty_column_stays_one_table() -> None:
    # A deleted column left empty (header cell and data): the same records fill both sides, and
    # no header text repeats, so it is one table with an unnamed column, not two half-records.
    grid: Grid = [
        (1, "header", ["ID", "Name", None, "Email", "Phone"]),
        *[(2 + i, "data", [f"M{i}", f"n{i}", None, f"e{i}", f"p{i}"]) for i in range(3)],
        (5, "data", ["M3", "n3", None, None, None]),  # one record with its right half empty
        *[(6 + i, "data", [f"M{i}", f"n{i}", None, f"e{i}", f"p{i}"]) for i in range(6)],
    ]
    run = Run(grid)
    assert run.tables == [("t1", 1, 1, 5, 10, 0, "end_of_sheet")]
    assert run.locator.tables[0].headers == ["ID", "Name", None, "Email", "Phone"]
    assert run.kinds == {"table_header": 1, "table_data": 10}
    assert run.issues == []


def test_side_by_side_tables_that_repeat_their_headers_stay_two_however_long() -> None:
    grid: Grid = [
        (1, "header", ["ID", "Name", None, "ID", "Name"]),
        *[(2 + i, "data", [f"M{i}", f"a{i}", None, f"M{9 + i}", f"b{i}"]) for i in range(5)],
    ]
    run = Run(grid)
    assert run.tables == [
        ("t1", 1, 1, 2, 5, 0, "end_of_sheet"),
        ("t2", 1, 4, 5, 5, 0, "end_of_sheet"),
    ]


def test_side_by_side_tables_that_end_on_different_rows_stay_two() -> None:
    grid: Grid = [
        (1, "header", ["ID", "Name", None, "Code", "Label"]),
        *[(2 + i, "data", [f"M{i}", f"a{i}", None, f"C{i}", f"L{i}"]) for i in range(3)],
        *[(5 + i, "data", [f"M{3 + i}", f"a{i}"]) for i in range(4)],
    ]
    run = Run(grid)
    # The right table ends first (blank rows), the left one at the end of the sheet.
    assert [(t[2], t[3], t[4], t[6]) for t in run.tables] == [
        (4, 5, 3, "blank"),
        (1, 2, 7, "end_of_sheet"),
    ]


def test_an_unnamed_data_column_beside_the_header_belongs_to_the_table() -> None:
    # A pandas index (no header cell, filled in every row) left of the header: an unnamed column
    # of the table. A cell in one row right of the header stays outside and is reported.
    grid: Grid = [
        (1, "header", [None, "ID", "Name", "Email"]),
        *[(2 + i, "data", [i, f"M{i}", f"n{i}", f"e{i}"]) for i in range(3)],
        (5, "data", [3, "M3", "n3", "e3", "stray"]),
    ]
    run = Run(grid)
    assert run.tables == [("t1", 1, 1, 4, 4, 0, "end_of_sheet")]
    assert run.locator.tables[0].headers == [None, "ID", "Name", "Email"]
    assert run.locator.tables[0].cells_outside == 1
    assert run.issues == [("cells_outside_table", 5, 1)]
