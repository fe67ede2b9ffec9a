from ..lib.dates import profile_dates, transform_dates, validate_dates
from ..lib.text import header_score, parse_date, share


def detect_header(*, header, header_parts, label, synonyms):
    return header_score(header, label, synonyms, header_parts)


def detect_date_values(*, values):
    # Birth dates and join dates look alike; this says "dates". Headers decide which.
    return 0.5 * share(values, lambda v: parse_date(v) is not None)


def profile(*, values, state):
    # Sees the whole column before any value is transformed: day-first or month-first.
    profile_dates(values, state)


def transform(*, values, state):
    return transform_dates(values, state)


def validate(*, values):
    return validate_dates(values)
