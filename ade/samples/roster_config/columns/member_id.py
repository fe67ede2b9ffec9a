import re

from ..lib.text import MISSING, header_score, integral_text, share

_ID = re.compile(r"^[Mm]?[- ]?\d{3,}$")


def detect_header(*, header, header_parts, label, synonyms):
    return header_score(header, label, synonyms, header_parts)


def detect_id_values(*, values):
    ids = share(values, lambda v: isinstance(v, int | str) and bool(_ID.match(str(v).strip())))
    present = [str(v).strip() for v in values if v is not None]
    unique = len(set(present)) == len(present)
    return 0.75 * ids if unique else 0.0


def transform(*, values):
    out = []
    for v in values:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, int):
            out.append(f"M{v}")
        elif isinstance(v, str):
            text = v.strip().upper().replace("-", "").replace(" ", "")
            if "." in text:
                text = integral_text(text)  # "10001.0": a number column written as decimals
            if text.isdigit():
                out.append("M" + text)
            else:
                out.append(None if not text or v.strip().casefold() in MISSING else text)
        else:
            out.append(v)
    return out


_VALID = re.compile(r"^M\d{4,}$")


def validate(*, values):
    return [
        {
            "index": i,
            "code": "invalid_member_id",
            "message": "Member ID must be 'M' followed by at least 4 digits",
        }
        for i, v in enumerate(values)
        if v is not None and not (isinstance(v, str) and _VALID.match(v))
    ]
