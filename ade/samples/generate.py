"""Sample inputs: a small messy roster workbook (what real exports look like) and large, clean
12-column workbooks for benchmarks.

The messy workbook is deterministic, so tests can assert the exact normalized cells. It has a
banner and an export note above the first table, blank rows, a table starting in column B, a
totals row, a note, a second table on the same sheet with renamed and extra columns (two
e-mail columns), an instructions sheet with no table, a third table starting at C3 on another
sheet, and dates as real dates and in four text formats.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "LARGE_HEADERS",
    "MESSY_CSV_ROWS",
    "large_row",
    "write_large_workbook",
    "write_messy_csv",
    "write_messy_workbook",
]

D = dt.datetime

ROSTER_ROWS: list[tuple[int, int, list[Any]]] = [
    # (row, first column, cells) on sheet "Roster"
    (1, 1, ["Riverside Community Club - Member Roster"]),
    (2, 1, ["Exported from ClubManager on 2024-03-01"]),
    (
        4,
        2,
        ["Member #", "First Name", "Surname", "E-mail Address", "Phone", "DOB", "Joined", "Locker"],
    ),
    (
        5,
        2,
        [
            10001,
            "alice",
            "SMITH",
            " Alice.Smith@Example.com ",
            "555-201-0001",
            D(1985, 4, 3),
            "2019-01-15",
            "L12",
        ],
    ),
    (
        6,
        2,
        [
            "M10002",
            "Bob",
            "Jones",
            "bob.jones@example.com",
            "(555) 201-0002",
            "03/04/1990",
            "March 5, 2020",
            None,
        ],
    ),
    (
        7,
        2,
        [
            "m-10003",
            "Carol",
            "Diaz",
            "carol@example",
            "555.201.0003",
            "1978-11-30",
            D(2021, 6, 1),
            "L7",
        ],
    ),
    (
        8,
        2,
        [10004, "Dan", None, "dan@example.com", "12345", "31 Dec 1999", "2022-02-28", None],
    ),
    (
        9,
        2,
        [
            10005,
            " Eve ",
            "Ng",
            "eve.ng@example.com",
            "+1 555 201 0005",
            "not known",
            "2023-07-04",
            "L3",
        ],
    ),
    (10, 2, ["Total members: 5"]),
    (12, 1, ["Note: phone numbers are as provided by members."]),
    (
        14,
        1,
        [
            "Member ID",
            "First",
            "Last",
            "Email",
            "Email (work)",
            "Phone Number",
            "Date of Birth",
            "Member Since",
            "Plan",
        ],
    ),
    (
        15,
        1,
        [
            "M20001",
            "Frank",
            "Ochoa",
            "frank@example.com",
            "f.ochoa@work.example.com",
            "5552020001",
            "1970-01-02",
            "01/05/2015",
            "Gold",
        ],
    ),
    (
        16,
        1,
        [
            "M20002",
            "Grace",
            "Park",
            "grace@example.com",
            None,
            "555-202-0002",
            D(1992, 2, 29),
            "2016-08-20",
            "Silver",
        ],
    ),
    (
        17,
        1,
        [
            "M20003",
            "Heidi",
            "Quinn",
            None,
            "heidi@work.example.com",
            "555-202-0003",
            "Feb 3, 1988",
            "2017-09-09",
            "Gold",
        ],
    ),
]

INSTRUCTION_ROWS: list[tuple[int, int, list[Any]]] = [
    (1, 1, ["How to fill in this workbook"]),
    (2, 1, ["Enter one member per row."]),
    (3, 1, ["Dates may be in any format."]),
]

SIGNUP_ROWS: list[tuple[int, int, list[Any]]] = [
    (1, 3, ["New signups (spring)"]),
    (3, 3, ["ID", "Given Name", "Family Name", "E-mail", "Birthday", "Referred By"]),
    (4, 3, [30001, "Ivan", "Reyes", "ivan@example.com", "1995-05-05", "Alice Smith"]),
    (5, 3, [30002, "Judy", "Stone", "judy@example.com", "05/06/1996", None]),
]

MESSY_SHEETS = (
    ("Roster", ROSTER_ROWS),
    ("Instructions", INSTRUCTION_ROWS),
    ("New Signups", SIGNUP_ROWS),
)

MESSY_CSV_ROWS: list[list[str]] = [
    ["Club roster export"],
    [],
    ["member_no", "first name", "last name", "email address", "tel", "birth date", "start date"],
    ["501", "kim", "LEE", "Kim.Lee@Example.com", "555 303 0001", "1999-09-09", "01/02/2020"],
    ["502", "Lou", "Ray", "lou@example", "555-303-0002", "Jan 5, 1980", "2021-03-04"],
    ["TOTAL", "2"],
]


def write_messy_workbook(path: Path) -> Path:
    """Write the messy roster workbook (three sheets, three tables) to ``path``."""
    import xlsxwriter

    workbook = xlsxwriter.Workbook(str(path), {"default_date_format": "yyyy-mm-dd"})
    try:
        for name, rows in MESSY_SHEETS:
            sheet = workbook.add_worksheet(name)
            for row, column, cells in rows:
                for offset, value in enumerate(cells):
                    if value is not None:
                        sheet.write(row - 1, column - 1 + offset, value)
    finally:
        workbook.close()
    return path


def write_messy_csv(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(MESSY_CSV_ROWS)
    return path


LARGE_HEADERS = (
    "Member ID",
    "First Name",
    "Last Name",
    "Email",
    "Phone",
    "Date of Birth",
    "Join Date",
    "City",
    "State",
    "Postal Code",
    "Plan",
    "Notes",
)
_FIRST = ("Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie")
_LAST = ("Smith", "Garcia", "Chen", "Okafor", "Novak", "Silva", "Khan", "Berg")
_CITIES = (("Springfield", "IL"), ("Riverside", "CA"), ("Fairview", "TN"), ("Salem", "OR"))
_PLANS = ("Gold", "Silver", "Bronze")


def large_row(i: int, rng: random.Random) -> list[Any]:
    """Row ``i`` of a benchmark workbook: 12 columns of mixed text, numbers and dates."""
    first = _FIRST[i % len(_FIRST)]
    last = _LAST[(i // 8) % len(_LAST)]
    city, state = _CITIES[i % len(_CITIES)]
    return [
        f"M{100000 + i}",
        first,
        last,
        f"{first.lower()}.{last.lower()}{i}@example.com",
        f"555-{rng.randrange(100, 1000)}-{rng.randrange(1000, 10000)}",
        D(1950, 1, 1) + dt.timedelta(days=rng.randrange(0, 20000)),
        D(2000, 1, 1) + dt.timedelta(days=rng.randrange(0, 8000)),
        city,
        state,
        rng.randrange(10000, 99999),
        _PLANS[i % len(_PLANS)],
        "renewal due" if i % 7 == 0 else None,
    ]


def write_large_workbook(path: Path, rows: int, seed: int = 0) -> Path:
    """A one-table, 12-column workbook with ``rows`` data rows (streamed; flat memory)."""
    import xlsxwriter

    rng = random.Random(seed)
    workbook = xlsxwriter.Workbook(
        str(path), {"constant_memory": True, "default_date_format": "yyyy-mm-dd"}
    )
    try:
        sheet = workbook.add_worksheet("Members")
        sheet.write_row(0, 0, LARGE_HEADERS)
        for i in range(1, rows + 1):
            sheet.write_row(i, 0, large_row(i, rng))
    finally:
        workbook.close()
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write ADE sample inputs.")
    parser.add_argument("path", type=Path, help="output file (.xlsx or .csv)")
    parser.add_argument("--rows", type=int, default=0, help="write a large clean workbook")
    args = parser.parse_args(argv)
    if args.rows:
        write_large_workbook(args.path, args.rows)
    elif args.path.suffix.lower() == ".csv":
        write_messy_csv(args.path)
    else:
        write_messy_workbook(args.path)
    print(args.path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
