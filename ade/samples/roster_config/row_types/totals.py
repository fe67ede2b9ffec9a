"""A third row type: total rows ("Total members: 24", "Subtotal: 7", "Branch subtotal | 7",
"Grand Total | 24", "Number of members | 24", "Count | 24") end a table instead of becoming
members; data of the table's shape below one continues the table."""

import re

# A total anywhere in the label; a count, sum or average as its first words.
_TOTAL = re.compile(
    r"\b(?:sub-?\s?)?totals?\b|^(?:sum|count|average|avg|mean)\b|^(?:number|no\.?) of\b"
)
_STARTS = ("sum", "count", "average", "avg", "mean", "number of", "no of", "no. of")


def detect_total_label(*, values):
    for v in values:
        if type(v) is str:  # the row's first text cell says what the row is
            text = v.lstrip().casefold()
            if "tot" in text or text.startswith(_STARTS):  # cheap tests before the pattern
                if len(text) <= 40 and _TOTAL.search(text.rstrip()):
                    return {"totals": 3.0, "data": -2.0}
            return None
    return None
