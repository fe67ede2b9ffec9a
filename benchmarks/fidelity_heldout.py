"""Held-out fidelity cases: rosters written the way real exports are and the main generator
(``fidelity.py``) never writes them. Written separately, on purpose, so the engine and the
roster config are not tuned to one generator's habits.

What these files have that the main corpus does not:

* headers as people and systems spell them: ``MEMBER NO.``, ``Surname``, ``Given Name(s)``,
  `` Email Address ``, ``Mobile No.``, ``Tel.``, ``D.O.B.``, ``Date Joined``, line breaks in
  header cells (``Date of\\nBirth``), notes in headers (``Phone (mobile)``); columns in any
  order, unrelated columns mixed in (Status, Branch, Amount Paid), an empty column inside a
  table;
* page-break exports: ``Page 2 of 3`` lines and the header repeated mid-table, ``Printed on``
  lines, per-branch ``Subtotal`` rows (one cell, or a label and a count), ``Grand Total``
  rows, ``* pending renewal`` footnotes, ``Prepared by: | name`` footers, rows of dashes;
* values: IDs and phones as numbers, e-mails in capitals with spaces, date cells with a time
  of day, dates as ``1985-03-13 00:00:00`` (pandas), ``13-Mar-1985`` (Excel's d-mmm-yyyy),
  ``1985/03/13``, ``13.03.1985``; missing values as empty cells, ``N/A`` and ``-``;
* CSV as Excel and scripts write it: a ``sep=;`` first line, CRLF, a trailing delimiter on
  every line, quoted fields with commas and line breaks, Windows-1252 names (José, Zoë).

**Missing-value truth.** An empty cell and a placeholder (``N/A``, ``-``) are both a missing
value: the member has no phone or no known birth date, so the output cell is empty. (The
roster config clears the placeholders people write for "no value" and keeps, with a warning,
any other value it cannot read.)
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

GIVEN = (
    "José",
    "Zoë",
    "Anne-Marie",
    "Søren",
    "Chloé",
    "Liam",
    "Priya",
    "Mateo",
    "Aoife",
    "Noah",
    "Fatima",
    "Jürgen",
    "Hannah",
    "Omar",
)
FAMILY = (
    "Müller",
    "García",
    "O'Neil",
    "Núñez",
    "Fitzgerald",
    "Patel",
    "Lefèvre",
    "Andersson",
    "Byrne",
    "Haddad",
    "Kim",
    "Walsh",
)
# Names in cp1252 files must be cp1252 characters; these all are.
PLACEHOLDERS = ("N/A", "-")


@attrs.frozen
class Person:
    """One truth record of a held-out file."""

    number: int
    given: str
    family: str
    email: str | None
    phone: str | None  # 10 digits, or a placeholder written for "none", or None
    born: dt.date | str | None  # a date, or a placeholder written for "unknown", or None
    joined: dt.date

    def truth(self) -> dict[str, Any]:
        p = self.phone
        phone = f"({p[:3]}) {p[3:6]}-{p[6:]}" if p and p.isdigit() else None  # placeholder: none
        return {
            "member_id": f"M{self.number}",
            "first_name": self.given,
            "last_name": self.family,
            "email": self.email,
            "phone": phone,
            "date_of_birth": self.born if isinstance(self.born, dt.date) else None,
            "join_date": self.joined,
        }


def people(rng: random.Random, start: int, n: int, *, gaps: bool = False) -> list[Person]:
    out = []
    for i in range(n):
        given, family = rng.choice(GIVEN), rng.choice(FAMILY)
        local = f"{given.lower()}.{family.lower()}".replace("'", "")
        email: str | None = f"{local.encode('ascii', 'ignore').decode()}{start + i}@club.example"
        phone: str | None = f"{rng.choice((212, 415, 617, 503))}{rng.randrange(2000000, 9999999)}"
        born: dt.date | str | None = dt.date(1940, 1, 1) + dt.timedelta(rng.randrange(25000))
        if gaps:
            roll = rng.random()
            if roll < 0.1:
                email = None
            elif roll < 0.2:
                phone = rng.choice(PLACEHOLDERS)
            elif roll < 0.3:
                born = rng.choice(PLACEHOLDERS)
            elif roll < 0.35:
                phone = None
        out.append(
            Person(
                number=start + i,
                given=given,
                family=family,
                email=email,
                phone=phone,
                born=born,
                joined=dt.date(2005, 1, 1) + dt.timedelta(rng.randrange(6500)),
            )
        )
    return out


def with_day_evidence(ps: list[Person]) -> list[Person]:
    """Numeric day-first dates: make sure one day is above 12 so the order is decidable."""
    for i, p in enumerate(ps):
        if isinstance(p.born, dt.date):
            if p.born.day > 12:
                return ps
            ps = list(ps)
            ps[i] = attrs.evolve(p, born=p.born.replace(day=28))
            return ps
    return ps


# -- how a column is written ------------------------------------------------------------------

Cell = Callable[[Person], Any]


def date_text(style: str) -> Callable[[dt.date | str | None], Any]:
    def render(value: dt.date | str | None) -> Any:
        if not isinstance(value, dt.date):
            return value  # a placeholder or missing
        if style == "cell":
            return dt.datetime(value.year, value.month, value.day)
        if style == "stamp":  # a date-time cell with a time of day ("created at")
            return dt.datetime(value.year, value.month, value.day, 14, 32, 5)
        if style == "pandas":
            return f"{value.isoformat()} 00:00:00"
        if style == "dmy_dots":
            return f"{value.day:02d}.{value.month:02d}.{value.year}"
        if style == "d-mmm-yyyy":
            return value.strftime("%d-%b-%Y")
        if style == "slashes":
            return value.strftime("%Y/%m/%d")
        raise ValueError(style)

    return render


def phone_as(style: str) -> Callable[[str | None], Any]:
    def render(p: str | None) -> Any:
        if p is None or not p.isdigit():
            return p
        if style == "int":
            return int(p)
        if style == "spaces":
            return f"{p[:3]} {p[3:6]} {p[6:]}"
        if style == "intl":
            return f"+1 ({p[:3]}) {p[3:6]}-{p[6:]}"
        return p

    return render


@attrs.frozen
class Layout:
    """Which columns a table has, in which order, and how each cell is written."""

    columns: tuple[tuple[str, Cell], ...]

    def header(self) -> list[Any]:
        return [h for h, _ in self.columns]

    def row(self, p: Person) -> list[Any]:
        return [cell(p) for _, cell in self.columns]


def shout_email(p: Person) -> Any:
    if p.email is None:
        return None
    return f"{p.email.upper()}  " if p.number % 4 == 0 else p.email


def layout(
    id_header: str,
    *,
    id_number: bool,
    given: str,
    family: str,
    email: str,
    phone: str,
    phone_style: str,
    born: str,
    born_style: str,
    joined: str,
    joined_style: str,
    extras: tuple[tuple[str, Cell], ...] = (),
    shuffle: random.Random | None = None,
) -> Layout:
    d_born, d_joined, ph = date_text(born_style), date_text(joined_style), phone_as(phone_style)
    columns: list[tuple[str, Cell]] = [
        (id_header, (lambda p: p.number) if id_number else (lambda p: f"M{p.number}")),
        (given, lambda p: p.given),
        (family, lambda p: p.family),
        (email, shout_email),
        (phone, lambda p: ph(p.phone)),
        (born, lambda p: d_born(p.born)),
        (joined, lambda p: d_joined(p.joined)),
        *extras,
    ]
    if shuffle is not None:
        shuffle.shuffle(columns)
    return Layout(tuple(columns))


STATUS: tuple[str, Cell] = ("Status", lambda p: ("Active", "Lapsed", "Pending")[p.number % 3])
BRANCH: tuple[str, Cell] = ("Branch", lambda p: ("North", "Harbour", "Old Town")[p.number % 3])
PAID: tuple[str, Cell] = ("Amount Paid", lambda p: 40.0 + (p.number % 5) * 12.5)

Rows = list[tuple[int, int, list[Any]]]


# -- builders: each returns the sheets of one file (write_grid's shape) and its truth ----------


def mixed_headers(rng: random.Random) -> tuple[dict[str, Rows], list[Person]]:
    """System-export header spellings, shuffled columns, unrelated columns, numbers as numbers."""
    lay = layout(
        "MEMBER NO.",
        id_number=True,
        given="Given Name(s)",
        family="Surname",
        email=" Email Address ",
        phone="Mobile No.",
        phone_style="int",
        born="D.O.B.",
        born_style="cell",
        joined="Date Joined",
        joined_style="cell",
        extras=(STATUS, BRANCH, PAID),
        shuffle=rng,
    )
    ps = people(rng, 70100, 31)
    rows: Rows = [(1, 1, ["Harbour Rowing Club"]), (3, 1, lay.header())]
    rows += [(4 + i, 1, lay.row(p)) for i, p in enumerate(ps)]
    return {"Export": rows}, ps


def page_breaks(rng: random.Random) -> tuple[dict[str, Rows], list[Person]]:
    """A report printed to pages: page lines, the header again on each page, a footnote."""
    lay = layout(
        "Member Number",
        id_number=False,
        given="First Name",
        family="Last Name",
        email="E-mail",
        phone="Tel.",
        phone_style="spaces",
        born="Date of Birth",
        born_style="cell",
        joined="Joined",
        joined_style="cell",
    )
    ps = people(rng, 71200, 45)
    rows: Rows = [
        (1, 1, ["MEMBERSHIP REPORT"]),
        (2, 1, ["Printed on 2024-03-01 09:15 by admin"]),
    ]
    r = 4
    for page, start in enumerate(range(0, len(ps), 20), start=1):
        if page > 1:
            rows.append((r, 1, [f"Page {page - 1} of 3"]))
            r += 2
        rows.append((r, 1, lay.header()))
        r += 1
        for p in ps[start : start + 20]:
            rows.append((r, 1, lay.row(p)))
            r += 1
    rows.append((r, 1, ["Page 3 of 3"]))
    rows.append((r + 1, 1, ["* pending renewal"]))
    return {"Report": rows}, ps


def subtotals(rng: random.Random) -> tuple[dict[str, Rows], list[Person]]:
    """Members grouped by branch, each group closed by a subtotal row; a grand total."""
    lay = layout(
        "Member ID",
        id_number=True,
        given="First Name",
        family="Last Name",
        email="Email",
        phone="Phone (mobile)",
        phone_style="intl",
        born="Birth Date",
        born_style="cell",
        joined="Member Since",
        joined_style="cell",
    )
    rows: Rows = [(1, 1, lay.header())]
    truth: list[Person] = []
    r = 2
    for b, n in enumerate((7, 12, 5)):
        group = people(rng, 72000 + 100 * b, n)
        truth += group
        for p in group:
            rows.append((r, 1, lay.row(p)))
            r += 1
        # One export writes "Subtotal: 7" in one cell, another a label and a count.
        rows.append((r, 1, [f"Subtotal: {n}"] if b % 2 == 0 else ["Branch subtotal", n]))
        r += 1
    rows.append((r, 1, ["Grand Total", len(truth)]))
    return {"Members": rows}, truth


def empty_column(rng: random.Random) -> tuple[dict[str, Rows], list[Person]]:
    """A deleted column left empty inside the table (header cell and data), and a rule row of
    dashes under the header, as fixed-width report exports write it."""
    lay = layout(
        "Mbr No.",
        id_number=False,
        given="First",
        family="Last",
        email="Email",
        phone="Phone",
        phone_style="plain",
        born="DOB",
        born_style="cell",
        joined="Join Date",
        joined_style="cell",
    )
    ps = people(rng, 73000, 24, gaps=True)

    def spread(values: list[Any]) -> list[Any]:
        return [*values[:3], None, *values[3:]]  # column D left empty

    rows: Rows = [(1, 1, spread(lay.header())), (2, 1, spread(["-----"] * 7))]
    rows += [(3 + i, 1, spread(lay.row(p))) for i, p in enumerate(ps)]
    rows.append((3 + len(ps), 1, spread(["-----"] * 7)))
    rows.append((4 + len(ps), 1, [f"{len(ps)} members"]))
    return {"Sheet1": rows}, ps


def stamps(rng: random.Random) -> tuple[dict[str, Rows], list[Person]]:
    """Join dates as date-time cells with a time of day; birth dates as 1985/03/13 text; a
    ``Prepared by: | name`` footer and a ``Report date: | date`` footer."""
    lay = layout(
        "ID",
        id_number=True,
        given="Forename",
        family="Family Name",
        email="E-mail Address",
        phone="Telephone",
        phone_style="plain",
        born="Birthday",
        born_style="slashes",
        joined="Start Date",
        joined_style="stamp",
        extras=(STATUS,),
    )
    ps = people(rng, 74000, 28, gaps=True)
    rows: Rows = [(1, 2, lay.header())]
    rows += [(2 + i, 2, lay.row(p)) for i, p in enumerate(ps)]
    end = 2 + len(ps)
    rows.append((end + 1, 2, ["Prepared by:", "Membership Secretary"]))
    rows.append((end + 2, 2, ["Report date:", dt.datetime(2024, 3, 1)]))
    return {"Members": rows}, ps


def line_breaks(rng: random.Random) -> tuple[dict[str, Rows], list[Person]]:
    """Header cells with line breaks (wrapped text), a merged-cell title, a notes column."""
    lay = layout(
        "Member\nNumber",
        id_number=False,
        given="First\nName",
        family="Last\nName",
        email="E-mail",
        phone="Phone\n(mobile)",
        phone_style="spaces",
        born="Date of\nBirth",
        born_style="cell",
        joined="Join\nDate",
        joined_style="cell",
        extras=(("Notes", lambda p: "Paid cash, 2023" if p.number % 4 == 1 else None),),
    )
    ps = people(rng, 75000, 19)
    rows: Rows = [(1, 1, ["Annual roster 2024"]), (2, 1, lay.header())]
    rows += [(3 + i, 1, lay.row(p)) for i, p in enumerate(ps)]
    return {"Roster": rows}, ps


def last_first(rng: random.Random) -> tuple[dict[str, Rows], list[Person]]:
    """One name column written "FAMILY, Given" in capitals (a mainframe export), long dates."""
    ps = people(rng, 79000, 22)
    header = ["Membership #", "Member Name", "E-Mail", "Tel", "Birth Date", "Member Since"]
    rows: Rows = [(1, 1, ["Members as at 31 March 2024"]), (2, 1, header)]
    for i, p in enumerate(ps):
        name = f"{p.family.upper()}, {p.given.upper()}"
        born = p.born.strftime("%d %B %Y") if isinstance(p.born, dt.date) else p.born
        joined = dt.datetime(p.joined.year, p.joined.month, p.joined.day)
        rows.append((3 + i, 1, [f"M{p.number}", name, p.email, p.phone, born, joined]))
    rows.append((3 + len(ps), 1, ["Grand total", len(ps)]))
    # Capitals come back title-cased: "O'NEIL" is "O'Neil", "ANNE-MARIE" is "Anne-Marie".
    return {"Members": rows}, ps


def template(rng: random.Random) -> tuple[dict[str, Rows], list[Person]]:
    """A membership template filled in by hand: required headers marked with ``*``, dues
    columns headed by the year (number cells), a count row at the bottom."""
    lay = layout(
        "Member ID*",
        id_number=False,
        given="First Name*",
        family="Last Name*",
        email="Email:",
        phone="Phone",
        phone_style="spaces",
        born="Date of Birth",
        born_style="cell",
        joined="Join Date*",
        joined_style="cell",
        extras=(
            (2023, lambda p: "paid" if p.number % 2 else None),  # type: ignore[arg-type]
            (2024, lambda p: "paid" if p.number % 3 else "due"),  # type: ignore[arg-type]
        ),
    )
    ps = people(rng, 80000, 17, gaps=True)
    rows: Rows = [(1, 1, ["Fields marked * are required"]), (2, 1, lay.header())]
    rows += [(3 + i, 1, lay.row(p)) for i, p in enumerate(ps)]
    rows.append((4 + len(ps), 1, ["Number of members", len(ps)]))
    return {"Members": rows}, ps


# -- CSV files written line by line, as Excel and scripts write them --------------------------


def csv_text(rows: list[list[Any]], delimiter: str, *, trailing: bool = False) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    for row in rows:
        cells = ["" if v is None else str(v) for v in row]
        writer.writerow([*cells, ""] if trailing and cells else cells)
    return buffer.getvalue()


def excel_semicolon(rng: random.Random) -> tuple[str, list[Person]]:
    """Excel (European locale): ``sep=;`` first line, CRLF, a trailing delimiter on every
    line, Windows-1252, day-first dates with dots."""
    lay = layout(
        "Member No",
        id_number=True,
        given="First Name",
        family="Surname",
        email="Email Address",
        phone="Mobile",
        phone_style="plain",
        born="D.O.B",
        born_style="dmy_dots",
        joined="Date Joined",
        joined_style="d-mmm-yyyy",
    )
    ps = with_day_evidence(people(rng, 76000, 26))
    rows = [lay.header(), *(lay.row(p) for p in ps)]
    return "sep=;\r\n" + csv_text(rows, ";", trailing=True), ps


def pandas_export(rng: random.Random) -> tuple[str, list[Person]]:
    """``DataFrame.to_csv``: an unnamed index column, snake_case headers, date-times written
    with ``00:00:00``, a notes column with commas and line breaks inside quotes."""
    lay = layout(
        "member_id",
        id_number=True,
        given="first_name",
        family="last_name",
        email="email",
        phone="phone",
        phone_style="plain",
        born="date_of_birth",
        born_style="pandas",
        joined="joined",
        joined_style="pandas",
        extras=(
            (
                "notes",
                lambda p: "Moved, new address:\n12 Quay St" if p.number % 6 == 0 else None,
            ),
        ),
    )
    ps = people(rng, 77000, 33, gaps=True)
    rows = [[None, *lay.header()], *([i, *lay.row(p)] for i, p in enumerate(ps))]
    return csv_text(rows, ","), ps


def report_csv(rng: random.Random) -> tuple[str, list[Person]]:
    """A text report saved as CSV: title and printed-on lines, dashed rules, the header again
    after a page line, a total line."""
    lay = layout(
        "MEMBER ID",
        id_number=False,
        given="FIRST NAME",
        family="LAST NAME",
        email="E-MAIL",
        phone="PHONE",
        phone_style="intl",
        born="DOB",
        born_style="d-mmm-yyyy",
        joined="JOINED",
        joined_style="slashes",
    )
    ps = people(rng, 78000, 30)
    rule = ["-" * 10] * 7
    rows: list[list[Any]] = [["Membership list"], ["Printed 01/03/2024 09:15"], []]
    for page, start in enumerate((0, 16), start=1):
        rows += [lay.header(), rule]
        rows += [lay.row(p) for p in ps[start : start + 16]]
        rows += [[], [f"Page {page} of 2"], []]
    rows += [rule, [f"Total: {len(ps)}"]]
    return csv_text(rows, ","), ps


# -- the cases --------------------------------------------------------------------------------


@attrs.frozen
class HeldoutCase:
    name: str
    fmt: str
    grid: Callable[[random.Random], tuple[dict[str, Rows], list[Person]]] | None = None
    text: Callable[[random.Random], tuple[str, list[Person]]] | None = None
    encoding: str = "utf-8"

    def write(self, index: int, folder: Path) -> tuple[Path, list[Person]]:
        from ade.samples.formats import write_grid

        rng = random.Random(5000 + index)
        path = folder / f"{index:02d}-{self.name}.{self.fmt}"
        if self.text is not None:
            content, truth = self.text(rng)
            path.write_bytes(content.encode(self.encoding))
            return path, truth
        assert self.grid is not None
        sheets, truth = self.grid(rng)
        write_grid(path, sheets)
        return path, truth


HELDOUT = [
    HeldoutCase("h-mixed-headers", "xlsx", grid=mixed_headers),
    HeldoutCase("h-mixed-headers", "ods", grid=mixed_headers),
    HeldoutCase("h-page-breaks", "xlsx", grid=page_breaks),
    HeldoutCase("h-page-breaks", "xls", grid=page_breaks),
    HeldoutCase("h-subtotals", "xlsx", grid=subtotals),
    HeldoutCase("h-subtotals", "ods", grid=subtotals),
    HeldoutCase("h-empty-column", "xlsx", grid=empty_column),
    HeldoutCase("h-empty-column", "xls", grid=empty_column),
    HeldoutCase("h-stamps", "xlsx", grid=stamps),
    HeldoutCase("h-line-breaks", "xlsx", grid=line_breaks),
    HeldoutCase("h-last-first", "ods", grid=last_first),
    HeldoutCase("h-last-first", "xlsx", grid=last_first),
    HeldoutCase("h-template", "xlsx", grid=template),
    HeldoutCase("h-template", "xls", grid=template),
    HeldoutCase("h-excel-semicolon", "csv", text=excel_semicolon, encoding="cp1252"),
    HeldoutCase("h-pandas", "csv", text=pandas_export),
    HeldoutCase("h-report", "csv", text=report_csv),
]
