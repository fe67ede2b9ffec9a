"""Votes for data rows: rows that continue a header or data row and are not lone notes."""

_NOTE_STARTS = ("note", "source", "exported", "generated", "prepared", "*")


def detect_continues_table(*, values, non_empty, previous_row_type):
    if non_empty == 1:
        (value,) = [v for v in values if v is not None]
        if isinstance(value, str) and (
            len(value) > 25 or value.strip().casefold().startswith(_NOTE_STARTS)
        ):
            return -2.0  # a note or a banner
        score = -0.5
    else:
        score = 0.0
    if previous_row_type in ("header", "data"):
        score += 1.0
    elif non_empty >= 3:
        score += 0.4  # a data-looking row with no header above it (reported as orphan)
    return score
