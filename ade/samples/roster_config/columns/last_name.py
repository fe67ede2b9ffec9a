from ..lib.text import header_score, share


def detect_header(*, header, label, synonyms):
    return header_score(header, label, synonyms)


def detect_name_values(*, values):
    # Both name fields look alike; this only says "words, not numbers". Headers decide.
    return 0.25 * share(values, lambda v: isinstance(v, str) and v.replace(" ", "").isalpha())


def transform(*, values):
    out = []
    for v in values:
        if isinstance(v, str):
            text = " ".join(v.split())
            if text.isupper() or text.islower():
                text = text.title()
            out.append(text or None)
        else:
            out.append(v)
    return out
