"""Refuse a zip-bomb workbook at upload, before a worker is ever spent on it.

An ``.xlsx`` is a zip. A 2 MB upload can declare 2 GiB of sheet XML, which occupies a worker
until its memory limit kills it. The check reads only the archive's end record and central
directory (the declared sizes, which Python's zip reader also enforces while decompressing, so
they cannot be understated): the number of members, the total uncompressed size
(``ADE_MAX_UNCOMPRESSED_MB``) and the compression ratio of the whole archive and of each sizeable
member (the 100:1 config packages already have). Files that are not zips (CSV, legacy .xls)
pass through untouched: their size on disk is their size.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from ade.configs.archive import MAX_COMPRESSION_RATIO
from ade.errors import InputError

__all__ = ["MAX_WORKBOOK_MEMBERS", "check_workbook"]

# A real workbook has tens of parts; a central directory of millions would cost memory to list.
MAX_WORKBOOK_MEMBERS = 10_000
# Members and archives smaller than this compress as they like (tiny XML parts reach 100:1).
_RATIO_MIN_BYTES = 1024 * 1024


def _refuse(filename: str, what: str, limit: str) -> InputError:
    return InputError(
        f"document {filename!r} refused: {what}; the limit is {limit}",
        {"filename": filename, "limit": limit},
    )


def check_workbook(path: Path, filename: str, max_uncompressed_bytes: int) -> None:
    """Raise :class:`InputError` (422) naming ``filename`` and the limit it breaks."""
    if not zipfile.is_zipfile(path):
        return
    with open(path, "rb") as handle:
        end = zipfile._EndRecData(handle)  # type: ignore[attr-defined]
        if end is not None and end[zipfile._ECD_ENTRIES_TOTAL] > MAX_WORKBOOK_MEMBERS:  # type: ignore[attr-defined]
            raise _refuse(
                filename,
                f"the archive holds {end[zipfile._ECD_ENTRIES_TOTAL]} parts",  # type: ignore[attr-defined]
                f"{MAX_WORKBOOK_MEMBERS} parts",
            )
        try:
            members = zipfile.ZipFile(handle).infolist()
        except (zipfile.BadZipFile, ValueError, OSError):
            return  # not a readable zip after all: the engine reports it as a corrupt input
    total = 0
    compressed = 0
    for member in members:
        total += member.file_size
        compressed += member.compress_size
        if member.file_size > _RATIO_MIN_BYTES and member.file_size > MAX_COMPRESSION_RATIO * max(
            member.compress_size, 1
        ):
            raise _refuse(
                filename,
                f"part {member.filename!r} expands {member.compress_size} bytes to "
                f"{member.file_size} (a zip bomb?)",
                f"a compression ratio of {MAX_COMPRESSION_RATIO}:1",
            )
    if total > max_uncompressed_bytes:
        raise _refuse(
            filename,
            f"it expands to {total} bytes",
            f"{max_uncompressed_bytes} bytes uncompressed (ADE_MAX_UNCOMPRESSED_MB)",
        )
    if total > _RATIO_MIN_BYTES and total > MAX_COMPRESSION_RATIO * max(compressed, 1):
        raise _refuse(
            filename,
            f"it expands {compressed} bytes to {total} (a zip bomb?)",
            f"a compression ratio of {MAX_COMPRESSION_RATIO}:1",
        )
