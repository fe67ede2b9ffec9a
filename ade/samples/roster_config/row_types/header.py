"""Votes for header rows: several cells that are known labels or synonyms, all of them text
(or years: "2023 | 2024" dues columns)."""

import re

_BRACKETED = re.compile(r"\([^)]*\)")
_known_cache = {}
_NOT_A_HEADER = {"header": -1.0}


def _known(field_labels):
    """Every label and synonym, case-folded, with and without underscores, bare or marked
    (computed once)."""
    key = id(field_labels)
    if key not in _known_cache:
        _known_cache.clear()
        known = set()
        for labels in field_labels.values():
            for label in labels:
                text = " ".join(str(label).casefold().replace(".", "").split())
                for form in (text, text.replace("_", " "), text.replace(" ", "_")):
                    # Marked as required ("Email*", on templates) or as a label ("Email:"):
                    # looked up like the rest, at no cost per row.
                    known.update({form, form + "*", form + " *", form + ":"})
        _known_cache[key] = known
    return _known_cache[key]


def _unbracketed(text):
    """A header without its bracketed note: "Phone (mobile)" is a phone header."""
    return " ".join(_BRACKETED.sub(" ", text).split()).rstrip("*: ")


def detect_known_labels(*, values, non_empty, field_labels):
    # Called for every row of every sheet: kept to one cheap test per cell.
    if non_empty < 2:
        return None
    cells = values
    for v in values:  # a type test first: most rows have a number or a date somewhere
        if v is not None and type(v) is not str:
            if type(v) is int and 1900 <= v <= 2100:  # a year ("2024" dues columns)
                cells = [c for c in values if type(c) is str]
                continue
            return _NOT_A_HEADER  # numbers and dates do not appear in header rows; years may
    known = _known(field_labels)
    hits = 0
    for v in cells:
        if v is not None:
            text = " ".join(v.casefold().replace(".", "").split())
            if text in known or ("(" in text and _unbracketed(text) in known):
                hits += 1
    if hits >= 2:
        return {"header": 1.0 + hits / non_empty, "data": -1.0}
    return None
