from ..lib.dates import transform_dates, validate_dates
from ..lib.text import header_score, parse_date, share


def detect_header(*, header, label, synonyms):
    return header_score(header, label, synonyms)


def detect_date_values(*, values):
    # Birth dates and join dates look alike; this says "dates". Headers decide which.
    return 0.5 * share(values, lambda v: parse_date(v) is not None)


def transform(*, values):
    return transform_dates(values)


def validate(*, values):
    return validate_dates(values)
