"""A1 references. Column letters are cached: the same few dozen are asked for millions of times."""

from __future__ import annotations

from functools import lru_cache

__all__ = ["a1", "a1_range", "column_letter"]


@lru_cache(maxsize=4096)
def column_letter(index: int) -> str:
    """1-based column index -> letters (1 -> A, 27 -> AA, 16384 -> XFD)."""
    if index < 1:
        raise ValueError(f"column index must be >= 1, got {index}")
    letters = ""
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def a1(column: int, row: int) -> str:
    return f"{column_letter(column)}{row}"


def a1_range(first_column: int, first_row: int, last_column: int, last_row: int) -> str:
    return f"{a1(first_column, first_row)}:{a1(last_column, last_row)}"
