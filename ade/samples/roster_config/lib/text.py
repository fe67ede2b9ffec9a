"""Helpers shared by the roster config's detectors (imported relatively: ``from ..lib import``)."""

import datetime as dt
import re

DATE_FORMATS = (
    "%Y-%m-%d",
    "%m/%d/%Y",
    "%m/%d/%y",
    "%d %b %Y",
    "%d %B %Y",
    "%B %d, %Y",
    "%b %d, %Y",
)


def norm(text):
    """Header text compared the way people mean it: case, spacing and underscores ignored."""
    if text is None:
        return ""
    return " ".join(str(text).casefold().replace("_", " ").split())


def header_score(header, label, synonyms):
    """2.0 for the exact label, 1.5 for a synonym, 0.75 when every word of the label appears."""
    h = norm(header)
    if not h:
        return 0.0
    if h == norm(label):
        return 2.0
    if h in {norm(s) for s in synonyms}:
        return 1.5
    words = re.findall(r"[a-z0-9]+", h)
    if all(w in words for w in norm(label).split()):
        return 0.75
    return 0.0


def filled(values):
    return [v for v in values if v is not None and (not isinstance(v, str) or v.strip())]


def share(values, predicate):
    """Fraction of filled values for which ``predicate`` holds (0.0 for an empty column)."""
    present = filled(values)
    if not present:
        return 0.0
    return sum(1 for v in present if predicate(v)) / len(present)


def parse_date(value):
    """A date from a datetime, an ISO/US/long-form string; None when it is not a date."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str) or "@" in value or not any(c.isdigit() for c in value):
        return None  # cheap rejections first: mapping tries every sampled cell of every column
    text = " ".join(value.replace(",", ", ").split()).replace(" ,", ",")
    for fmt in DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def tidy_names(values):
    """Collapse spaces; ALL CAPS or all lower-case names become Title Case; blanks become None."""
    out = []
    for v in values:
        if isinstance(v, str):
            text = " ".join(v.split())
            if text.isupper() or text.islower():
                text = text.title()
            out.append(text or None)
        else:
            out.append(v)
    return out
