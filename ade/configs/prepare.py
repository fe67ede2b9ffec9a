"""Prepare a config package for running: a frozen, read-only snapshot plus its dependencies.

Layout produced (``config_id`` is derived from the package's content hash)::

    venvs/<config_id>/
      ade-build/snapshot/   the package files, read-only; the worker imports the config from here
      ade-build/build.json  BuildRecord: content hash, dependency hash, python version, prepared_at
      site-packages/        the package's requirements.txt, installed (only if it has one)

Why ``pip install --target`` rather than a full venv per config: the worker runs the service's own
interpreter (which carries ADE, openpyxl and the sandbox), so a config only *adds* packages. A
target directory appended to ``sys.path`` does exactly that in one pip call, without copying an
interpreter or reinstalling ADE into every venv. Appending (not prepending) means a config cannot
shadow the libraries the engine itself relies on. ``--only-binary=:all:`` because building an
sdist runs its ``setup.py`` — untrusted code — inside the service, outside any sandbox.

Idempotent and concurrency-safe: everything is built under a temporary directory next to the
target and renamed into place in one step. The same content always yields the same
``config_id``; whoever renames first wins and everyone else returns the winner's record.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from datetime import datetime
from pathlib import Path, PurePosixPath

import attrs

from ade.errors import PackageInvalid, PackageProblem
from ade.serde import converter, utcnow

__all__ = [
    "BUILD_DIR",
    "BuildRecord",
    "build_record_path",
    "prepare_config",
    "read_build_record",
    "site_packages_dir",
    "snapshot_dir",
]

BUILD_DIR = "ade-build"
_SNAPSHOT = "snapshot"
_RECORD = "build.json"
_SITE_PACKAGES = "site-packages"
_REQUIREMENTS = "requirements.txt"
# Never part of a package's identity: caches Python or editors leave behind.
_IGNORED_DIRS = frozenset(
    {"__pycache__", ".git", ".venv", ".hg", ".svn", ".mypy_cache", ".pytest_cache", "__MACOSX"}
)
_IGNORED_SUFFIXES = (".pyc", ".pyo")
_IGNORED_NAMES = frozenset({".DS_Store"})
# A zip bomb must not fill the disk before validation even starts.
DEFAULT_MAX_UNPACKED_BYTES = 200 * 1024 * 1024
DEFAULT_MAX_FILES = 5000
_PIP_TIMEOUT_SECONDS = 600


@attrs.frozen
class BuildRecord:
    config_id: str
    content_hash: str
    # sha256 of requirements.txt, or None when the package has no dependencies.
    dependency_hash: str | None
    python_version: str
    prepared_at: datetime
    file_count: int
    # From the manifest, so the catalog can describe the config without loading it again.
    title: str
    version: str
    runtime_network_access: bool


def snapshot_dir(venvs_dir: Path, config_id: str) -> Path:
    return venvs_dir / config_id / BUILD_DIR / _SNAPSHOT


def site_packages_dir(venvs_dir: Path, config_id: str) -> Path:
    return venvs_dir / config_id / _SITE_PACKAGES


def build_record_path(venvs_dir: Path, config_id: str) -> Path:
    return venvs_dir / config_id / BUILD_DIR / _RECORD


def read_build_record(venvs_dir: Path, config_id: str) -> BuildRecord | None:
    """The record of a prepared config, or None if ``config_id`` was never prepared."""
    try:
        raw = build_record_path(venvs_dir, config_id).read_bytes()
    except FileNotFoundError:
        return None
    return converter.loads(raw, BuildRecord)


def config_id_for(content_hash: str) -> str:
    """32 hex digits of the content hash: unique enough, short enough for paths and URLs."""
    return content_hash[:32]


def _problem(location: str, message: str) -> PackageInvalid:
    return PackageInvalid([PackageProblem(location, message)])


def _ignored(relative: PurePosixPath) -> bool:
    if any(part in _IGNORED_DIRS for part in relative.parts[:-1]):
        return True
    # "._name" files are macOS resource forks (AppleDouble), not part of anyone's package.
    return (
        relative.name in _IGNORED_NAMES
        or relative.name.startswith("._")
        or relative.name.endswith(_IGNORED_SUFFIXES)
    )


def _copy_folder(source: Path, dest: Path, max_bytes: int, max_files: int) -> None:
    """Copy regular files and folders only. A symlink is refused, not followed: following it
    would copy whatever it points at (``/etc/shadow``, another config) into the snapshot."""
    total = 0
    count = 0
    for root, dirs, files in os.walk(source, followlinks=False):
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if d not in _IGNORED_DIRS)
        for name in [*dirs, *sorted(files)]:
            path = root_path / name
            relative = PurePosixPath(path.relative_to(source).as_posix())
            if _ignored(relative):
                continue
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise _problem(str(relative), "symbolic links are not allowed in a config package")
            target = dest / relative
            if stat.S_ISDIR(mode):
                target.mkdir()
            elif stat.S_ISREG(mode):
                count += 1
                total += os.lstat(path).st_size
                if count > max_files or total > max_bytes:
                    raise _problem(
                        ".", f"package is larger than {max_files} files / {max_bytes} bytes"
                    )
                shutil.copyfile(path, target, follow_symlinks=False)
            else:
                raise _problem(str(relative), "only regular files and folders are allowed")


def _extract_zip(archive: Path, dest: Path, max_bytes: int, max_files: int) -> None:
    """Extract member by member, refusing absolute paths, ``..``, links and oversized content.

    A package zipped with its folder (``pkg/manifest.json`` ...) is unwrapped to that folder.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _problem(archive.name, f"not a readable zip archive ({type(exc).__name__})") from None
    with zf:
        members = []
        for member in zf.infolist():
            name = PurePosixPath(member.filename)
            if name.is_absolute() or ".." in name.parts or "\\" in member.filename:
                raise _problem(member.filename, "unsafe path in zip archive")
            if not member.is_dir() and not _ignored(name):
                members.append((member, name))
        # Unwrap a single top-level folder when manifest.json is not at the root.
        strip = 0
        tops = {name.parts[0] for _, name in members}
        if len(tops) == 1 and all(len(name.parts) > 1 for _, name in members):
            strip = 1
        total = 0
        count = 0
        for member, name in members:
            if stat.S_ISLNK(member.external_attr >> 16):
                raise _problem(member.filename, "symbolic links are not allowed in a package")
            relative = PurePosixPath(*name.parts[strip:])
            count += 1
            total += member.file_size
            if count > max_files or total > max_bytes:
                raise _problem(".", f"package is larger than {max_files} files / {max_bytes} bytes")
            target = dest / relative
            written = 0
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "xb") as out:
                    # Count real bytes: a forged header must not get past the size cap.
                    while chunk := src.read(1 << 16):
                        written += len(chunk)
                        if total - member.file_size + written > max_bytes:
                            raise _problem(
                                ".", f"package is larger than {max_bytes} bytes unpacked"
                            )
                        out.write(chunk)
            except FileExistsError:
                raise _problem(member.filename, "appears twice in the zip archive") from None
            except (OSError, zipfile.BadZipFile, EOFError) as exc:
                raise _problem(
                    member.filename, f"cannot be extracted ({type(exc).__name__})"
                ) from None


