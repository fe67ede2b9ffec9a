"""prepare_config: frozen read-only snapshot, build record, idempotency, concurrency, refusals."""

from __future__ import annotations

import os
import threading
import zipfile
from pathlib import Path

import pytest
from support.jobs import build_wheel, write_package

from ade.configs import load_package
from ade.configs.prepare import (
    BuildRecord,
    prepare_config,
    read_build_record,
    site_packages_dir,
    snapshot_dir,
)
from ade.errors import PackageInvalid


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_prepare_freezes_a_read_only_snapshot_with_a_build_record(tmp_path: Path) -> None:
    package = write_package(tmp_path / "pkg")
    (package / "columns" / "__pycache__").mkdir()
    (package / "columns" / "__pycache__" / "name.cpython-311.pyc").write_bytes(b"junk")
    venvs = tmp_path / "venvs"

    record = prepare_config(package, venvs)

    assert record.content_hash == load_package(package).content_hash
    assert record.config_id == record.content_hash[:32]
    assert record.dependency_hash is None
    assert (record.title, record.version, record.runtime_network_access) == (
        "Test config",
        "1.0.0",
        False,
    )
    assert record.file_count == 5
    snapshot = snapshot_dir(venvs, record.config_id)
    assert _tree(snapshot) == {k: v for k, v in _tree(package).items() if "__pycache__" not in k}
    assert read_build_record(venvs, record.config_id) == record
    # Read-only: files 0444, folders 0555, and (for non-root) writes really fail.
    for path in [snapshot, *snapshot.rglob("*")]:
        expected = 0o555 if path.is_dir() else 0o444
        assert path.stat().st_mode & 0o777 == expected, path
    assert not site_packages_dir(venvs, record.config_id).exists()
    # Nothing but the prepared config is left in venvs/.
    assert sorted(p.name for p in venvs.iterdir()) == [record.config_id]


def test_prepare_is_idempotent_and_a_zip_of_the_same_content_gets_the_same_id(
    tmp_path: Path,
) -> None:
    package = write_package(tmp_path / "pkg")
    venvs = tmp_path / "venvs"
    first = prepare_config(package, venvs)
    again = prepare_config(package, venvs)
    assert again == first  # the existing record, prepared_at unchanged

    archive = tmp_path / "pkg.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(package.rglob("*")):
            if path.is_file():
                zf.write(path, f"pkg/{path.relative_to(package).as_posix()}")
    assert prepare_config(archive, venvs) == first

    (package / "columns" / "amount.py").write_text(
        (package / "columns" / "amount.py").read_text() + "\n# changed\n"
    )
    changed = prepare_config(package, venvs)
    assert changed.config_id != first.config_id
    assert sorted(p.name for p in venvs.iterdir()) == sorted([first.config_id, changed.config_id])


def test_concurrent_prepares_of_the_same_content_agree(tmp_path: Path) -> None:
    package = write_package(tmp_path / "pkg")
    venvs = tmp_path / "venvs"
    results: list[BuildRecord] = []
    errors: list[BaseException] = []

    def prepare() -> None:
        try:
            results.append(prepare_config(package, venvs))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=prepare) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({r.config_id for r in results}) == 1
    on_disk = read_build_record(venvs, results[0].config_id)
    assert on_disk in results
    assert [p.name for p in venvs.iterdir()] == [results[0].config_id]


def test_invalid_package_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    package = write_package(tmp_path / "pkg")
    (package / "columns" / "amount.py").write_text("def detect_x(:\n")
    venvs = tmp_path / "venvs"
    with pytest.raises(PackageInvalid, match=r"columns/amount.py line 1.*syntax error"):
        prepare_config(package, venvs)
    assert list(venvs.iterdir()) == []


def test_symlinks_in_a_package_are_refused_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not copy me")
    package = write_package(tmp_path / "pkg")
    os.symlink(secret, package / "columns" / "_leak.txt")
    venvs = tmp_path / "venvs"
    with pytest.raises(PackageInvalid, match=r"columns/_leak.txt: symbolic links are not allowed"):
        prepare_config(package, venvs)
    assert list(venvs.iterdir()) == []


def test_unsafe_zip_members_and_non_packages_are_refused(tmp_path: Path) -> None:
    venvs = tmp_path / "venvs"
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("manifest.json", "{}")
        zf.writestr("../../escape.py", "x = 1")
    with pytest.raises(PackageInvalid, match="unsafe path in zip archive"):
        prepare_config(evil, venvs)
    assert not (tmp_path / "escape.py").exists()

    not_a_package = tmp_path / "notes.txt"
    not_a_package.write_text("hello")
    with pytest.raises(PackageInvalid, match=r"folder or a \.zip archive"):
        prepare_config(not_a_package, venvs)
    with pytest.raises(PackageInvalid, match="no such file or folder"):
        prepare_config(tmp_path / "missing", venvs)

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", "{}")
        zf.writestr("big.txt", b"\0" * (2 * 1024 * 1024))
    with pytest.raises(PackageInvalid, match="larger than"):
        prepare_config(bomb, venvs, max_unpacked_bytes=1024 * 1024)
    assert list(venvs.iterdir()) == []


def test_requirements_are_installed_into_the_config_site_packages(tmp_path: Path) -> None:
    """A local wheel (no index access): pip --target installs it beside the snapshot."""
    wheel_dir = tmp_path / "wheels"
    wheel = build_wheel(wheel_dir, "adetestdep", "VALUE = 42\n")
    package = write_package(tmp_path / "pkg", extra_files={"requirements.txt": f"{wheel}\n"})
    venvs = tmp_path / "venvs"
    record = prepare_config(package, venvs)
    assert record.dependency_hash is not None and len(record.dependency_hash) == 64
    installed = site_packages_dir(venvs, record.config_id) / "adetestdep" / "__init__.py"
    assert installed.read_text() == "VALUE = 42\n"
    assert installed.stat().st_mode & 0o777 == 0o444

    broken = write_package(
        tmp_path / "broken",
        extra_files={"requirements.txt": f"{wheel_dir}/missing-1.0-py3-none-any.whl\n"},
    )
    with pytest.raises(PackageInvalid, match=r"requirements\.txt: pip could not install"):
        prepare_config(broken, venvs)
    assert sorted(p.name for p in venvs.iterdir()) == [record.config_id]


def test_a_zip_made_by_macos_finder_prepares_like_the_folder(tmp_path: Path) -> None:
    """Finder's "Compress" adds __MACOSX/ and ._* resource forks (not UTF-8 .py files)."""
    package = write_package(tmp_path / "pkg")
    archive = tmp_path / "pkg.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(package.rglob("*")):
            if path.is_file():
                relative = path.relative_to(package).as_posix()
                zf.write(path, f"pkg/{relative}")
                zf.writestr(f"__MACOSX/pkg/._{path.name}", b"\x00\x05\x16\x07\xff\xfe")
        zf.writestr("pkg/._manifest.json", b"\x00\x05\x16\x07\xff")
    venvs = tmp_path / "venvs"
    assert prepare_config(archive, venvs) == prepare_config(package, venvs)


def test_a_zip_with_a_duplicate_member_is_refused_by_name(tmp_path: Path) -> None:
    package = write_package(tmp_path / "pkg")
    archive = tmp_path / "dup.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(package.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(package).as_posix())
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("columns/name.py", "x = 1\n")
    venvs = tmp_path / "venvs"
    with pytest.raises(PackageInvalid, match=r"columns/name\.py: appears twice in the zip"):
        prepare_config(archive, venvs)
    assert list(venvs.iterdir()) == []
