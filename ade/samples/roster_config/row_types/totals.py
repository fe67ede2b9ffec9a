"""A third row type: total rows ("Total members: 24", "Subtotal: 7", "Branch subtotal | 7",
"Grand Total | 24", "Number of members | 24", "Count | 24") end a table instead of becoming
members; data of the table's shape below one continues the table."""

import re

_TOTAL = re.compile(r"\b(?:sub-?\s?)?totals?\b")
# Words that start a summary row but also a few names ("Sum", "Mean"): a summary only on a
# short row (a label and a number or two), never on a member's full row.
_SUMMARY = re.compile(r"^(?:sum|count|average|avg|mean|(?:number|no\.?) of)\b")
_SUMMARY_STARTS = ("sum", "count", "average", "avg", "mean", "number of", "no of", "no. of")


def detect_total_label(*, values, non_empty):
    for v in values:
        if type(v) is str:  # the row's first text cell says what the row is
            text = v.lstrip().casefold()
            if len(text) > 40:
                return None
            if "tot" in text and _TOTAL.search(text):
                return {"totals": 3.0, "data": -2.0}
            if non_empty <= 3 and text.startswith(_SUMMARY_STARTS) and _SUMMARY.match(text):
                return {"totals": 3.0, "data": -2.0}
            return None
    return None
