"""Date handling shared by the roster's date columns (date of birth, join date).

Numeric dates are decided per column, not per cell: ``profile`` sees every value of the column
first and counts the values that can only be day-first (13/03/1985) or only month-first
(03/13/1985). The transform then reads every ambiguous value (03/12/1985) the way the column
does. A column with no evidence either way is read month-first with an ``ambiguous_date``
warning on each ambiguous value; a column with evidence both ways keeps its ambiguous values
as text with a ``conflicting_date_order`` warning (validation then flags them). Never a
silent guess.
"""

import datetime as dt

from .text import is_missing, numeric_date_parts, parse_date


def profile_dates(values, state):
    for v in values:
        if type(v) is not str:
            continue  # real date cells (most of a workbook's) say nothing about the order
        parts = numeric_date_parts(v)
        if parts is None:
            continue
        first, second = parts
        if first > 12 >= second:
            key = "day_first"
        elif second > 12 >= first:
            key = "month_first"
        elif first <= 12 and second <= 12:
            key = "ambiguous"
        else:
            continue
        state[key] = state.get(key, 0) + 1


def column_order(state):
    """The column's order: "day", "month", "conflict" or None (no value shows it)."""
    day, month = state.get("day_first", 0), state.get("month_first", 0)
    if day and month:
        return "conflict"
    return "day" if day else "month" if month else None


def transform_dates(values, state):
    """Dates in any known format become dates; the rest stay as they are, with a warning."""
    order = column_order(state)
    out = []
    warnings = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        if type(v) is dt.datetime:  # a real date cell, most of a workbook's: nothing to decide
            out.append(v.date())
            continue
        parts = numeric_date_parts(v)
        ambiguous = parts is not None and parts[0] <= 12 and parts[1] <= 12 and parts[0] != parts[1]
        if ambiguous and order == "conflict":
            out.append(v)
            warnings.append(
                {
                    "index": i,
                    "code": "conflicting_date_order",
                    "message": "this column has both day-first and month-first dates; "
                    "this one could be either, so it is kept as text",
                }
            )
            continue
        parsed = parse_date(v, "day" if order == "day" else "month")
        if parsed is None and is_missing(v):  # "N/A", "-": no date
            out.append(None)
            continue
        if parsed is None:
            out.append(v)
            warnings.append(
                {"index": i, "code": "unparsed_date", "message": "not a known date format"}
            )
            continue
        if ambiguous and order is None:
            warnings.append(
                {
                    "index": i,
                    "code": "ambiguous_date",
                    "message": "day and month could be swapped; read month-first because no "
                    "date in this column shows the order",
                }
            )
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
