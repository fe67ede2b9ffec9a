from ..lib.text import header_score, share, tidy_names


def detect_header(*, header, header_parts, label, synonyms):
    return header_score(header, label, synonyms, header_parts)


def detect_name_values(*, values):
    # Both name fields look alike; this only says "words, not numbers". Headers decide.
    return 0.25 * share(values, lambda v: isinstance(v, str) and v.replace(" ", "").isalpha())


def transform(*, values):
    return tidy_names(values)
