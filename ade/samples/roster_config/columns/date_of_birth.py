import datetime as dt

from ..lib.text import header_score, parse_date, share


def detect_header(*, header, label, synonyms):
    return header_score(header, label, synonyms)


def detect_date_values(*, values):
    # Birth dates and join dates look alike; this says "dates". Headers decide which.
    return 0.5 * share(values, lambda v: parse_date(v) is not None)


def transform(*, values):
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


def validate(*, values):
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
