"""A spool of row chunks between passes, so that data rows are read from the input once and
memory holds a bounded amount whatever the table's length.

Chunks are pickled (the values are plain str/int/float/bool/datetime; pickle is the fastest
faithful codec for them in the standard library), except one case pickle is slow at: a column
of whole days (``date``, or naive midnight ``datetime``, the usual date column before and after
its transform) is stored as day ordinals, which pickle about seven times faster and read back
as exactly the same objects (``_days_kind``). The first ``memory_budget`` bytes stay in
memory — small and medium inputs never touch the disk — and the rest goes to segment files of
bounded size: the worker runs with RLIMIT_FSIZE, which caps each file, not the total.
"""

from __future__ import annotations

import datetime as dt
import pickle
from collections.abc import Collection
from pathlib import Path
from typing import Any, BinaryIO

import attrs

__all__ = ["ChunkRef", "Spool"]

SEGMENT_BYTES = 32 * 1024 * 1024
MEMORY_BUDGET_BYTES = 32 * 1024 * 1024
_IN_MEMORY = -1


@attrs.frozen
class ChunkRef:
    segment: int  # -1: held in memory (offset is the index)
    offset: int
    length: int
    rows: int
    # For a chunk written by write_columns: the byte length of each pickled part (the row
    # numbers, then each column), so a reader can unpickle only the columns it needs.
    parts: tuple[int, ...] = ()
    # Per column: (the type whose ``fromordinal`` rebuilds it, whether it has empty cells) for
    # a column stored as day ordinals (_days_kind), or None (pickled as it is).
    days: tuple[tuple[type[dt.date], bool] | None, ...] = ()


def _days_kind(column: list[Any]) -> tuple[type[dt.date], bool] | None:
    """(``date`` or ``datetime``, whether any cell is empty) if every filled value of
    ``column`` is a whole day of exactly that type (a datetime: naive, at midnight, fold 0), so
    that its ordinal rebuilds it exactly; else None (a column of None too)."""
    first = next((v for v in column if v is not None), None)
    kind = type(first)
    if kind is not dt.date and kind is not dt.datetime:
        return None  # most columns, decided by their first value
    kinds = set(map(type, column))
    empty = type(None) in kinds
    if len(kinds) != 1 + empty:
        return None
    if kind is dt.date:
        return dt.date, empty
    if kind is dt.datetime and all(
        v is None
        or not (v.hour or v.minute or v.second or v.microsecond or v.fold or v.tzinfo is not None)
        for v in column
    ):
        return dt.datetime, empty
    return None


class Spool:
    def __init__(self, folder: Path, name: str, memory_budget: int = MEMORY_BUDGET_BYTES) -> None:
        self.folder = folder
        self.name = name
        self.memory_budget = memory_budget
        self.segment = -1
        self._memory: list[bytes] = []
        self._memory_bytes = 0
        self._out: BinaryIO | None = None
        self._offset = 0
        self._readers: dict[int, BinaryIO] = {}
        self.bytes_written = 0

    def _path(self, segment: int) -> Path:
        return self.folder / f"{self.name}.{segment:04d}"

    def write_columns(self, numbers: list[int], columns: list[list[Any]]) -> ChunkRef:
        """A column-major chunk stored column by column: :meth:`read_columns` can then skip
        the columns a pass does not need (the column profiles read two of twelve)."""
        blobs = [pickle.dumps(numbers, protocol=pickle.HIGHEST_PROTOCOL)]
        days: list[tuple[type[dt.date], bool] | None] = []
        for column in columns:
            kind = _days_kind(column)
            days.append(kind)
            part: list[Any] = column
            if kind is not None:
                ordinal = kind[0].toordinal
                part = [v and ordinal(v) for v in column] if kind[1] else list(map(ordinal, column))
            blobs.append(pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL))
        ref = self._store(b"".join(blobs), len(numbers))
        return attrs.evolve(ref, parts=tuple(len(b) for b in blobs), days=tuple(days))

    def read_columns(
        self, ref: ChunkRef, wanted: Collection[int] | None = None
    ) -> tuple[list[int], list[list[Any] | None]]:
        """(row numbers, columns) of a chunk from :meth:`write_columns`; with ``wanted``, only
        those column indexes are unpickled (the others are None)."""
        data = memoryview(self._load(ref))
        numbers_end = ref.parts[0]
        numbers = pickle.loads(data[:numbers_end])
        columns: list[list[Any] | None] = []
        start = numbers_end
        for index, length in enumerate(ref.parts[1:]):
            end = start + length
            if wanted is None or index in wanted:
                column = pickle.loads(data[start:end])
                kind = ref.days[index]
                if kind is not None:
                    rebuild = kind[0].fromordinal
                    if kind[1]:  # ordinals are >= 1: only the empty cells are falsy
                        column = [o and rebuild(o) for o in column]
                    else:
                        column = list(map(rebuild, column))
                columns.append(column)
            else:
                columns.append(None)
            start = end
        return numbers, columns

    def _store(self, data: bytes, rows: int) -> ChunkRef:
        self.bytes_written += len(data)
        if self.segment < 0 and self._memory_bytes + len(data) <= self.memory_budget:
            self._memory.append(data)
            self._memory_bytes += len(data)
            return ChunkRef(_IN_MEMORY, len(self._memory) - 1, len(data), rows)
        if self._out is None or self._offset + len(data) > SEGMENT_BYTES:
            if self._out is not None:
                self._out.close()
            self.segment += 1
            self._out = self._path(self.segment).open("wb")
            self._offset = 0
        self._out.write(data)
        ref = ChunkRef(self.segment, self._offset, len(data), rows)
        self._offset += len(data)
        return ref

    def finish_writing(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def _load(self, ref: ChunkRef) -> bytes:
        if ref.segment == _IN_MEMORY:
            return self._memory[ref.offset]
        reader = self._readers.get(ref.segment)
        if reader is None:
            for old in self._readers.values():
                old.close()
            self._readers = {ref.segment: self._path(ref.segment).open("rb")}
            reader = self._readers[ref.segment]
        reader.seek(ref.offset)
        return reader.read(ref.length)

    def close(self) -> None:
        self.finish_writing()
        for reader in self._readers.values():
            reader.close()
        self._readers = {}
        self._memory = []
        self._memory_bytes = 0
        for segment in range(self.segment + 1):
            self._path(segment).unlink(missing_ok=True)
