"""Importing a config package's code and calling it.

The package's files are written to a private folder and imported under a unique synthetic
package name, so relative imports between config modules work and two runs in one process
never share modules. Every call goes through :class:`ConfigFunction`, which passes only the
keyword arguments the function declares and turns any exception into
:class:`ade.errors.ConfigCodeError` naming the file, function and pass: the exception *text*
may quote cell values, so only its type reaches the message; the traceback travels on the
exception (``.traceback``) and as its ``__cause__``, so any traceback printer (the worker's
stderr diagnostics) shows where in the config code it happened.
"""

from __future__ import annotations

import errno
import importlib
import importlib.machinery
import importlib.util
import inspect
import itertools
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from ade.configs.package import (
    COLUMN_DETECTOR_ARGS,
    HOOK_ARGS,
    PROFILE_ARGS,
    ROW_DETECTOR_ARGS,
    TRANSFORM_ARGS,
    VALIDATE_ARGS,
    ConfigPackage,
)
from ade.errors import ConfigCodeError, PackageInvalid, PackageProblem

__all__ = ["ConfigFunction", "LoadedConfig", "config_error", "contract_error", "load_code"]

_counter = itertools.count(1)


def config_error(file: str, function: str, pass_name: str, exc: BaseException) -> ConfigCodeError:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return ConfigCodeError(file, function, pass_name, type(exc).__name__, tb)


def contract_error(file: str, function: str, pass_name: str, what: str) -> ConfigCodeError:
    """Config code returned something ADE cannot use: reported like an exception it raised."""
    return ConfigCodeError(file, function, pass_name, "TypeError", f"TypeError: {what}\n")


class ConfigFunction:
    """One config function with its calling plan (which keyword arguments it declares)."""

    __slots__ = ("file", "fn", "function", "invoke", "names", "rule", "takes_all")

    def __init__(self, file: str, function: str, fn: Callable[..., Any], allowed: frozenset[str]):
        self.fn = fn
        self.file = file
        self.function = function
        self.rule = f"{file}:{function}"
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError) as exc:
            raise _invalid(self.rule, "has no inspectable signature") from exc
        self.takes_all = False
        names: list[str] = []
        for param in signature.parameters.values():
            if param.kind is param.VAR_KEYWORD:
                self.takes_all = True
            elif param.kind is param.POSITIONAL_ONLY:
                raise _invalid(self.rule, "positional-only parameters are not supported")
            elif param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                if param.name in allowed:
                    names.append(param.name)
                elif param.default is param.empty:
                    raise _invalid(
                        self.rule,
                        f"parameter {param.name!r} is not provided by ADE "
                        f"(available: {', '.join(sorted(allowed))})",
                    )
        self.names = tuple(allowed) if self.takes_all else tuple(names)
        self.invoke = _invoker(fn, self.names)

    def call(self, pass_name: str, available: Mapping[str, Any]) -> Any:
        try:
            return self.invoke(available)
        except (Exception, SystemExit) as exc:
            raise config_error(self.file, self.function, pass_name, exc) from exc


def _invoker(fn: Callable[..., Any], names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], Any]:
    """``lambda a: fn(x=a["x"], y=a["y"])`` for exactly the declared names. Row detectors run
    once per row per detector: spelling the call out saves building a kwargs dict each time.
    ``names`` are always drawn from ADE's own argument vocabularies (never from config code),
    so the generated source is fixed text."""
    arguments = ", ".join(f"{name}=a[{name!r}]" for name in names)
    namespace: dict[str, Any] = {"fn": fn}
    exec(f"def invoke(a):\n    return fn({arguments})\n", namespace)
    return namespace["invoke"]


def _invalid(location: str, message: str) -> PackageInvalid:
    return PackageInvalid([PackageProblem(location, message)])


class LoadedConfig:
    """The imported functions of a package, grouped the way the passes use them."""

    def __init__(
        self,
        row_detectors: dict[str, list[ConfigFunction]],
        column_detectors: dict[str, list[ConfigFunction]],
        profiles: dict[str, ConfigFunction],
        transforms: dict[str, ConfigFunction],
        validators: dict[str, ConfigFunction],
        hooks: dict[str, list[ConfigFunction]],
    ) -> None:
        self.row_detectors = row_detectors
        self.column_detectors = column_detectors
        self.profiles = profiles
        self.transforms = transforms
        self.validators = validators
        self.hooks = hooks


