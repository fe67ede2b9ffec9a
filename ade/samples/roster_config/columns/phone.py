import re

from ..lib.text import header_score, integral_text, is_missing, share

_PHONE = re.compile(r"^\+?[\d\s().-]{7,}$")
_FORMATTED = re.compile(r"^\(\d{3}\) \d{3}-\d{4}$")
_SEPARATORS = str.maketrans("", "", " ()-.+")  # what people put between digits


def detect_header(*, header, header_parts, label, synonyms):
    return header_score(header, label, synonyms, header_parts)


def detect_phone_values(*, values):
    fraction = share(values, lambda v: isinstance(v, str) and bool(_PHONE.match(v.strip())))
    return fraction if fraction >= 0.5 else 0.0


def transform(*, values):
    out = []
    warnings = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        text = str(v).strip()
        if "." in text:
            text = integral_text(text)  # 5551234567.0: a number column written as decimals
        digits = text.translate(_SEPARATORS)
        if not digits.isdigit():
            digits = ""
        elif len(digits) == 11 and digits.startswith("1"):
            digits = digits[1:]
        if len(digits) == 10:
            out.append(f"({digits[:3]}) {digits[3:6]}-{digits[6:]}")
        elif is_missing(v):  # "N/A", "-": no number, not a wrong one
            out.append(None)
        else:
            out.append(str(v).strip())
            warnings.append(
                {"index": i, "code": "unrecognized_phone", "message": "not a 10-digit number"}
            )
    return {"values": out, "warnings": warnings}


def validate(*, values):
    return [
        {
            "index": i,
            "code": "invalid_phone",
            "message": "phone number is not in (555) 123-4567 form",
            "severity": "warning",
        }
        for i, v in enumerate(values)
        if v is not None and not (isinstance(v, str) and _FORMATTED.match(v))
    ]
