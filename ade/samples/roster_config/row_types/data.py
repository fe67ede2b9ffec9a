"""Votes for data rows: rows inside a table (blank lines do not end one) that are not lone notes."""

_NOTE_STARTS = ("note", "source", "exported", "generated", "prepared", "*")


def detect_continues_table(*, values, non_empty, in_table):
    if non_empty == 1:
        (value,) = [v for v in values if v is not None]
        if isinstance(value, str) and (
            len(value) > 25
            or value.strip().casefold().startswith(_NOTE_STARTS)
            or not any(c.isdigit() for c in value)
        ):
            return -2.0  # a note, a banner or a section label ("North branch"); not a member
        score = -0.5
    else:
        score = 0.0
    if in_table:
        score += 1.0  # the row below a header or a data row (blank rows in between allowed)
    elif non_empty >= 3:
        score += 0.4  # a data-looking row with no table open: placed and reported by the engine
    return score
