"""PostgreSQL for the tests: a fresh database per test session, dropped at the end.

The server is ``ADE_TEST_POSTGRES_URL`` (default: the machine's own server, trust auth as user
``postgres`` on 127.0.0.1:5432). A test that needs PostgreSQL and cannot reach it FAILS with a
message saying how to start one; it never skips, so a green run always covered both stores.
Run ``python tests/support/postgres.py`` for the same check alone (``.ci/run`` does, first).
"""

from __future__ import annotations

import os
import secrets
import sys
import urllib.parse

import psycopg
import psycopg.conninfo
from psycopg import sql

__all__ = [
    "ADMIN_URL",
    "create_database",
    "database_url",
    "drop_database",
    "require_postgres",
    "truncate_all",
]

ADMIN_URL = os.environ.get("ADE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

HOW_TO_START = (
    "The PostgreSQL tests need a server: ADE_TEST_POSTGRES_URL (default "
    "postgresql://postgres@127.0.0.1:5432/postgres) could not be reached.\n"
    "Start one, e.g.:\n"
    "  Debian/Ubuntu: sudo apt-get install -y postgresql && sudo pg_ctlcluster 15 main start\n"
    "                 (trust auth for 127.0.0.1 in /etc/postgresql/15/main/pg_hba.conf)\n"
    "  Docker:        docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:15\n"
    "or point ADE_TEST_POSTGRES_URL at a server where the user may CREATE DATABASE."
)


def require_postgres() -> None:
    """Raise RuntimeError with :data:`HOW_TO_START` unless the server answers."""
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        raise RuntimeError(f"{HOW_TO_START}\n(the error was: {str(exc).strip()})") from None


def database_url(name: str) -> str:
    """The admin URL pointed at database ``name`` (a URL, as ADE_DATABASE_URL must be)."""
    return urllib.parse.urlsplit(ADMIN_URL)._replace(path=f"/{name}").geturl()


def create_database(prefix: str = "ade_test") -> str:
    """A new, empty database with a unique name; returns its URL."""
    require_postgres()
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(name)


def drop_database(url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name)))
        )


def truncate_all(url: str) -> None:
    """Empty every ADE table (the schema history stays), so tests share one database."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename NOT IN ('schema_migrations', 'job_totals')"
            ).fetchall()
        ]
        if tables:
            conn.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in tables)
                )
            )
            # TRUNCATE fires no row trigger: the per-status totals are reset by hand.
            conn.execute("UPDATE job_totals SET count = 0")
        if "workspaces" in tables:
            # As the migration left it: `default` exists from the first start.
            conn.execute("INSERT INTO workspaces (id, created_at) VALUES ('default', now())")


if __name__ == "__main__":
    try:
        require_postgres()
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
    print(f"PostgreSQL answers at {psycopg.conninfo.conninfo_to_dict(ADMIN_URL).get('host')}")
