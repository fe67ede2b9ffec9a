"""A third row type: "Total ..." rows end a table instead of becoming members."""


def detect_total_label(*, values):
    for v in values:
        if type(v) is str:
            if v.strip().casefold().startswith(("total", "grand total", "sum")):
                return {"totals": 3.0, "data": -2.0}
            return None
    return None
