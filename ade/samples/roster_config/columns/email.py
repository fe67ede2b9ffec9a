import re

from ..lib.text import MISSING, header_score, share

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")


def detect_header(*, header, header_parts, label, synonyms):
    return header_score(header, label, synonyms, header_parts)


def detect_email_values(*, values):
    fraction = share(values, lambda v: isinstance(v, str) and bool(_EMAIL.match(v.strip())))
    return fraction if fraction >= 0.5 else 0.0


def transform(*, values):
    out = [v.strip().lower() if isinstance(v, str) else v for v in values]
    return [None if v in MISSING else v for v in out]  # "N/A", "-": no address


def validate(*, values):
    match = _EMAIL.match
    return [
        {"index": i, "code": "invalid_email", "message": "not a valid email address"}
        for i, v in enumerate(values)
        if v is not None and not (isinstance(v, str) and match(v))
    ]
