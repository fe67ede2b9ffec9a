"""A third row type: total rows ("Total members: 24", "Subtotal: 7", "Branch subtotal | 7",
"Grand Total | 24") end a table instead of becoming members; data of the table's shape below
one continues the table."""

import re

_TOTAL = re.compile(r"^sum\b|\b(?:sub-?\s?)?totals?\b")


def detect_total_label(*, values):
    for v in values:
        if type(v) is str:  # the row's first text cell says what the row is
            text = v.casefold()
            if "tot" in text or text.startswith("sum"):  # cheap test before the pattern
                if len(text) <= 40 and _TOTAL.search(text.strip()):
                    return {"totals": 3.0, "data": -2.0}
            return None
    return None
