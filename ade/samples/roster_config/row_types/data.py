"""Votes for data rows: rows inside a table (blank lines do not end one) that are not lone notes,
label rows ("Prepared by: | J. Smith") or rules drawn with dashes."""

import re

_NOTE_STARTS = ("note", "source", "exported", "generated", "prepared", "*")
_RULE_CHARACTERS = "-_=*~.+| "  # what text reports draw lines with
_WORD = re.compile(r"[^\W\d_]{2}")  # two letters in a row


def _is_note(value):
    """A lone text cell that is a note, a banner, a section label ("North branch") or a line
    such as "Page 2 of 3", "Subtotal: 12" or "24 members": a word and a number together are
    prose, not one member value (an ID such as "M 10001", a phone number or a numeric date
    alone has no word of two letters)."""
    text = value.strip()
    if len(text) > 25 or text.casefold().startswith(_NOTE_STARTS):
        return True
    if not any(c.isdigit() for c in text):
        return True
    return " " in text and _WORD.search(text) is not None


def detect_continues_table(*, values, non_empty, in_table):
    first = values[0]
    if first is None:
        first = next(v for v in values if v is not None)
    # Per row: one membership test each before any closer look (most first cells are IDs).
    if type(first) is str and (":" in first or first[:1] in _RULE_CHARACTERS):
        if first.rstrip()[-1:] == ":":
            return -2.0  # a label row ("Prepared by:", "Report date:"): not a member
        if not first.strip(_RULE_CHARACTERS) and all(
            type(v) is str and not v.strip(_RULE_CHARACTERS) for v in values if v is not None
        ):
            return -2.0  # a rule of dashes or underscores under a header or above a total
    if non_empty == 1:
        if type(first) is str and _is_note(first):
            return -2.0
        score = -0.5
    else:
        score = 0.0
    if in_table:
        score += 1.0  # the row below a header or a data row (blank rows in between allowed)
    elif non_empty >= 3:
        score += 0.4  # a data-looking row with no table open: placed and reported by the engine
    return score
