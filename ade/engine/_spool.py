"""A spool of row chunks between passes, so that data rows are read from the input once and
memory holds a bounded amount whatever the table's length.

Chunks are pickled column by column (the values are plain str/int/float/bool/datetime;
pickle is the fastest faithful codec for them in the standard library), without pickle's memo
(flat scalars are never shared or cyclic, and the memo was over half of the pickling time),
except one case pickle is slow at: a column of whole days (``date``, or naive midnight
``datetime``, the usual date column before and after its transform) is stored as day
ordinals, which pickle about seven times faster and read back as exactly the same objects
(``_days_kind``). A column a pass carries unchanged from one spool into another
(:class:`StoredColumn`) is copied as stored bytes. The first ``memory_budget`` bytes stay in
memory — small and medium inputs never touch the disk — and the rest goes to segment files of
bounded size: the worker runs with RLIMIT_FSIZE, which caps each file, not the total.
"""

from __future__ import annotations

import datetime as dt
import io
import operator
import pickle
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import attrs

__all__ = ["ChunkRef", "Spool", "StoredColumn"]

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


_TIME_OF_DAY = dt.datetime.timetz  # with its tzinfo: an aware midnight is not naive midnight
_MIDNIGHT = {dt.time()}
_FOLD = operator.attrgetter("fold")


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
    # Naive midnight, fold 0. Time-of-day equality ignores fold, so fold is asked apart;
    # filter(None) drops the empty cells (a datetime is never false). C loops: per cell, this
    # costs a third of a generator's attribute tests.
    if set(map(_TIME_OF_DAY, filter(None, column))) == _MIDNIGHT and not any(
        map(_FOLD, filter(None, column))
    ):
        return dt.datetime, empty
    return None


@attrs.frozen
class StoredColumn:
    """One column of a chunk as the spool stores it: its pickle and how its days are coded."""

    data: bytes
    days: tuple[type[dt.date], bool] | None


def _ordinals(column: list[Any], kind: tuple[type[dt.date], bool]) -> list[int | None]:
    ordinal = kind[0].toordinal
    return [v and ordinal(v) for v in column] if kind[1] else list(map(ordinal, column))


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

    def write_columns(
        self, numbers: list[int], columns: Sequence[list[Any] | StoredColumn]
    ) -> ChunkRef:
        """A column-major chunk stored column by column: :meth:`read_columns` can then skip
        the columns a pass does not need (the column profiles read two of twelve). A
        :class:`StoredColumn` (from :meth:`read_split`) is copied as it is stored."""
        buffer = io.BytesIO()
        pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
        pickler.fast = True  # no memo (see the module docstring); each dump stands alone
        pickler.dump(numbers)
        ends = [buffer.tell()]
        days: list[tuple[type[dt.date], bool] | None] = []
        for column in columns:
            if isinstance(column, StoredColumn):
                days.append(column.days)
                buffer.write(column.data)
            else:
                kind = _days_kind(column)
                days.append(kind)
                pickler.dump(column if kind is None else _ordinals(column, kind))
            ends.append(buffer.tell())
        ref = self._store(buffer.getvalue(), len(numbers))
        parts = tuple(end - start for start, end in zip([0, *ends[:-1]], ends, strict=True))
        return attrs.evolve(ref, parts=parts, days=tuple(days))

    def read_columns(
        self, ref: ChunkRef, wanted: Collection[int] | None = None
    ) -> tuple[list[int], list[list[Any] | None]]:
        """(row numbers, columns) of a chunk from :meth:`write_columns`; with ``wanted``, only
        those column indexes are unpickled (the others are None)."""
        numbers, parts = self._parts(ref)
        columns: list[list[Any] | None] = [
            self._decode(data, ref.days[index]) if wanted is None or index in wanted else None
            for index, data in enumerate(parts)
        ]
        return numbers, columns

    def read_split(
        self, ref: ChunkRef, decoded: Collection[int], stored: Collection[int]
    ) -> tuple[list[int], dict[int, list[Any]], dict[int, StoredColumn]]:
        """(row numbers, the ``decoded`` columns unpickled, the ``stored`` ones as they are
        stored): a pass that changes some columns and carries the others into another chunk
        (transform) copies those bytes instead of unpickling and pickling them again."""
        numbers, parts = self._parts(ref)
        return (
            numbers,
            {i: self._decode(parts[i], ref.days[i]) for i in decoded},
            {i: StoredColumn(bytes(parts[i]), ref.days[i]) for i in stored},
        )

    def _parts(self, ref: ChunkRef) -> tuple[list[int], list[memoryview]]:
        data = memoryview(self._load(ref))
        numbers_end = ref.parts[0]
        parts = []
        start = numbers_end
        for length in ref.parts[1:]:
            parts.append(data[start : start + length])
            start += length
        return pickle.loads(data[:numbers_end]), parts

    def _decode(self, data: memoryview, kind: tuple[type[dt.date], bool] | None) -> list[Any]:
        column: list[Any] = pickle.loads(data)
        if kind is None:
            return column
        # fromordinal, not a cache of day objects: with the rest of a pass between two reads, a
        # cached day is a cache miss away, and building a fresh one measured twice as fast.
        rebuild = kind[0].fromordinal
        if kind[1]:  # ordinals are >= 1: only the empty cells are falsy
            return [o and rebuild(o) for o in column]
        return list(map(rebuild, column))

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
