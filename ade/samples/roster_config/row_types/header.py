"""Votes for header rows: several cells that are known labels or synonyms, all of them text."""

_known_cache = {}


def _known(field_labels):
    key = id(field_labels)
    if key not in _known_cache:
        _known_cache.clear()
        _known_cache[key] = {
            " ".join(str(label).casefold().replace("_", " ").split())
            for labels in field_labels.values()
            for label in labels
        }
    return _known_cache[key]


def detect_known_labels(*, values, non_empty, field_labels):
    if non_empty < 2:
        return None
    known = _known(field_labels)
    hits = 0
    for v in values:
        if type(v) is str and len(v) < 40:
            if " ".join(v.casefold().replace("_", " ").split()) in known:
                hits += 1
        elif v is not None:
            # numbers and dates do not appear in header rows
            return {"header": -1.0}
    if hits >= 2:
        return {"header": 1.0 + hits / non_empty, "data": -1.0}
    return None
