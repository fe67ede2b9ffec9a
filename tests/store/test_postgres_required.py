"""Without a reachable PostgreSQL the PostgreSQL tests FAIL with instructions, never skip: the
check .ci/run runs first (tests/support/postgres.py) and the fixture every such test uses
(tests/conftest.py). A green run therefore always covered both stores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Port 9 (discard): nothing speaks PostgreSQL there.
UNREACHABLE = "postgresql://postgres@127.0.0.1:9/postgres"
INSTRUCTIONS = (
    "The PostgreSQL tests need a server: ADE_TEST_POSTGRES_URL (default "
    "postgresql://postgres@127.0.0.1:5432/postgres) could not be reached.\n"
    "Start one, e.g.:\n"
)


def run_without_postgres(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env={**os.environ, "ADE_TEST_POSTGRES_URL": UNREACHABLE},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_ci_check_fails_and_says_how_to_start_a_server() -> None:
    check = run_without_postgres("tests/support/postgres.py")
    assert check.returncode == 1
    assert check.stdout == ""
    assert check.stderr.startswith(INSTRUCTIONS)
    assert "docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:15" in (
        check.stderr
    )
    assert "(the error was: " in check.stderr


def test_a_test_that_needs_postgres_fails_instead_of_skipping(tmp_path: Path) -> None:
    # One contract test, both parameters: SQLite passes; PostgreSQL's fixture fails (an error,
    # which fails the run like a failed test) with the instructions.
    result = run_without_postgres(
        "-m",
        "pytest",
        "tests/store/test_store.py::test_job_round_trips_every_field",
        "-p",
        "no:cacheprovider",
        f"--basetemp={tmp_path / 'inner'}",
    )
    assert result.returncode == 1, result.stdout
    assert " 1 passed, 1 error in " in result.stdout.rstrip().splitlines()[-1]
    assert "ERROR tests/store/test_store.py::test_job_round_trips_every_field[postgresql]" in (
        result.stdout
    )
    assert INSTRUCTIONS in result.stdout
    assert "skip" not in result.stdout.lower()