@contextmanager
def load_code(package: ConfigPackage, folder: Path) -> Iterator[LoadedConfig]:
    """Write the package into ``folder``, import it and yield its functions; the modules are
    removed from ``sys.modules`` afterwards. Import failures raise :class:`PackageInvalid`."""
    for name, data in package.files.items():
        target = folder.joinpath(*PurePosixPath(name).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    root_name = f"_ade_config_{next(_counter)}"
    spec = importlib.machinery.ModuleSpec(root_name, None, is_package=True)
    spec.submodule_search_locations = [str(folder)]
    root = importlib.util.module_from_spec(spec)
    sys.modules[root_name] = root
    saved_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # the snapshot is read-only; no __pycache__ next to it
    try:
        modules: dict[str, Any] = {}
        problems: list[PackageProblem] = []
        for name in sorted(package.files):
            if not name.endswith(".py"):
                continue
            parts = PurePosixPath(name).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]  # a package: importing it runs its __init__.py once
                if not parts:
                    continue
            dotted = ".".join(parts)
            try:
                modules[name] = importlib.import_module(f"{root_name}.{dotted}")
            except SyntaxError as exc:
                problems.append(
                    PackageProblem(f"{name} line {exc.lineno}", f"syntax error: {exc.msg}")
                )
            except (Exception, SystemExit) as exc:
                if isinstance(exc, MemoryError) or (
                    isinstance(exc, OSError) and exc.errno == errno.EFBIG
                ):
                    # A sandbox limit fired while the module ran: the job ends with that
                    # limit's message (as it would at run time), not as a package problem.
                    raise
                line = _failing_line(exc, name)
                problems.append(
                    PackageProblem(f"{name}{line}", f"importing it raised {type(exc).__name__}")
                )
        if problems:
            raise PackageInvalid(problems)
        yield _collect(package, modules)
    finally:
        sys.dont_write_bytecode = saved_bytecode
        for module_name in [
            m for m in sys.modules if m == root_name or m.startswith(root_name + ".")
        ]:
            del sys.modules[module_name]


def _failing_line(exc: BaseException, name: str) -> str:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.replace("\\", "/").endswith(name):
            return f" line {frame.lineno}"
    return ""


def _collect(package: ConfigPackage, modules: dict[str, Any]) -> LoadedConfig:
    problems: list[PackageProblem] = []

    def functions(name: str, allowed: frozenset[str], prefix: str) -> list[ConfigFunction]:
        module = modules[name]
        found = []
        for attr in sorted(vars(module)):
            if attr.startswith(prefix):
                fn = getattr(module, attr)
                if not callable(fn):
                    problems.append(PackageProblem(f"{name}:{attr}", "is not callable"))
                    continue
                try:
                    found.append(ConfigFunction(name, attr, fn, allowed))
                except PackageInvalid as exc:
                    problems.extend(exc.problems)
        return found

    def optional(name: str, attr: str, allowed: frozenset[str]) -> ConfigFunction | None:
        fn = getattr(modules[name], attr, None)
        if fn is None:
            return None
        if not callable(fn):
            problems.append(PackageProblem(f"{name}:{attr}", "is not callable"))
            return None
        try:
            return ConfigFunction(name, attr, fn, allowed)
        except PackageInvalid as exc:
            problems.extend(exc.problems)
            return None

    row_detectors = {
        row_type: functions(f"row_types/{row_type}.py", ROW_DETECTOR_ARGS, "detect_")
        for row_type in package.row_types
    }
    column_detectors: dict[str, list[ConfigFunction]] = {}
    profiles: dict[str, ConfigFunction] = {}
    transforms: dict[str, ConfigFunction] = {}
    validators: dict[str, ConfigFunction] = {}
    for field in package.fields:
        file = f"columns/{field.name}.py"
        column_detectors[field.name] = functions(file, COLUMN_DETECTOR_ARGS, "detect_")
        if (fn := optional(file, "profile", PROFILE_ARGS)) is not None:
            profiles[field.name] = fn
        if (fn := optional(file, "transform", TRANSFORM_ARGS)) is not None:
            transforms[field.name] = fn
        if (fn := optional(file, "validate", VALIDATE_ARGS)) is not None:
            validators[field.name] = fn
    hooks: dict[str, list[ConfigFunction]] = {}
    for ref in package.hooks:
        fn_obj = getattr(modules[ref.file], ref.function, None)
        if fn_obj is None:
            problems.append(PackageProblem(ref.rule, "no such function"))
        elif not callable(fn_obj):
            problems.append(PackageProblem(ref.rule, "is not callable"))
        else:
            try:
                hooks.setdefault(ref.hook, []).append(
                    ConfigFunction(ref.file, ref.function, fn_obj, HOOK_ARGS[ref.hook])
                )
            except PackageInvalid as exc:
                problems.extend(exc.problems)
    for kind, groups in (("row_types", row_detectors), ("columns", column_detectors)):
        for key, fns in groups.items():
            if not fns and not any(p.location.startswith(f"{kind}/{key}.py") for p in problems):
                problems.append(PackageProblem(f"{kind}/{key}.py", "defines no detect_* function"))
    if problems:
        raise PackageInvalid(problems)
    return LoadedConfig(row_detectors, column_detectors, profiles, transforms, validators, hooks)
