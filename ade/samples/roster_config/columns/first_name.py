from ..lib.names import looks_like_full_names, split_full_name
from ..lib.text import header_score, share, tidy_names


def detect_header(*, header, header_parts, label, synonyms):
    return header_score(header, label, synonyms, header_parts)


def detect_name_values(*, values):
    # Both name fields look alike; this only says "words, not numbers". Headers decide.
    return 0.25 * share(values, lambda v: isinstance(v, str) and v.replace(" ", "").isalpha())


def transform(*, values, header, mapped_fields):
    names = tidy_names(values)
    if "last_name" in mapped_fields or not looks_like_full_names(header, names):
        return names
    # One name column and no last-name column: split each full name, fill last_name too.
    first, last, warnings = [], [], []
    for i, name in enumerate(names):
        if not isinstance(name, str):
            first.append(name)
            last.append(None)
            continue
        given, family = split_full_name(name)
        first.append(given)
        last.append(family)
        if family is None:
            warnings.append(
                {"index": i, "code": "single_name", "message": "one word: no last name to split"}
            )
    return {"values": first, "warnings": warnings, "fill": {"last_name": last}}
