"""The schema-history decision shared by every store: which migrations to apply, or why not.

Pure: the applied history (version -> name) and the code's migration list in, the migrations to
apply out. Each store runs the result inside one transaction of its own dialect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ade.errors import SchemaError
from ade.store.migrations import Migration

__all__ = ["SchemaError", "pending_migrations"]


def pending_migrations(
    applied: Mapping[int, str], migrations: Sequence[Migration], *, where: str = "database"
) -> list[Migration]:
    """The entries of ``migrations`` not yet in ``applied``, in order.

    Refuses a list that is out of order, a history that names a migration differently (an
    edited entry) and a history newer than this code (a downgrade), naming the version.
    """
    for position, migration in enumerate(migrations, start=1):
        if migration.version != position:
            raise SchemaError(
                f"migration list is out of order: entry {position} has version {migration.version}"
            )
    known = {m.version: m.name for m in migrations}
    for version, name in sorted(applied.items()):
        if version not in known:
            raise SchemaError(
                f"{where} schema version {version} ({name!r}) is newer than this ADE "
                f"(which knows up to version {len(migrations)}); upgrade ADE on this node, "
                "or point it at another database",
                {"database_version": max(applied), "code_version": len(migrations)},
            )
        if known[version] != name:
            raise SchemaError(
                f"{where} migration {version} is {name!r} but this ADE calls it "
                f"{known[version]!r}; migrations must never be edited, only appended"
            )
    return [m for m in migrations if m.version not in applied]
