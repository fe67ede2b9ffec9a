"""Extraction fidelity: messy member rosters generated with known truth, run through the engine
with the bundled roster config, and scored field by field against the truth.

    python benchmarks/fidelity.py                 # both sets (28 + 17 files), scored
    python benchmarks/fidelity.py --keep DIR      # also keep the generated files in DIR
    python benchmarks/fidelity.py --json          # one JSON document instead of the table

Each file is a set of member records (the truth) rendered the way real exports look: banners
and notes, blank rows inside tables (1-3 in a row), blank lines in CSV exports, stacked group
headers, side-by-side tables split by an empty column, tables starting anywhere, totals rows,
several sheets with instruction and lookup (unrecognised) tables, ID headers as people write
them, full names in one column, day-first and month-first date columns, IDs with leading
zeros, in .xlsx, .xls, .ods, .xlsb and CSV (comma, semicolon, tab; UTF-8, UTF-8 with BOM,
UTF-16, Windows-1252).

A second set, written independently so the engine is not tuned to this generator, is scored
with it: ``fidelity_heldout.py`` (real exports' header spellings, page lines and repeated
headers, subtotals, label footers, dashed rules, an empty column inside a table, date-times,
Excel and pandas CSV quirks). The report's ``set`` column says which set a file is from.

Scores: **fidelity** = fields equal to the truth / fields in the truth (7 per member: the
normalized ID, first and last name, e-mail, phone, date of birth, join date; a missing value
must stay missing); **rows lost** = truth members with no output row; **spurious rows** =
output rows that match no truth member (or match one twice); a run that fails loses every
member. Targets, over both sets: fidelity >= 0.99, 0 rows lost, 0 spurious rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

FIELDS = ("member_id", "first_name", "last_name", "email", "phone", "date_of_birth", "join_date")
LABELS = {
    "Member ID": "member_id",
    "First Name": "first_name",
    "Last Name": "last_name",
    "Email": "email",
    "Phone": "phone",
    "Date of Birth": "date_of_birth",
    "Join Date": "join_date",
}
FIRST = (
    "Alice",
    "Bob",
    "Carol",
    "Dan",
    "Eve",
    "Frank",
    "Grace",
    "Heidi",
    "Ivan",
    "Judy",
    "Karl",
    "Lena",
    "Mona",
    "Nils",
    "Olga",
    "Pedro",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
)
LAST = (
    "Smith",
    "Jones",
    "Diaz",
    "Ng",
    "Ochoa",
    "Park",
    "Quinn",
    "Reyes",
    "Stone",
    "Berg",
    "Okafor",
    "Novak",
    "Silva",
    "Khan",
    "Chen",
    "Garcia",
    "Moreau",
    "Kowalski",
)
MIDDLE = ("J.", "Ann", "K.", "Lee", "M.")
ID_HEADERS = ("Member ID", "Member #", "Mbr No.", "ID", "Membership Number", "member_no")
TOTAL = "Total members: {n}"


@attrs.frozen
class Member:
    """One truth record, as the normalized output must show it."""

    number: int
    id_text: str  # as written in the source ("00123", "M10001", ...)
    first: str
    last: str
    email: str
    phone_digits: str
    born: dt.date | None
    joined: dt.date | None

    def truth(self) -> dict[str, Any]:
        digits = self.phone_digits
        return {
            "member_id": "M" + self.id_text.lstrip("Mm-"),
            "first_name": self.first,
            "last_name": self.last,
            "email": self.email,
            "phone": f"({digits[:3]}) {digits[3:6]}-{digits[6:]}",
            "date_of_birth": self.born,
            "join_date": self.joined,
        }


def members(rng: random.Random, start: int, n: int, *, middle: bool = False) -> list[Member]:
    out = []
    for i in range(n):
        number = start + i
        first = rng.choice(FIRST)
        if middle and rng.random() < 0.4:
            first = f"{first} {rng.choice(MIDDLE)}"
        last = rng.choice(LAST)
        born = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(0, 18000))
        joined = dt.date(2000, 1, 1) + dt.timedelta(days=rng.randrange(0, 8500))
        out.append(
            Member(
                number=number,
                id_text=f"{number:06d}" if rng.random() < 0.3 else f"M{number}",
                first=first,
                last=last,
                email=f"{first.split()[0].lower()}.{last.lower()}{number}@example.com",
                phone_digits=f"555{rng.randrange(1000000, 9999999)}",
                born=None if rng.random() < 0.05 else born,
                joined=joined,
            )
        )
    return out


# -- how a record is written in a source ------------------------------------------------------


@attrs.frozen
class Style:
    """How one table writes its members."""

    id_header: str = "Member ID"
    full_name: bool = False
    dates: str = "cells"  # "cells" | "iso" | "day_first" | "month_first" | "long"
    shout: bool = False  # names in capitals
    phone_style: int = 0
    extra: bool = False  # an unmapped "Notes" column

    def header(self) -> list[Any]:
        names = ["Name"] if self.full_name else ["First Name", "Last Name"]
        cols = [self.id_header, *names, "E-mail", "Phone", "DOB", "Join Date"]
        return [*cols, "Notes"] if self.extra else cols

    def row(self, m: Member, text_only: bool) -> list[Any]:
        first, last = (m.first.upper(), m.last.upper()) if self.shout else (m.first, m.last)
        names = [f"{first} {last}"] if self.full_name else [first, last]
        d = m.phone_digits
        phone = (
            f"{d[:3]}-{d[3:6]}-{d[6:]}",
            f"({d[:3]}) {d[3:6]}-{d[6:]}",
            f"{d[:3]}.{d[3:6]}.{d[6:]}",
            f"+1 {d[:3]} {d[3:6]} {d[6:]}",
        )[self.phone_style % 4]
        email = f" {m.email.upper()} " if m.number % 5 == 0 else m.email
        born, joined = self.date(m.born, text_only), self.date(m.joined, text_only)
        row = [m.id_text, *names, email, phone, born, joined]
        return [*row, "renewal due" if m.number % 3 == 0 else None] if self.extra else row

    def date(self, value: dt.date | None, text_only: bool) -> Any:
        if value is None:
            return None
        style = "iso" if self.dates == "cells" and text_only else self.dates
        if style == "cells":
            return dt.datetime(value.year, value.month, value.day)
        if style == "iso":
            return value.isoformat()
        if style == "day_first":
            return f"{value.day:02d}/{value.month:02d}/{value.year}"
        if style == "month_first":
            return f"{value.month:02d}/{value.day:02d}/{value.year}"
        return value.strftime("%B %d, %Y").replace(" 0", " ")


def with_order_evidence(ms: list[Member], order: str) -> list[Member]:
    """A numeric-date column tells its order through a day above 12 somewhere (real columns of
    a dozen dates almost always have one); guarantee it so the truth is decidable."""
    if order not in ("day_first", "month_first") or any(m.born and m.born.day > 12 for m in ms):
        return ms
    first = ms[0]
    born = first.born or dt.date(1980, 1, 1)
    return [attrs.evolve(first, born=born.replace(day=25)), *ms[1:]]


# -- layouts: each returns the sheets of one file --------------------------------------------

Rows = list[tuple[int, int, list[Any]]]
Built = tuple[dict[str, Rows], list[Member]]
Builder = Callable[[random.Random, bool], Built]


def table(
    top: int,
    left: int,
    style: Style,
    ms: list[Member],
    text: bool,
    *,
    blank_every: int = 0,
    blanks: int = 1,
    totals: bool = False,
    group: bool = False,
) -> tuple[Rows, int]:
    rows: Rows = []
    r = top
    if group:
        header = style.header()
        group_row: list[Any] = [None] * len(header)
        group_row[1] = "Member"
        group_row[header.index("E-mail")] = "Contact"
        group_row[header.index("DOB")] = "Dates"
        rows.append((r, left, group_row))
        r += 1
    rows.append((r, left, style.header()))
    r += 1
    for i, m in enumerate(ms):
        rows.append((r, left, style.row(m, text)))
        r += 1
        if blank_every and (i + 1) % blank_every == 0 and i + 1 < len(ms):
            r += blanks
    if totals:
        rows.append((r, left, [TOTAL.format(n=len(ms))]))
        r += 1
    return rows, r


def banner(rows: Rows) -> Rows:
    return [
        (1, 1, ["Riverside Community Club - Member Roster"]),
        (2, 1, ["Exported from ClubManager on 2024-03-01"]),
        *rows,
    ]


LOOKUP: Rows = [
    (1, 1, ["Plan Code", "Description", "Monthly Fee"]),
    (2, 1, ["G", "Gold", 40]),
    (3, 1, ["S", "Silver", 25]),
    (4, 1, ["B", "Bronze", 10]),
]
INSTRUCTIONS: Rows = [
    (1, 1, ["How to fill in this workbook"]),
    (2, 1, ["One member per row."]),
    (4, 1, ["Dates may be in any format."]),
]


@attrs.frozen
class Case:
    name: str
    fmt: str
    build: Builder
    csv: dict[str, str] = attrs.field(factory=dict)

    def write(self, index: int, folder: Path) -> tuple[Path, list[Member]]:
        from ade.samples.formats import write_grid

        rng = random.Random(1000 + index)
        text_only = self.fmt in ("csv", "xlsb")  # no date cells in these
        sheets, truth = self.build(rng, text_only)
        path = folder / f"{index:02d}-{self.name}.{self.fmt}"
        write_grid(path, sheets, **self.csv)
        return path, truth


def plain(style: Style, offset: int = 0, **kw: Any) -> Builder:
    """One table under a banner, ``offset`` columns from column A."""

    def build(rng: random.Random, text: bool) -> Built:
        ms = with_order_evidence(
            members(
                rng, rng.randrange(10000, 90000), rng.randrange(12, 40), middle=style.full_name
            ),
            style.dates,
        )
        rows, _ = table(4, 1 + offset, style, ms, text, **kw)
        return {"Members": banner(rows)}, ms

    return build


def side_by_side(style: Style) -> Builder:
    def build(rng: random.Random, text: bool) -> Built:
        left = with_order_evidence(members(rng, 20000, 15), style.dates)
        right = with_order_evidence(members(rng, 30000, 11), style.dates)
        a, _ = table(3, 1, style, left, text)
        b, _ = table(3, len(style.header()) + 2, style, right, text)  # one empty column between
        return {"Branches": [(1, 1, ["North branch"]), *a, *b]}, left + right

    return build


def several(rng: random.Random, text: bool) -> Built:
    s1 = Style(id_header="Mbr No.", dates="long", extra=True)
    s2 = Style(id_header="Membership Number", dates="month_first", phone_style=2)
    m1 = members(rng, 40000, 9)
    m2 = with_order_evidence(members(rng, 41000, 14), "month_first")
    t1, end = table(3, 2, s1, m1, text, totals=True, blank_every=4, blanks=2)
    t2, _ = table(end + 3, 1, s2, m2, text, blank_every=5)
    notes = [(end + 1, 1, ["Note: phone numbers are as provided by members."])]
    return {"Instructions": INSTRUCTIONS, "Roster": [*t1, *notes, *t2], "Plans": LOOKUP}, m1 + m2


def branch_labels(rng: random.Random, text: bool) -> Built:
    """A blank line and a section label ("North branch") between the branches of one table."""
    style = Style(id_header="Member #", dates="iso", phone_style=1)
    rows: Rows = [(1, 1, ["Members by branch"]), (3, 1, style.header())]
    truth: list[Member] = []
    r = 4
    for b, branch in enumerate(("North branch", "South branch", "East branch")):
        if b:
            r += 1  # a blank line before each label
        rows.append((r, 1, [branch]))
        r += 1
        for m in members(rng, 60000 + 100 * b, rng.randrange(3, 9)):
            rows.append((r, 1, style.row(m, text)))
            truth.append(m)
            r += 1
    return {"Branches": rows}, truth


def lookup_below(rng: random.Random, text: bool) -> Built:
    style = Style(id_header="ID", dates="day_first")
    ms = with_order_evidence(members(rng, 50000, 20), "day_first")
    rows, end = table(1, 1, style, ms, text, totals=True)
    lookup = [(end + 2 + r - 1, c, v) for r, c, v in LOOKUP]
    return {"Members": [*rows, *lookup]}, ms


CASES = [
    Case("plain", "xlsx", plain(Style())),
    Case("blank-rows-1", "xlsx", plain(Style(id_header="Member #"), blank_every=5, blanks=1)),
    Case("blank-rows-2", "xls", plain(Style(dates="iso"), blank_every=3, blanks=2)),
    Case("blank-rows-3", "ods", plain(Style(phone_style=1), blank_every=7, blanks=3)),
    Case("stacked-header", "xlsx", plain(Style(extra=True), group=True)),
    Case("stacked-header", "xls", plain(Style(id_header="Member #"), group=True, totals=True)),
    Case("stacked-header", "ods", plain(Style(dates="long"), group=True)),
    Case("side-by-side", "xlsx", side_by_side(Style())),
    Case("side-by-side", "ods", side_by_side(Style(dates="iso", phone_style=3))),
    Case("full-names", "xlsx", plain(Style(full_name=True, shout=True), totals=True)),
    Case("full-names", "csv", plain(Style(full_name=True, dates="iso"))),
    Case("day-first", "xlsx", plain(Style(dates="day_first"), offset=2)),
    Case(
        "day-first",
        "csv",
        plain(Style(dates="day_first", id_header="Mbr No.")),
        {"delimiter": ";", "encoding": "cp1252"},
    ),
    Case("month-first", "xls", plain(Style(dates="month_first", phone_style=2), blank_every=6)),
    Case(
        "month-first",
        "csv",
        plain(Style(dates="month_first"), blank_every=38),
        {"encoding": "utf-8-sig"},
    ),
    Case("several-sheets", "xlsx", several),
    Case("several-sheets", "xls", several),
    Case("several-sheets", "ods", several),
    Case("lookup-below", "xlsx", lookup_below),
    Case("branch-labels", "xlsx", branch_labels),
    Case("branch-labels", "csv", branch_labels),
    Case("lookup-below", "xlsb", lookup_below),
    Case(
        "offset-table", "xlsb", plain(Style(id_header="Membership Number", dates="iso"), offset=3)
    ),
    Case("blank-lines", "csv", plain(Style(dates="iso"), blank_every=4, blanks=1)),
    Case(
        "tab-utf16",
        "csv",
        plain(Style(id_header="ID", dates="long", shout=True), blank_every=10),
        {"delimiter": "\t", "encoding": "utf-16"},
    ),
    Case("pipe", "csv", plain(Style(dates="month_first", extra=True)), {"delimiter": "|"}),
    Case(
        "leading-zeros",
        "csv",
        plain(Style(id_header="member_no", dates="iso"), blank_every=2, blanks=1),
    ),
    Case(
        "totals-and-notes",
        "ods",
        plain(Style(id_header="Member #", dates="day_first"), totals=True, blank_every=8),
    ),
]


# -- running and scoring ----------------------------------------------------------------------


def all_cases() -> list[tuple[str, Any]]:
    """(set, case): the generated corpus, then the held-out cases written independently."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:  # imported from elsewhere, not run as a script
        sys.path.insert(0, here)
    from fidelity_heldout import HELDOUT

    return [("generated", c) for c in CASES] + [("held-out", c) for c in HELDOUT]


