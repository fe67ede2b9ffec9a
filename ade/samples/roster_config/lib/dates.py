"""Date handling shared by the roster's date columns (date of birth, join date)."""

import datetime as dt

from .text import parse_date


def transform_dates(values):
    """Dates in any known format become dates; the rest stay as they are, with a warning."""
    out = []
    warnings = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        parsed = parse_date(v)
        if parsed is None:
            out.append(v)
            warnings.append(
                {"index": i, "code": "unparsed_date", "message": "not a known date format"}
            )
        else:
            out.append(parsed)
    return {"values": out, "warnings": warnings}


def validate_dates(values):
    """An issue for every value that is not a date, or is a date in the future."""
    today = dt.date.today()
    issues = []
    for i, v in enumerate(values):
        if v is None:
            continue
        if type(v) is not dt.date:
            issues.append({"index": i, "code": "invalid_date", "message": "not a date"})
        elif v > today:
            issues.append({"index": i, "code": "future_date", "message": "date is in the future"})
    return issues
