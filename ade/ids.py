"""Sortable identifiers: 48-bit millisecond time + 80 random bits, Crockford base32 (ULID layout).

Why sortable: job listings are newest-first and the store can order by id alone.
"""

from __future__ import annotations

import json
import os
import re
import time

__all__ = ["ID_PATTERN", "is_id", "new_id", "shown_id"]

# Every id ADE issues (new_id, config hashes) fits this; anything else cannot exist. It is also
# what makes an id safe as one path component (jobs/<id>, documents/<workspace>/<id>).
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_id(prefix: str = "") -> str:
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return prefix + "".join(reversed(chars))


def is_id(value: str) -> bool:
    """Whether ``value`` could be an id ADE issued (so it is safe inside a path)."""
    return bool(ID_PATTERN.match(value))


def shown_id(value: str) -> str:
    """``value`` fit to quote in a message: as is when it could be an id, else escaped and cut
    short (a client's 5000-character or control-character "id" is not echoed verbatim)."""
    if is_id(value):
        return value
    cut = value if len(value) <= 64 else value[:61] + "..."
    return json.dumps(cut)
