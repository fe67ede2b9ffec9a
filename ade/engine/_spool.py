"""A disk spool of row chunks, so that data rows are read from the input once and memory holds
one chunk at a time whatever the table's length.

Chunks are pickled (the values are plain str/int/float/bool/datetime; pickle is the fastest
faithful codec for them in the standard library) into segment files of bounded size: the worker
runs with RLIMIT_FSIZE, which caps each file, not the total.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, BinaryIO

import attrs

__all__ = ["ChunkRef", "Spool"]

SEGMENT_BYTES = 32 * 1024 * 1024


@attrs.frozen
class ChunkRef:
    segment: int
    offset: int
    length: int
    rows: int


class Spool:
    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = name
        self.segment = -1
        self._out: BinaryIO | None = None
        self._offset = 0
        self._readers: dict[int, BinaryIO] = {}
        self.bytes_written = 0

    def _path(self, segment: int) -> Path:
        return self.folder / f"{self.name}.{segment:04d}"

    def write(self, payload: Any, rows: int) -> ChunkRef:
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        if self._out is None or self._offset + len(data) > SEGMENT_BYTES:
            if self._out is not None:
                self._out.close()
            self.segment += 1
            self._out = self._path(self.segment).open("wb")
            self._offset = 0
        self._out.write(data)
        ref = ChunkRef(self.segment, self._offset, len(data), rows)
        self._offset += len(data)
        self.bytes_written += len(data)
        return ref

    def finish_writing(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def read(self, ref: ChunkRef) -> Any:
        reader = self._readers.get(ref.segment)
        if reader is None:
            for old in self._readers.values():
                old.close()
            self._readers = {ref.segment: self._path(ref.segment).open("rb")}
            reader = self._readers[ref.segment]
        reader.seek(ref.offset)
        return pickle.loads(reader.read(ref.length))

    def close(self) -> None:
        self.finish_writing()
        for reader in self._readers.values():
            reader.close()
        self._readers = {}
        for segment in range(self.segment + 1):
            self._path(segment).unlink(missing_ok=True)
