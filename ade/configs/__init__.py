"""Config packages: load and statically validate a folder or .zip (never executes its code).

``ade.configs.prepare`` (frozen snapshots + venvs) builds on :func:`load_package`.
"""

from ade.configs.package import (
    HOOK_NAMES,
    MANIFEST_SCHEMA,
    ConfigPackage,
    EngineDefaults,
    FieldSpec,
    HookRef,
    WriterOptions,
    load_package,
)

__all__ = [
    "HOOK_NAMES",
    "MANIFEST_SCHEMA",
    "ConfigPackage",
    "EngineDefaults",
    "FieldSpec",
    "HookRef",
    "WriterOptions",
    "load_package",
]
