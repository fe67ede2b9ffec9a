"""Config package uploads: refuse an unsafe zip before anything is unpacked.

``prepare_config`` unpacks member by member and counts real bytes; this check runs first, on the
zip's central directory alone, so a hostile archive is refused with *every* problem listed and
without a byte written: names that escape the folder (absolute, ``..``, backslashes), symbolic
links, too many members, too much declared content, or a compression ratio only a zip bomb has.
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path, PurePosixPath

from ade.errors import PackageInvalid, PackageProblem

__all__ = ["MAX_COMPRESSION_RATIO", "MAX_PACKAGE_FILES", "MAX_PACKAGE_UNPACKED_BYTES", "check_zip"]

MAX_PACKAGE_FILES = 2000
MAX_PACKAGE_UNPACKED_BYTES = 50 * 1024 * 1024
# Source code and JSON compress 3-10x; 100x on a sizeable member means a bomb.
MAX_COMPRESSION_RATIO = 100
_RATIO_MIN_BYTES = 1024 * 1024


def check_zip(
    path: Path,
    *,
    max_files: int = MAX_PACKAGE_FILES,
    max_bytes: int = MAX_PACKAGE_UNPACKED_BYTES,
) -> None:
    """Raise :class:`PackageInvalid` listing every unsafe member of the zip at ``path``."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise PackageInvalid([PackageProblem("package", "not a readable .zip archive")]) from None
    problems: list[PackageProblem] = []
    with archive:
        members = archive.infolist()
        total = 0
        for member in members:
            name = member.filename
            pure = PurePosixPath(name)
            if "\\" in name or pure.is_absolute() or ".." in pure.parts or name.startswith("/"):
                problems.append(PackageProblem(name, "unsafe path: absolute or escapes the folder"))
            if stat.S_ISLNK(member.external_attr >> 16):
                problems.append(PackageProblem(name, "symbolic links are not allowed"))
            if member.flag_bits & 0x1:
                problems.append(PackageProblem(name, "encrypted members are not supported"))
            total += member.file_size
            if (
                member.file_size > _RATIO_MIN_BYTES
                and member.file_size > MAX_COMPRESSION_RATIO * max(member.compress_size, 1)
            ):
                problems.append(
                    PackageProblem(
                        name,
                        f"compression ratio above {MAX_COMPRESSION_RATIO}:1 (a zip bomb?)",
                    )
                )
        files = sum(1 for m in members if not m.is_dir())
        if files > max_files:
            problems.append(
                PackageProblem("package", f"{files} files; at most {max_files} are allowed")
            )
        if total > max_bytes:
            problems.append(
                PackageProblem(
                    "package",
                    f"{total} bytes when unpacked; at most {max_bytes} are allowed",
                )
            )
        if not members:
            problems.append(PackageProblem("package", "the archive is empty"))
    if problems:
        raise PackageInvalid(problems)
