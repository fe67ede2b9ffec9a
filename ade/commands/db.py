"""``ade db migrate``: apply the store's pending schema migrations and say what was done.

``ade serve`` applies pending migrations itself at start-up (and refuses a database newer than
its code); this command lets an operator upgrade the schema ahead of a rolling restart of a
cluster's nodes, or check which version a database is at, without starting a node.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ade.commands._settings import command_settings
from ade.errors import AdeError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("db", help="the store's schema (SQLite or PostgreSQL)")
    actions = parser.add_subparsers(dest="db_action", required=True, metavar="ACTION")
    migrate = actions.add_parser(
        "migrate",
        help="apply pending schema migrations",
        description="Apply pending migrations to the store ADE_DATABASE_URL names (PostgreSQL) "
        "or, when it is unset, to ADE_DATA_DIR/ade.sqlite. Exit 2 if the database is newer "
        "than this ADE or cannot be reached.",
    )
    migrate.set_defaults(handler=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    del args
    settings = command_settings("ade db migrate")
    if settings is None:
        return 2
    try:
        if settings.database_url is not None:
            where, applied, version = _migrate_postgres(settings.database_url)
        else:
            where, applied, version = _migrate_sqlite(settings.db_path)
    except AdeError as exc:
        print(f"ade db migrate: {exc.message}", file=sys.stderr)
        return 2
    if applied:
        listed = ", ".join(str(v) for v in applied)
        print(f"{where}: applied migration(s) {listed}; schema is at version {version}")
    else:
        print(f"{where}: schema is up to date (version {version})")
    return 0


def _migrate_postgres(url: str) -> tuple[str, list[int], int]:
    from ade.store.postgres import connect, describe_url, migrate_postgres, schema_version

    with connect(url) as conn:
        applied = migrate_postgres(conn)
        version = schema_version(conn)
    return f"PostgreSQL {describe_url(url)}", applied, version


def _migrate_sqlite(path: Any) -> tuple[str, list[int], int]:
    import sqlite3

    from ade.store.sqlite import migrate

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        applied = migrate(conn)
        version = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    finally:
        conn.close()
    return f"SQLite {path}", applied, int(version[0])
