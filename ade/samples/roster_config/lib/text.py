"""Helpers shared by the roster config's detectors (imported relatively: ``from ..lib import``)."""

import datetime as dt
import re

# Formats whose day and month cannot be confused. Numeric dates (03/04/1990) are decided per
# column by lib/dates.py, from every value of the column.
DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%d %b %Y",
    "%d %B %Y",
    "%B %d, %Y",
    "%b %d, %Y",
    "%d-%b-%Y",  # Excel's d-mmm-yyyy, as its CSV saves write date cells
    "%d-%B-%Y",
    "%d-%b-%y",
)
NUMERIC_DATE = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4}|\d{2})$")
# A time of day after a date ("1985-03-13 00:00:00" from pandas and database exports,
# "2021-05-03T14:32"): a date column keeps the date, as it does for a date-time cell.
_NUMBER_SUFFIX = re.compile(r"(?:\s*#|\s+(?:no|nr|num|nbr|number))$")
_BRACKETED = re.compile(r"\([^)]*\)")
_TIME_OF_DAY = re.compile(r"[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?: ?[AaPp][Mm])?$")


# How people write "no value" in a cell: a missing value, not text to keep (the output cell is
# empty; the transform's changed count says how many were cleared). A name column takes only
# the marks no name can be ("Na" and "Nil" are family names).
MISSING = frozenset({"n/a", "na", "n.a.", "-", "--", "---", "\u2014", "none", "null", "nil"})
MISSING_NAME = frozenset({"n/a", "n.a.", "-", "--", "---", "\u2014"})
# A whole number written as a decimal ("10001.0": a number column saved by pandas, or read
# back from a float cell).
_INTEGRAL = re.compile(r"^(\d+)\.0+$")


def is_missing(value, marks=MISSING):
    return isinstance(value, str) and value.strip().casefold() in marks


def integral_text(text):
    """``text`` without a decimal part of zeros: "10001.0" is "10001"."""
    whole = _INTEGRAL.match(text)
    return whole.group(1) if whole else text


def norm(text):
    """Header text compared the way people mean it: case, spacing, dots and underscores
    ignored ("Mbr. No." is "mbr no"), and a trailing required-mark or colon ("Email*",
    "Email:")."""
    if text is None:
        return ""
    text = " ".join(str(text).casefold().replace("_", " ").replace(".", "").split())
    return text.rstrip("*: ") if text[-1:] in ("*", ":") else text


def header_score(header, label, synonyms, header_parts=None):
    """2.0 for the exact label, 1.5 for a synonym, 0.75 when every word of the label appears.
    Under a stacked header ("Contact / Email") the leaf header alone counts as well."""
    if header_parts and len(header_parts) > 1:
        return max(_score(header, label, synonyms), _score(header_parts[-1], label, synonyms))
    return _score(header, label, synonyms)


def _score(header, label, synonyms):
    h = norm(header)
    if not h:
        return 0.0
    if "(" in h:
        # A note in brackets qualifies the header, it does not rename it: "Phone (mobile)" is
        # a phone, "Given Name(s)" a given name. A qualified header scores as a synonym at
        # most, so a plain "Email" beats "Email (work)". The header as written counts too.
        bare = " ".join(_BRACKETED.sub(" ", h).split())
        if bare and bare != h:
            qualified = min(_score_normed(bare, label, synonyms), 1.5)
            return max(qualified, _score_normed(h, label, synonyms))
    return _score_normed(h, label, synonyms)


def _score_normed(h, label, synonyms):
    if h == norm(label):
        return 2.0
    known = {norm(s) for s in synonyms}
    if h in known or _number_word(h) in {_number_word(s) for s in known}:
        return 1.5
    words = re.findall(r"[a-z0-9]+", h)
    if all(w in words for w in norm(label).split()):
        return 0.75
    return 0.0


def _number_word(h):
    """The same header whichever word says "number": "Membership #", "Membership No",
    "membership nbr" and "Membership Number" are one header."""
    return _NUMBER_SUFFIX.sub(" number", h)


def filled(values):
    return [v for v in values if v is not None and (not isinstance(v, str) or v.strip())]


def share(values, predicate):
    """Fraction of filled values for which ``predicate`` holds (0.0 for an empty column)."""
    present = filled(values)
    if not present:
        return 0.0
    return sum(1 for v in present if predicate(v)) / len(present)


def parse_date(value, order="month"):
    """A date from a datetime, an ISO, numeric or long-form string; None when it is not a date.
    ``order`` says how to read a numeric date whose day and month are both 12 or less
    ("day" or "month" first); one with a part above 12 reads the only way it can."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str) or "@" in value or not any(c.isdigit() for c in value):
        return None  # cheap rejections first: mapping tries every sampled cell of every column
    text = " ".join(value.replace(",", ", ").split()).replace(" ,", ",")
    if ":" in text:
        text = _TIME_OF_DAY.sub("", text)
    numeric = NUMERIC_DATE.match(text)
    if numeric:
        first, second, year = (int(g) for g in numeric.groups())
        if len(numeric.group(3)) == 2:
            year += 2000 if year < 70 else 1900
        day, month = (first, second) if order == "day" or first > 12 else (second, first)
        try:
            return dt.date(year, month, day)
        except ValueError:
            return None
    for fmt in DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def numeric_date_parts(value):
    """(first, second) of a numeric date string such as 13/03/1985, else None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if ":" in text:
        text = _TIME_OF_DAY.sub("", text)
    numeric = NUMERIC_DATE.match(text)
    return (int(numeric.group(1)), int(numeric.group(2))) if numeric else None


def tidy_names(values):
    """Collapse spaces; ALL CAPS or all lower-case names become Title Case; blanks and
    placeholders ("-", "N/A") become None."""
    out = []
    for v in values:
        if isinstance(v, str):
            text = " ".join(v.split())
            if len(text) < 4 and text.casefold() in MISSING_NAME:
                text = ""
            elif text.isupper() or text.islower():
                text = text.title()
            out.append(text or None)
        else:
            out.append(v)
    return out
