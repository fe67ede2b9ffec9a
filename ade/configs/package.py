"""Config packages: the manifest model and a *static* validator.

Theory of operation
-------------------
A config package is untrusted code. :func:`load_package` therefore never imports or executes
it: it reads ``manifest.json`` and parses every ``.py`` file with :mod:`ast`, which is enough to
report bad JSON, unknown fields, missing files, syntax errors (with line numbers), missing
``detect_*`` functions, names bound to non-callables and parameters ADE does not provide. The
server can call it safely. Importing the code happens only inside the engine (in the sandboxed
worker), where anything the static pass cannot see (an import error, a name bound at runtime
to a non-callable) is reported the same way, still before any input data is touched.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import re
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import attrs

from ade.errors import PackageInvalid, PackageProblem

__all__ = [
    "COLUMN_DETECTOR_ARGS",
    "FIELD_TYPES",
    "HOOK_ARGS",
    "HOOK_NAMES",
    "MANIFEST_FILE",
    "MANIFEST_SCHEMA",
    "PROFILE_ARGS",
    "ROW_DETECTOR_ARGS",
    "TRANSFORM_ARGS",
    "VALIDATE_ARGS",
    "ConfigPackage",
    "EngineDefaults",
    "FieldSpec",
    "HookRef",
    "WriterOptions",
    "load_package",
]

MANIFEST_FILE = "manifest.json"
MANIFEST_SCHEMA = "ade.manifest/v1"
FIELD_TYPES = frozenset({"string", "integer", "number", "date", "datetime", "boolean"})
HOOK_NAMES = ("on_job_start", "after_mapping", "after_transform", "after_validate", "on_job_end")

# The keyword arguments ADE offers each kind of config function. A function receives only the
# ones it declares (or all of them if it takes **kwargs); docs/config-packages.md documents each.
ROW_DETECTOR_ARGS = frozenset(
    {
        "values",
        "row_number",
        "non_empty",
        "first_column",
        "previous_row_type",
        "in_table",
        "row_type",
        "field_labels",
        "sheet_name",
        "input_name",
    }
)
COLUMN_DETECTOR_ARGS = frozenset(
    {
        "header",
        "header_parts",
        "values",
        "column_index",
        "column_letter",
        "field",
        "label",
        "synonyms",
        "field_type",
        "sheet_name",
        "input_name",
        "table_id",
    }
)
# What every function of a column file sees about the column it works on.
_COLUMN_CONTEXT = frozenset(
    {"field", "label", "field_type", "header", "sheet_name", "input_name", "table_id"}
)
PROFILE_ARGS = _COLUMN_CONTEXT | {"values", "state"}
TRANSFORM_ARGS = _COLUMN_CONTEXT | {"values", "state", "mapped_fields"}
VALIDATE_ARGS = _COLUMN_CONTEXT | frozenset(
    {
        "values",
        "state",
        "row_numbers",
        "field",
        "label",
        "field_type",
        "required",
        "sheet_name",
        "input_name",
        "table_id",
    }
)
_COMMON_HOOK_ARGS = frozenset({"inputs", "manifest"})
HOOK_ARGS: Mapping[str, frozenset[str]] = {
    "on_job_start": _COMMON_HOOK_ARGS,
    "after_mapping": _COMMON_HOOK_ARGS | {"tables"},
    "after_transform": _COMMON_HOOK_ARGS | {"tables", "transforms"},
    "after_validate": _COMMON_HOOK_ARGS | {"tables", "validation"},
    "on_job_end": _COMMON_HOOK_ARGS | {"tables", "summary"},
}

# A package is a handful of small files; these bounds stop a hostile zip from exhausting memory.
MAX_PACKAGE_FILES = 1000
MAX_PACKAGE_BYTES = 20 * 1024 * 1024

_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHEET_NAME_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
_SKIPPED_PARTS = {"__pycache__", ".git", ".venv"}
_ZIP_ENCRYPTED = 0x1  # general purpose flag bit 0
_ZIP_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)


@attrs.frozen
class FieldSpec:
    """One target field of the normalized output."""

    name: str
    label: str
    synonyms: tuple[str, ...] = ()
    required: bool = False
    type: str | None = None


@attrs.frozen
class EngineDefaults:
    """Engine knobs a package sets in ``manifest.json`` under ``engine``."""

    # Summed detector score a column needs to map to a field. 1.0 = "one confident rule".
    mapping_threshold: float = 1.0
    # Config code gets no network unless its author asks for it (the sandbox enforces this).
    runtime_network_access: bool = False
    # Data rows per table that column detectors see; enough to judge a column, small enough
    # that mapping never depends on the table's length.
    sample_rows: int = 100
    # Issues listed one by one in artifact.json; counts are always complete.
    max_issues: int = 1000
    # Blank rows a table stays open across (a blank line in an export is noise, not the end
    # of the table); a new header, a totals or other row still ends it at once.
    max_blank_rows_in_table: int = 3
    # A table found by its shape whose header the detectors do not recognise: "report" lists
    # it (a warning) without writing its rows; "write" writes it like any other table.
    unrecognised_tables: str = "report"
    # Whether error-level issues (or a required field no table provides) fail the job
    # ("failed") instead of finishing it with errors ("finished_with_errors").
    fail_on_errors: bool = False


@attrs.frozen
class WriterOptions:
    sheet_name: str = "Normalized"
    append_unmapped: bool = True
    unmapped_prefix: str = "raw_"


@attrs.frozen
class HookRef:
    """``hooks/<file>.py:<function>`` registered for one hook point."""

    hook: str
    file: str
    function: str

    @property
    def rule(self) -> str:
        return f"{self.file}:{self.function}"


@attrs.frozen
class ConfigPackage:
    """A statically validated config package. Holds the package's files in memory (they are
    small and bounded) so that a zip and a folder behave the same and the engine can freeze
    exactly what was validated."""

    source: Path
    schema: str
    title: str
    version: str
    fields: tuple[FieldSpec, ...]
    engine: EngineDefaults
    writer: WriterOptions
    hooks: tuple[HookRef, ...]
    row_types: tuple[str, ...]
    # Equality and hashing go by content_hash; the dict itself is neither hashable nor small.
    files: Mapping[str, bytes] = attrs.field(repr=False, eq=False)
    content_hash: str

    @property
    def runtime_network_access(self) -> bool:
        return self.engine.runtime_network_access

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> FieldSpec:
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def manifest_summary(self) -> dict[str, Any]:
        """The manifest as hooks see it: names and labels only, never data."""
        return {
            "title": self.title,
            "version": self.version,
            "fields": [attrs.asdict(f, value_serializer=_tuple_to_list) for f in self.fields],
        }


def _tuple_to_list(_inst: Any, _field: Any, value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def load_package(path: Path | str) -> ConfigPackage:
    """Validate the config package at ``path`` (a folder or a .zip) without executing it.

    Raises :class:`ade.errors.PackageInvalid` listing every problem found, each naming the file,
    function or manifest path involved.
    """
    source = Path(path)
    files = _read_files(source)
    checker = _Checker(files)
    package = checker.check(source)
    if checker.problems:
        raise PackageInvalid(checker.problems)
    assert package is not None
    return package


def _problem(location: str, message: str) -> PackageInvalid:
    return PackageInvalid([PackageProblem(location, message)])


def _read_files(source: Path) -> dict[str, bytes]:
    if source.is_dir():
        return _read_folder(source)
    if source.is_file():
        if not zipfile.is_zipfile(source):
            raise _problem(source.name, "a config package is a folder or a .zip archive")
        return _read_zip(source)
    raise _problem(str(source), "no such file or folder")


def _read_folder(root: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    total = 0
    for file in sorted(root.rglob("*")):
        rel = file.relative_to(root)
        if not file.is_file() or _SKIPPED_PARTS.intersection(rel.parts):
            continue
        if file.suffix == ".pyc":
            continue
        data = file.read_bytes()
        total += len(data)
        files[rel.as_posix()] = data
        _check_bounds(len(files), total, rel.as_posix())
    return files


def _read_zip(archive: Path) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            names = [PurePosixPath(i.filename) for i in infos]
            # A zip made by "compress the folder" has everything under one top folder.
            prefix = _common_top_folder(names)
            files: dict[str, bytes] = {}
            total = 0
            for info, name in zip(infos, names, strict=True):
                if name.is_absolute() or ".." in name.parts:
                    raise _problem(info.filename, "unsafe path in zip archive")
                rel = PurePosixPath(*name.parts[len(prefix) :]) if prefix else name
                if _SKIPPED_PARTS.intersection(rel.parts) or rel.suffix == ".pyc":
                    continue
                # zipfile raises RuntimeError / NotImplementedError for these: name them.
                if info.flag_bits & _ZIP_ENCRYPTED:
                    raise _problem(
                        info.filename,
                        "encrypted zip entry; zip the package again without a password",
                    )
                if info.compress_type not in _ZIP_METHODS:
                    raise _problem(
                        info.filename,
                        f"zip compression method {info.compress_type} is not supported; "
                        "zip the package again with deflate",
                    )
                total += info.file_size
                _check_bounds(len(files) + 1, total, info.filename)
                files[rel.as_posix()] = zf.read(info)
            return files
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise _problem(archive.name, f"unreadable zip archive ({type(exc).__name__})") from exc


def _common_top_folder(names: list[PurePosixPath]) -> tuple[str, ...]:
    if not names or any(n.as_posix() == MANIFEST_FILE for n in names):
        return ()
    tops = {n.parts[0] for n in names if len(n.parts) > 1}
    if len(tops) == 1 and all(len(n.parts) > 1 for n in names):
        top = next(iter(tops))
        if any(n.parts[1:] == (MANIFEST_FILE,) for n in names):
            return (top,)
    return ()


def _check_bounds(count: int, total: int, name: str) -> None:
    if count > MAX_PACKAGE_FILES:
        raise _problem(name, f"package has more than {MAX_PACKAGE_FILES} files")
    if total > MAX_PACKAGE_BYTES:
        raise _problem(name, f"package is larger than {MAX_PACKAGE_BYTES // (1024 * 1024)} MiB")


class _Checker:
    """Collects every problem instead of stopping at the first, so one upload shows them all."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.problems: list[PackageProblem] = []
        self._modules: dict[str, ast.Module | None] = {}

    def add(self, location: str, message: str) -> None:
        self.problems.append(PackageProblem(location, message))

    # -- manifest -------------------------------------------------------------------------

    def check(self, source: Path) -> ConfigPackage | None:
        for name in sorted(self.files):
            if name.endswith(".py"):
                self._parse(name)
        raw = self.files.get(MANIFEST_FILE)
        if raw is None:
            self.add(MANIFEST_FILE, "missing (every config package has a manifest.json at its top)")
            return None
        try:
            doc = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            self.add(MANIFEST_FILE, "not UTF-8 text")
            return None
        except json.JSONDecodeError as exc:
            self.add(MANIFEST_FILE, f"bad JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
            return None
        if not isinstance(doc, dict):
            self.add(MANIFEST_FILE, "must be a JSON object")
            return None
        known = {"schema", "title", "version", "columns", "engine", "writer", "hooks"}
        self._unknown_keys(doc, known, "")
        schema = doc.get("schema")
        if schema != MANIFEST_SCHEMA:
            self.add(f"{MANIFEST_FILE}:schema", f"must be {MANIFEST_SCHEMA!r}, got {schema!r}")
        title = self._string(doc, "title", "", required=True)
        version = self._string(doc, "version", "", required=True)
        fields = self._fields(doc.get("columns"))
        engine = self._engine(doc.get("engine", {}))
        writer = self._writer(doc.get("writer", {}))
        hooks = self._hooks(doc.get("hooks", {}))
        row_types = self._row_types()
        self._column_modules(fields)
        if self.problems:
            return None
        digest = hashlib.sha256()
        for name in sorted(self.files):
            digest.update(name.encode() + b"\0" + hashlib.sha256(self.files[name]).digest())
        return ConfigPackage(
            source=source,
            schema=MANIFEST_SCHEMA,
            title=title,
            version=version,
            fields=tuple(fields),
            engine=engine,
            writer=writer,
            hooks=tuple(hooks),
            row_types=row_types,
            files=dict(self.files),
            content_hash=digest.hexdigest(),
        )

    def _unknown_keys(self, obj: dict[str, Any], known: set[str], path: str) -> None:
        for key in obj:
            if key not in known:
                where = f"{path}.{key}" if path else key
                self.add(
                    f"{MANIFEST_FILE}:{where}", f"unknown key (expected one of {sorted(known)})"
                )

    def _string(self, obj: dict[str, Any], key: str, path: str, *, required: bool) -> str:
        where = f"{MANIFEST_FILE}:{path}{key}"
        value = obj.get(key)
        if value is None:
            if required:
                self.add(where, "missing")
            return ""
        if not isinstance(value, str) or (required and not value.strip()):
            self.add(where, "must be a non-empty string")
            return ""
        return value

    def _fields(self, columns: Any) -> list[FieldSpec]:
        where = f"{MANIFEST_FILE}:columns"
        if not isinstance(columns, dict):
            self.add(where, "missing or not an object with 'order' and 'fields'")
            return []
        self._unknown_keys(columns, {"order", "fields"}, "columns")
        order = columns.get("order")
        specs = columns.get("fields")
        if not isinstance(specs, dict) or not specs:
            self.add(f"{where}.fields", "must be a non-empty object of field name -> field")
            specs = {}
        if not isinstance(order, list) or not order:
            self.add(f"{where}.order", "must be a non-empty list of field names")
            order = []
        result: list[FieldSpec] = []
        seen: set[str] = set()
        for i, name in enumerate(order):
            at = f"{where}.order[{i}]"
            if not isinstance(name, str):
                self.add(at, "must be a field name (string)")
                continue
            if name in seen:
                self.add(at, f"field {name!r} listed twice")
                continue
            seen.add(name)
            if name not in specs:
                self.add(at, f"unknown field {name!r} (not in columns.fields)")
                continue
            spec = self._field(name, specs[name], f"{where}.fields.{name}")
            if spec is not None:
                result.append(spec)
        for name in specs:
            if name not in seen:
                self.add(f"{where}.fields.{name}", "field is missing from columns.order")
        return result

    def _field(self, name: str, spec: Any, where: str) -> FieldSpec | None:
        if not _FIELD_NAME.match(name):
            self.add(where, "field names must be Python identifiers (they name columns/<field>.py)")
            return None
        if not isinstance(spec, dict):
            self.add(where, "must be an object with at least 'label'")
            return None
        self._unknown_keys(spec, {"label", "synonyms", "required", "type"}, where.split(":", 1)[1])
        label = spec.get("label")
        if not isinstance(label, str) or not label.strip():
            self.add(f"{where}.label", "must be a non-empty string")
            label = name
        synonyms = spec.get("synonyms", [])
        if not isinstance(synonyms, list) or not all(isinstance(s, str) for s in synonyms):
            self.add(f"{where}.synonyms", "must be a list of strings")
            synonyms = []
        required = spec.get("required", False)
        if not isinstance(required, bool):
            self.add(f"{where}.required", "must be true or false")
            required = False
        ftype = spec.get("type")
        if ftype is not None and ftype not in FIELD_TYPES:
            self.add(f"{where}.type", f"must be one of {sorted(FIELD_TYPES)}")
            ftype = None
        return FieldSpec(name, label, tuple(synonyms), required, ftype)

    def _engine(self, engine: Any) -> EngineDefaults:
        where = f"{MANIFEST_FILE}:engine"
        if not isinstance(engine, dict):
            self.add(where, "must be an object")
            return EngineDefaults()
        self._unknown_keys(
            engine,
            {
                "mapping_threshold",
                "runtime_network_access",
                "sample_rows",
                "max_issues",
                "max_blank_rows_in_table",
                "unrecognised_tables",
                "fail_on_errors",
            },
            "engine",
        )
        defaults = EngineDefaults()
        threshold = engine.get("mapping_threshold", defaults.mapping_threshold)
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not math.isfinite(threshold)  # json.loads accepts NaN and Infinity
        ):
            self.add(f"{where}.mapping_threshold", "must be a number")
            threshold = defaults.mapping_threshold
        network = engine.get("runtime_network_access", False)
        if not isinstance(network, bool):
            self.add(f"{where}.runtime_network_access", "must be true or false")
            network = False
        sample = self._int(engine, "sample_rows", defaults.sample_rows, 1, 10_000, where)
        max_issues = self._int(engine, "max_issues", defaults.max_issues, 0, 100_000, where)
        max_blank = self._int(
            engine, "max_blank_rows_in_table", defaults.max_blank_rows_in_table, 0, 1000, where
        )
        unrecognised = engine.get("unrecognised_tables", defaults.unrecognised_tables)
        if unrecognised not in ("report", "write"):
            self.add(f"{where}.unrecognised_tables", 'must be "report" or "write"')
            unrecognised = defaults.unrecognised_tables
        fail_on_errors = engine.get("fail_on_errors", defaults.fail_on_errors)
        if not isinstance(fail_on_errors, bool):
            self.add(f"{where}.fail_on_errors", "must be true or false")
            fail_on_errors = defaults.fail_on_errors
        return EngineDefaults(
            float(threshold),
            network,
            sample,
            max_issues,
            max_blank,
            unrecognised,
            fail_on_errors,
        )

    def _int(
        self, obj: dict[str, Any], key: str, default: int, lo: int, hi: int, where: str
    ) -> int:
        value = obj.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.add(f"{where}.{key}", f"must be an integer from {lo} to {hi}")
            return default
        return value

    def _writer(self, writer: Any) -> WriterOptions:
        where = f"{MANIFEST_FILE}:writer"
        if not isinstance(writer, dict):
            self.add(where, "must be an object")
            return WriterOptions()
        self._unknown_keys(writer, {"sheet_name", "append_unmapped", "unmapped_prefix"}, "writer")
        defaults = WriterOptions()
        sheet = writer.get("sheet_name", defaults.sheet_name)
        if (
            not isinstance(sheet, str)
            or not sheet.strip()
            or len(sheet) > 31
            or _SHEET_NAME_FORBIDDEN.search(sheet)
        ):
            self.add(
                f"{where}.sheet_name",
                "must be 1-31 characters without any of [ ] : * ? / \\ (an Excel sheet name)",
            )
            sheet = defaults.sheet_name
        append = writer.get("append_unmapped", defaults.append_unmapped)
        if not isinstance(append, bool):
            self.add(f"{where}.append_unmapped", "must be true or false")
            append = defaults.append_unmapped
        prefix = writer.get("unmapped_prefix", defaults.unmapped_prefix)
        if not isinstance(prefix, str):
            self.add(f"{where}.unmapped_prefix", "must be a string")
            prefix = defaults.unmapped_prefix
        return WriterOptions(sheet, append, prefix)

    def _hooks(self, hooks: Any) -> list[HookRef]:
        where = f"{MANIFEST_FILE}:hooks"
        if not isinstance(hooks, dict):
            self.add(
                where, "must be an object of hook name -> list of 'hooks/<file>.py[:function]'"
            )
            return []
        self._unknown_keys(hooks, set(HOOK_NAMES), "hooks")
        result: list[HookRef] = []
        for hook in HOOK_NAMES:
            entries = hooks.get(hook, [])
            if isinstance(entries, str):
                entries = [entries]
            if not isinstance(entries, list):
                self.add(f"{where}.{hook}", "must be a list of 'hooks/<file>.py[:function]'")
                continue
            for i, entry in enumerate(entries):
                at = f"{where}.{hook}[{i}]"
                if not isinstance(entry, str) or not entry.strip():
                    self.add(at, "must be a string 'hooks/<file>.py[:function]'")
                    continue
                file, _, function = entry.partition(":")
                function = function or hook
                if not file.endswith(".py"):
                    self.add(at, f"{file!r} is not a .py file")
                    continue
                if file not in self.files:
                    self.add(at, f"{file} does not exist in the package")
                    continue
                tree = self._modules.get(file)
                if tree is not None:
                    self._callable(file, tree, function, HOOK_ARGS[hook], required=True)
                result.append(HookRef(hook, file, function))
        return result

    # -- python files -----------------------------------------------------------------------

    def _parse(self, name: str) -> None:
        try:
            text = self.files[name].decode("utf-8")
        except UnicodeDecodeError:
            self.add(name, "not UTF-8 text")
            self._modules[name] = None
            return
        try:
            self._modules[name] = ast.parse(text, filename=name)
        except SyntaxError as exc:
            self.add(f"{name} line {exc.lineno}", f"syntax error: {exc.msg}")
            self._modules[name] = None

    def _row_types(self) -> tuple[str, ...]:
        names: list[str] = []
        for required in ("row_types/header.py", "row_types/data.py"):
            if required not in self.files:
                self.add(required, "missing (every package votes on header and data rows)")
        for name in sorted(self.files):
            path = PurePosixPath(name)
            if path.parent.as_posix() != "row_types" or path.suffix != ".py":
                continue
            if path.stem.startswith("_"):
                continue
            names.append(path.stem)
            tree = self._modules.get(name)
            if tree is not None:
                self._detectors(name, tree, ROW_DETECTOR_ARGS)
        # header and data first: they are the types the table finder understands.
        ordered = [n for n in ("header", "data") if n in names]
        return tuple(ordered + [n for n in names if n not in ("header", "data")])

    def _column_modules(self, fields: list[FieldSpec]) -> None:
        wanted = {f.name for f in fields}
        for field in fields:
            name = f"columns/{field.name}.py"
            if name not in self.files:
                self.add(name, f"missing (field {field.name!r} needs its detectors)")
                continue
            tree = self._modules.get(name)
            if tree is None:
                continue
            self._detectors(name, tree, COLUMN_DETECTOR_ARGS)
            for optional, args in (
                ("profile", PROFILE_ARGS),
                ("transform", TRANSFORM_ARGS),
                ("validate", VALIDATE_ARGS),
            ):
                self._callable(name, tree, optional, args, required=False)
        for name in sorted(self.files):
            path = PurePosixPath(name)
            if path.parent.as_posix() == "columns" and path.suffix == ".py":
                if not path.stem.startswith("_") and path.stem not in wanted:
                    self.add(
                        name,
                        f"no field named {path.stem!r} in manifest.json columns.fields "
                        "(helpers must start with '_')",
                    )

    def _detectors(self, name: str, tree: ast.Module, allowed: frozenset[str]) -> None:
        found = [n for n in _top_level_names(tree) if n.startswith("detect_")]
        if not found:
            self.add(name, "defines no detect_* function")
        for fn in found:
            self._callable(name, tree, fn, allowed, required=True)

    def _callable(
        self, file: str, tree: ast.Module, function: str, allowed: frozenset[str], *, required: bool
    ) -> None:
        binding = _top_level_names(tree).get(function)
        where = f"{file}:{function}"
        if binding is None:
            if required:
                self.add(where, "no such function")
            return
        if isinstance(binding, ast.AsyncFunctionDef):
            self.add(where, "must be a plain function (async def is not supported)")
            return
        if isinstance(binding, ast.FunctionDef):
            self._signature(where, binding.args, allowed)
            return
        if isinstance(binding, ast.ClassDef):
            return  # a class is callable; its signature is checked at import time
        value = binding.value if isinstance(binding, ast.Assign | ast.AnnAssign) else None
        if isinstance(value, ast.Constant | ast.List | ast.Dict | ast.Tuple | ast.Set):
            kind = type(value.value).__name__ if isinstance(value, ast.Constant) else "literal"
            self.add(where, f"is not callable (bound to a {kind} value)")

    def _signature(self, where: str, args: ast.arguments, allowed: frozenset[str]) -> None:
        if args.posonlyargs:
            self.add(where, "positional-only parameters are not supported (ADE passes keywords)")
        padded = [None] * (len(args.args) - len(args.defaults)) + list(args.defaults)
        params = list(zip(args.args, padded, strict=True))
        params += list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
        for arg, default in params:
            if arg.arg not in allowed and default is None:
                self.add(
                    where,
                    f"parameter {arg.arg!r} is not provided by ADE "
                    f"(available: {', '.join(sorted(allowed))})",
                )


def _top_level_names(tree: ast.Module) -> dict[str, ast.stmt]:
    """The last top-level binding of each name, the way Python would resolve it."""
    names: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, ast.ImportFrom | ast.Import):
            for alias in node.names:
                names[(alias.asname or alias.name).split(".")[0]] = node
    return names