def _make_read_only(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    root.chmod(0o555)


def _force_rmtree(path: Path) -> None:
    """Remove a tree we made read-only (a non-root owner needs write permission on folders)."""
    if not path.exists():
        return
    os.chmod(path, 0o755)
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
    shutil.rmtree(path)


def _install_requirements(requirements: Path, target: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-input",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--only-binary=:all:",
        "--target",
        str(target),
        "-r",
        str(requirements),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PIP_NO_INPUT"] = "1"
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=_PIP_TIMEOUT_SECONDS,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise _problem(
            _REQUIREMENTS, f"installing dependencies took longer than {_PIP_TIMEOUT_SECONDS} s"
        ) from None
    if result.returncode != 0:
        tail = [line for line in result.stderr.splitlines() if line.strip()][-3:]
        raise _problem(_REQUIREMENTS, "pip could not install the requirements: " + " | ".join(tail))


def prepare_config(
    package_path: Path,
    venvs_dir: Path,
    *,
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
) -> BuildRecord:
    """Validate ``package_path`` (a folder or a .zip) and freeze it under ``venvs_dir``.

    Returns the :class:`BuildRecord`; preparing the same content again returns the existing
    record without rebuilding. Raises :class:`ade.errors.PackageInvalid` naming the problem;
    on any failure nothing is left under ``venvs_dir``.

    Blocking (file copies, pip): call it through ``trio.to_thread.run_sync`` from async code.
    """
    from ade.configs import load_package  # the engine's validator; imported late (heavy)

    package_path = Path(package_path)
    if not package_path.exists():
        raise _problem(str(package_path), "no such file or folder")
    venvs_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".prepare-", dir=venvs_dir))
    # mkdtemp makes it 0o700; a worker running under a dropped uid must be able to traverse it.
    work.chmod(0o755)
    try:
        build = work / BUILD_DIR
        snapshot = build / _SNAPSHOT
        snapshot.mkdir(parents=True)
        if package_path.is_dir():
            _copy_folder(package_path, snapshot, max_unpacked_bytes, max_files)
        elif zipfile.is_zipfile(package_path):
            _extract_zip(package_path, snapshot, max_unpacked_bytes, max_files)
        else:
            raise _problem(package_path.name, "a config package is a folder or a .zip archive")

        # Validate the copy, not the original: what runs is exactly what was checked. The
        # package's content hash (the engine's identity for it) names the prepared config.
        package = load_package(snapshot)
        content_hash = package.content_hash
        config_id = config_id_for(content_hash)
        existing = read_build_record(venvs_dir, config_id)
        if existing is not None and existing.content_hash == content_hash:
            return existing

        requirements = snapshot / _REQUIREMENTS
        dependency_hash = None
        if requirements.is_file():
            dependency_hash = hashlib.sha256(requirements.read_bytes()).hexdigest()
            site_packages = work / _SITE_PACKAGES
            site_packages.mkdir()
            _install_requirements(requirements, site_packages)
            _make_read_only(site_packages)

        record = BuildRecord(
            config_id=config_id,
            content_hash=content_hash,
            dependency_hash=dependency_hash,
            python_version=platform.python_version(),
            prepared_at=utcnow(),
            file_count=len(package.files),
            title=package.title,
            version=package.version,
            runtime_network_access=package.runtime_network_access,
        )
        (build / _RECORD).write_bytes(converter.dumps(record).encode() + b"\n")
        _make_read_only(snapshot)
        (build / _RECORD).chmod(0o444)

        final = venvs_dir / config_id
        try:
            os.rename(work, final)
        except OSError:
            # Someone else finished the same content first (or a stale, unrecorded folder sits
            # there). Use the winner when it is complete; otherwise replace the broken folder.
            winner = read_build_record(venvs_dir, config_id)
            if winner is not None and winner.content_hash == content_hash:
                return winner
            _force_rmtree(final)
            os.rename(work, final)
        work = final  # nothing left to clean up
        return record
    finally:
        if work.name.startswith(".prepare-"):
            _force_rmtree(work)
