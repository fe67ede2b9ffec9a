"""Full names ("Mary J. Blige", "BLIGE, Mary J.") split into first and last names when a table
has one name column and no separate last-name column. Middle names and initials stay with the
first name; particles ("van", "de") and suffixes ("Jr.") stay with the last name."""

from .text import norm

FULL_NAME_HEADERS = {"name", "full name", "member name", "member", "names", "member full name"}
_PARTICLES = {"van", "von", "de", "da", "del", "della", "di", "du", "la", "le", "st", "bin", "al"}
_SUFFIXES = {"jr", "sr", "ii", "iii", "iv", "phd", "md"}


def looks_like_full_names(header, values):
    if norm(header) in FULL_NAME_HEADERS:
        return True
    names = [v for v in values if isinstance(v, str) and v.strip()]
    several = sum(1 for v in names if len(v.replace(",", " ").split()) >= 2)
    return bool(names) and several * 2 > len(names)


def split_full_name(text):
    """(first, last) of a tidy full name; last is None for a single word."""
    if "," in text:
        last, _, first = text.partition(",")
        return (first.strip() or None), (last.strip() or None)
    words = text.split()
    if len(words) == 1:
        return words[0], None
    end = len(words)
    while end > 2 and norm(words[end - 1]) in _SUFFIXES:
        end -= 1
    start = end - 1
    while start > 1 and norm(words[start - 1]) in _PARTICLES:
        start -= 1
    return " ".join(words[:start]), " ".join(words[start:])
