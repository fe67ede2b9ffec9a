"""Broken config packages are rejected before any data is read, naming file/function/path."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from support.engine import copy_config, edit_manifest, leftovers, patch_zip_entry

from ade.configs import ConfigPackage, load_package
from ade.engine import run_engine
from ade.errors import PackageInvalid
from ade.samples import ROSTER_CONFIG


def problems(config: Path) -> list[tuple[str, str]]:
    with pytest.raises(PackageInvalid) as info:
        load_package(config)
    return [(p.location, p.message) for p in info.value.problems]


def test_sample_package_loads_with_engine_defaults() -> None:
    package = load_package(ROSTER_CONFIG)
    assert isinstance(package, ConfigPackage)
    assert package.title == "Member roster"
    assert package.row_types == ("header", "data", "totals")
    assert package.runtime_network_access is False
    assert package.engine.mapping_threshold == 1.0
    assert package.engine.sample_rows == 100
    assert package.writer.sheet_name == "Members"
    assert [h.rule for h in package.hooks] == [
        "hooks/audit.py:on_job_start",
        "hooks/audit.py:after_mapping",
        "hooks/audit.py:on_job_end",
    ]
    assert len(package.content_hash) == 64
    assert package == load_package(ROSTER_CONFIG)
    assert hash(package) == hash(load_package(ROSTER_CONFIG))  # usable as a cache key


def test_zip_package_with_top_folder_loads_the_same(tmp_path: Path) -> None:
    archive = tmp_path / "roster.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(ROSTER_CONFIG.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                zf.write(file, "roster/" + file.relative_to(ROSTER_CONFIG).as_posix())
    assert load_package(archive).content_hash == load_package(ROSTER_CONFIG).content_hash


def test_network_access_is_read_from_the_manifest(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    edit_manifest(config, lambda d: d["engine"].update(runtime_network_access=True))
    assert load_package(config).runtime_network_access is True


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    (config / "manifest.json").write_text('{\n  "schema": "ade.manifest/v1",\n  "title": \n}')
    assert problems(config) == [
        ("manifest.json", "bad JSON at line 4 column 1: Expecting value"),
    ]


def test_unknown_field_in_order(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    edit_manifest(config, lambda d: d["columns"]["order"].append("nickname"))
    assert problems(config) == [
        ("manifest.json:columns.order[7]", "unknown field 'nickname' (not in columns.fields)"),
    ]


def test_missing_detect_function(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    (config / "columns" / "email.py").write_text("def transform(*, values):\n    return values\n")
    assert problems(config) == [("columns/email.py", "defines no detect_* function")]


def test_non_callable_detector_and_transform(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    path = config / "columns" / "phone.py"
    path.write_text(path.read_text() + "\ndetect_extra = 3\ntransform = 'upper'\n")
    assert problems(config) == [
        ("columns/phone.py:detect_extra", "is not callable (bound to a int value)"),
        ("columns/phone.py:transform", "is not callable (bound to a str value)"),
    ]


def test_syntax_error_with_line_number(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    (config / "row_types" / "totals.py").write_text("def detect_total(*, values):\n    return (\n")
    assert problems(config) == [
        ("row_types/totals.py line 2", "syntax error: '(' was never closed")
    ]


def test_missing_manifest_and_required_files(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    (config / "manifest.json").unlink()
    assert problems(config) == [
        ("manifest.json", "missing (every config package has a manifest.json at its top)")
    ]
    config = copy_config(tmp_path, "second")
    (config / "row_types" / "data.py").unlink()
    (config / "columns" / "phone.py").unlink()
    assert problems(config) == [
        ("row_types/data.py", "missing (every package votes on header and data rows)"),
        ("columns/phone.py", "missing (field 'phone' needs its detectors)"),
    ]


def test_manifest_values_are_checked(tmp_path: Path) -> None:
    config = copy_config(tmp_path)

    def change(doc: dict) -> None:
        doc["schema"] = "ade.manifest/v0"
        doc["engine"]["mapping_threshold"] = "high"
        doc["writer"]["sheet_name"] = "a/b"
        doc["columns"]["fields"]["email"]["required"] = "yes"
        doc["hooks"]["after_mapping"] = ["hooks/missing.py"]
        doc["colour"] = "blue"

    edit_manifest(config, change)
    assert problems(config) == [
        (
            "manifest.json:colour",
            "unknown key (expected one of ['columns', 'engine', 'hooks', 'schema', 'title', "
            "'version', 'writer'])",
        ),
        ("manifest.json:schema", "must be 'ade.manifest/v1', got 'ade.manifest/v0'"),
        ("manifest.json:columns.fields.email.required", "must be true or false"),
        ("manifest.json:engine.mapping_threshold", "must be a number"),
        (
            "manifest.json:writer.sheet_name",
            "must be 1-31 characters without any of [ ] : * ? / \\ (an Excel sheet name)",
        ),
        ("manifest.json:hooks.after_mapping[0]", "hooks/missing.py does not exist in the package"),
    ]


@pytest.mark.parametrize("threshold", [float("nan"), float("inf")])
def test_mapping_threshold_must_be_finite(tmp_path: Path, threshold: float) -> None:
    config = copy_config(tmp_path)
    edit_manifest(config, lambda doc: doc["engine"].update(mapping_threshold=threshold))
    assert problems(config) == [("manifest.json:engine.mapping_threshold", "must be a number")]


def test_unknown_parameter_and_stray_column_module(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    (config / "columns" / "email.py").write_text("def detect_x(*, header, colour):\n    return 0\n")
    (config / "columns" / "nickname.py").write_text("def detect_x(*, header):\n    return 0\n")
    found = problems(config)
    assert found[0][0] == "columns/email.py:detect_x"
    assert found[0][1].startswith("parameter 'colour' is not provided by ADE (available: ")
    assert found[1] == (
        "columns/nickname.py",
        "no field named 'nickname' in manifest.json columns.fields (helpers must start with '_')",
    )


def test_not_a_package(tmp_path: Path) -> None:
    stray = tmp_path / "config.txt"
    stray.write_text("hello")
    assert problems(stray) == [("config.txt", "a config package is a folder or a .zip archive")]
    assert problems(tmp_path / "nowhere") == [(str(tmp_path / "nowhere"), "no such file or folder")]


def test_import_time_failure_is_rejected_before_inputs_are_read(tmp_path: Path) -> None:
    """What static checks cannot see (an import error, a runtime non-callable) is still reported
    as PackageInvalid, and before the inputs are looked at: the input here is not even a file."""
    config = copy_config(tmp_path)
    path = config / "columns" / "email.py"
    path.write_text("import json\n\n" + path.read_text() + "\nvalidate = json.loads('3')\n")
    path = config / "hooks" / "audit.py"
    path.write_text("\n\nraise RuntimeError('boom')\n" + path.read_text())
    out = tmp_path / "out"
    with pytest.raises(PackageInvalid) as info:
        run_engine([tmp_path / "does-not-exist.xlsx"], config, out)
    assert [(p.location, p.message) for p in info.value.problems] == [
        ("hooks/audit.py line 3", "importing it raised RuntimeError"),
    ]
    (config / "hooks" / "audit.py").write_text(
        "def on_job_start():\n    pass\ndef after_mapping():\n    pass\n"
        "def on_job_end():\n    pass\n"
    )
    with pytest.raises(PackageInvalid) as info:
        run_engine([tmp_path / "does-not-exist.xlsx"], config, out)
    assert [(p.location, p.message) for p in info.value.problems] == [
        ("columns/email.py:validate", "is not callable"),
    ]
    assert leftovers(out) == []


def test_message_lists_every_problem(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    shutil.rmtree(config / "hooks")
    edit_manifest(config, lambda d: d.pop("hooks"))
    manifest = json.loads((config / "manifest.json").read_text())
    manifest["columns"]["order"].append("ghost")
    (config / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackageInvalid) as info:
        load_package(config)
    assert info.value.message == (
        "config package is invalid (1 problem(s)): manifest.json:columns.order[7]: "
        "unknown field 'ghost' (not in columns.fields)"
    )


def test_engine_runs_a_zip_package(tmp_path: Path) -> None:
    from support.engine import read_rows

    from ade.samples.generate import write_messy_workbook

    archive = tmp_path / "roster.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(ROSTER_CONFIG.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                zf.write(file, file.relative_to(ROSTER_CONFIG).as_posix())
    source = write_messy_workbook(tmp_path / "messy.xlsx")
    run_engine([source], archive, tmp_path / "zip-out")
    run_engine([source], ROSTER_CONFIG, tmp_path / "folder-out")
    assert read_rows(tmp_path / "zip-out" / "normalized.xlsx") == read_rows(
        tmp_path / "folder-out" / "normalized.xlsx"
    )


def test_zip_with_unsafe_paths_is_rejected(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("manifest.json", "{}")
        zf.writestr("../escape.py", "x = 1")
    assert problems(archive) == [("../escape.py", "unsafe path in zip archive")]


def zipped_sample(archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(ROSTER_CONFIG.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                zf.write(file, file.relative_to(ROSTER_CONFIG).as_posix())
    return archive


def test_zip_with_a_password_is_rejected_naming_the_entry(tmp_path: Path) -> None:
    archive = zipped_sample(tmp_path / "locked.zip")
    patch_zip_entry(archive, "manifest.json", flag_bits=0x1)
    assert problems(archive) == [
        ("manifest.json", "encrypted zip entry; zip the package again without a password")
    ]


def test_zip_with_an_unsupported_compression_method_is_rejected(tmp_path: Path) -> None:
    archive = zipped_sample(tmp_path / "aes.zip")
    patch_zip_entry(archive, "columns/email.py", method=99)
    assert problems(archive) == [
        (
            "columns/email.py",
            "zip compression method 99 is not supported; zip the package again with deflate",
        )
    ]


def test_zip_with_damaged_compressed_data_is_rejected(tmp_path: Path) -> None:
    archive = zipped_sample(tmp_path / "damaged.zip")
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("manifest.json")
    data = bytearray(archive.read_bytes())
    # The compressed bytes start after the 30-byte local header, the name and the extra field.
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start : start + 16] = b"\xff" * 16
    archive.write_bytes(bytes(data))
    [(location, message)] = problems(archive)
    assert location == "damaged.zip"
    assert message.startswith("unreadable zip archive (")