def read_output(path: Path) -> list[dict[str, Any]]:
    import openpyxl

    workbook = openpyxl.load_workbook(path, read_only=True)
    try:
        rows = list(workbook.worksheets[0].iter_rows(values_only=True))
    finally:
        workbook.close()
    header = rows[0]
    fields = {i: LABELS[h] for i, h in enumerate(header) if h in LABELS}
    return [{f: row[i] for i, f in fields.items()} for row in rows[1:]]


def _same(expected: Any, got: Any) -> bool:
    if isinstance(got, dt.datetime):
        got = got.date()
    return expected == got


def score(truth: list[Any], output: list[dict[str, Any]]) -> dict[str, int]:
    expected = {m.truth()["member_id"]: m.truth() for m in truth}
    seen: set[str] = set()
    correct = spurious = 0
    for row in output:
        key = row.get("member_id")
        if key not in expected or key in seen:
            spurious += 1
            continue
        seen.add(key)
        correct += sum(_same(expected[key][f], row.get(f)) for f in FIELDS)
    return {
        "members": len(expected),
        "fields": len(expected) * len(FIELDS),
        "correct": correct,
        "lost": len(expected) - len(seen),
        "spurious": spurious,
    }


def run(keep: Path | None) -> dict[str, Any]:
    from ade.engine import run_engine
    from ade.errors import InputError
    from ade.samples import ROSTER_CONFIG

    folder = keep or Path(tempfile.mkdtemp(prefix="ade-fidelity-"))
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    started = time.perf_counter()
    try:
        for index, (kind, case) in enumerate(all_cases()):
            source, truth = case.write(index, folder)
            out = folder / f"{source.stem}-out"
            try:
                engine = run_engine([source], ROSTER_CONFIG, out)
            except InputError:  # a run that fails (no table found) loses every member
                counts, outcome, outside = score(truth, []), "failed", None
            else:
                counts = score(truth, read_output(out / "normalized.xlsx"))
                outcome, outside = engine.outcome, engine.rows_outside_tables
            results.append(
                {
                    "file": source.name,
                    "set": kind,
                    "format": case.fmt,
                    **counts,
                    "fidelity": counts["correct"] / counts["fields"],
                    "outcome": outcome,
                    "rows_outside_tables": outside,
                }
            )
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    fields = sum(r["fields"] for r in results)
    return {
        "files": len(results),
        "members": sum(r["members"] for r in results),
        "fidelity": sum(r["correct"] for r in results) / fields,
        "rows_lost": sum(r["lost"] for r in results),
        "spurious_rows": sum(r["spurious"] for r in results),
        "seconds": round(time.perf_counter() - started, 2),
        "by_file": results,
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        "| file | set | format | members | fidelity | lost | spurious | outcome |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["by_file"]:
        lines.append(
            f"| {r['file']} | {r['set']} | {r['format']} | {r['members']} | {r['fidelity']:.4f} | "
            f"{r['lost']} | {r['spurious']} | {r['outcome']} |"
        )
    lines.append(
        f"| **all {result['files']} files** | | | **{result['members']}** | "
        f"**{result['fidelity']:.4f}** | **{result['rows_lost']}** | "
        f"**{result['spurious_rows']}** | |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="keep the generated files and outputs here")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    result = run(args.keep)
    print(json.dumps(result, indent=2, default=str) if args.json else report(result))
    ok = result["fidelity"] >= 0.99 and not result["rows_lost"] and not result["spurious_rows"]
    print(
        f"fidelity {result['fidelity']:.4f} (target >= 0.99), rows lost {result['rows_lost']}, "
        f"spurious rows {result['spurious_rows']} (targets 0): {'met' if ok else 'NOT met'}",
        file=sys.stderr,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
