"""The pure decision objects of passes 1 and 2, driven directly (no files, no config code)."""

from __future__ import annotations

from typing import Any

from ade.configs import FieldSpec
from ade.engine._cells import a1_range, column_letter
from ade.engine._locator import TableDraft, TableLocator
from ade.engine._mapping import decide_mapping

FIELDS = [
    FieldSpec("member_id", "Member ID", ("id",), True),
    FieldSpec("email", "Email", ("e-mail",)),
    FieldSpec("work_email", "Work Email", ("e-mail",)),
]
LETTERS = ["A", "B", "C", "D"]


def test_column_letters() -> None:
    assert [column_letter(i) for i in (1, 26, 27, 52, 703, 16384)] == [
        "A",
        "Z",
        "AA",
        "AZ",
        "AAA",
        "XFD",
    ]
    assert a1_range(3, 4, 8, 20) == "C4:H20"


def test_one_column_per_field_and_the_loser_stays_unmapped() -> None:
    decisions = decide_mapping(
        ["Email", "Contact"],
        [{"email": 3.0}, {"email": 2.0}],
        FIELDS,
        1.0,
        LETTERS,
    )
    assert [(d.field, d.score, d.unmapped_reason) for d in decisions] == [
        ("email", 3.0, None),
        (None, 2.0, "field 'email' went to column A (score 3 vs 2)"),
    ]


def test_a_loser_can_still_take_its_second_best_field() -> None:
    decisions = decide_mapping(
        ["Email", "Mail"],
        [{"email": 3.0}, {"email": 2.0, "work_email": 1.5}],
        FIELDS,
        1.0,
        LETTERS,
    )
    assert [d.field for d in decisions] == ["email", "work_email"]


def test_ties_exact_label_then_synonym_then_manifest_order_then_leftmost() -> None:
    # Same score for the same field: the exact label wins even from the right.
    d = decide_mapping(["Contact", "E-mail", "Email"], [{"email": 2.0}] * 3, FIELDS, 1.0, LETTERS)
    assert [x.field for x in d] == [None, None, "email"]
    # No exact label: the synonym wins.
    d = decide_mapping(["Contact", "E-mail"], [{"email": 2.0}] * 2, FIELDS, 1.0, LETTERS)
    assert [x.field for x in d] == [None, "email"]
    # Nothing to tell them apart: the leftmost column wins.
    d = decide_mapping(["Contact", "Reach"], [{"email": 2.0}] * 2, FIELDS, 1.0, LETTERS)
    assert [x.field for x in d] == ["email", None]
    # One column tied between two fields: it is a synonym of both -> manifest order decides.
    d = decide_mapping(["E-mail"], [{"work_email": 2.0, "email": 2.0}], FIELDS, 1.0, LETTERS)
    assert [x.field for x in d] == ["email"]


def test_threshold_and_no_votes() -> None:
    d = decide_mapping(["Notes", "Stuff"], [{"email": 0.5}, {}], FIELDS, 1.0, LETTERS)
    assert [(x.field, x.unmapped_reason) for x in d] == [
        (None, "best score 0.5 (field 'email') is below the threshold 1"),
        (None, "no detector voted for any field"),
    ]
    # Detectors that only voted against a field did vote: the reason says how it scored.
    d = decide_mapping(["Notes"], [{"email": -2.0}], FIELDS, 1.0, LETTERS)
    assert [(x.field, x.score, x.unmapped_reason) for x in d] == [
        (None, -2.0, "best score -2 (field 'email') is below the threshold 1"),
    ]


class Recorder:
    def __init__(self) -> None:
        self.rows: list[tuple[str, int, list[Any]]] = []
        self.chunks: list[tuple[str, list[int]]] = []
        self.ended: list[str] = []
        self.issues: list[tuple[str, int, int]] = []
        self.n = 0

    def new_id(self) -> str:
        self.n += 1
        return f"t{self.n}"

    def scan(self, max_blank_rows: int = 3) -> TableLocator:
        return TableLocator(
            self.new_id,
            sample_rows=2,
            chunk_rows=2,
            max_blank_rows=max_blank_rows,
            on_chunk=self.on_chunk,
            on_table_end=lambda t: self.ended.append(t.id),
            on_issue=lambda code, row, n: self.issues.append((code, row, n)),
            layout_rows=2,
        )

    def on_chunk(self, table: TableDraft, numbers: list[int], rows: list[list[Any]]) -> None:
        self.chunks.append((table.id, list(numbers)))
        self.rows.extend((table.id, n, cells) for n, cells in zip(numbers, rows, strict=True))


def feed(scan: TableLocator, rows: list[tuple[int, str, list[Any]]]) -> list[TableDraft]:
    for number, kind, values in rows:
        scan.feed(number, kind, values)
    scan.finish()
    return scan.tables


def test_side_by_side_tables_end_independently() -> None:
    rec = Recorder()
    tables = feed(
        rec.scan(max_blank_rows=0),
        [
            (1, "header", ["id", "name", None, None, "code", "label"]),
            (2, "data", [1, "a", None, None, "G", "Gold"]),
            (3, "data", [2, "b", None, None, None, None]),  # the right table ended
            (4, "data", [3, "c"]),
        ],
    )
    assert [(t.id, t.first_column, t.last_column, t.data_rows, t.ended_by) for t in tables] == [
        ("t2", 5, 6, 1, "blank"),
        ("t1", 1, 2, 3, "end_of_sheet"),
    ]
    assert [s for s in tables[1].sample] == [[1, "a"], [2, "b"]]  # sample capped at 2
    assert rec.rows[-1] == ("t1", 4, [3, "c"])
    # Rows arrive in chunks of 2, and a table's last partial chunk when it ends.
    assert rec.chunks == [("t1", [2, 3]), ("t2", [2]), ("t1", [4])]
    assert rec.ended == ["t2", "t1"]


def test_blank_rows_notes_and_orphans_with_no_blank_tolerance() -> None:
    rec = Recorder()
    scan = rec.scan(max_blank_rows=0)
    tables = feed(
        scan,
        [
            (1, "data", ["stray", 1, 2]),  # no header above: outside any table
            (2, "header", ["id", "name"]),
            (3, "header", ["id", "name"]),  # the first header got no data
            (4, "data", [1, "a", "outside"]),  # a cell right of the header span
            (6, "data", [2, "b"]),  # after a blank row: the table had ended
            (7, "header", ["id", "name"]),
            (8, "data", [3, "c"]),
            (9, "other", ["Note: ..."]),
        ],
    )
    got = [(t.id, t.header_row, t.data_rows, t.ended_by, t.cells_outside) for t in tables]
    assert got == [("t2", 3, 1, "blank", 1), ("t3", 7, 1, "other", 0)]
    assert scan.kinds == {
        "header_without_data": 1,
        "other": 1,
        "outside_table": 2,
        "table_data": 2,
        "table_header": 2,
    }
    assert sum(scan.kinds.values()) == scan.rows_read == 8
    assert scan.row_types == {"blank": 1, "data": 4, "header": 3, "other": 1}
    assert rec.issues == [
        ("row_outside_table", 1, 1),
        ("cells_outside_table", 4, 1),
        ("row_outside_table", 6, 1),
    ]
