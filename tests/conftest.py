"""Suite-wide guarantees that no single test module can give.

The leak check: every job process ADE starts runs with its job directory (under this session's
pytest temp tree) as cwd or on its command line. When the session ends, none may be left — a
surviving worker, grandchild or setsid daemon is a defect of the code under test, not noise.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import trio

# The one support package (tests/support) importable from every test folder.
sys.path.insert(0, str(Path(__file__).parent))

from support.api import Service, make_settings, start_service


def _processes_under(root: str) -> list[tuple[int, str]]:
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                cwd = ""
            with open(f"/proc/{entry}/stat", "rb") as handle:
                state = handle.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue  # gone while we looked
        if state == b"Z":
            continue  # already dead, waiting for its parent to reap it
        if cwd.startswith(root) or root in cmdline:
            found.append((int(entry), cmdline[:200]))
    return found


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    root = str(tmp_path_factory.getbasetemp())
    yield
    leftovers = _processes_under(root)
    for pid, _ in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    assert not leftovers, f"processes outlived the test suite: {leftovers}"


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """One fresh PostgreSQL database for the session (migrated by the first store opened on
    it), dropped at the end. Fails (never skips) when no server is reachable."""
    from support.postgres import create_database, drop_database, require_postgres

    try:
        require_postgres()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """The session database, emptied of rows for this test."""
    from support.postgres import truncate_all

    truncate_all(postgres_database)
    return postgres_database


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    """ADE (runtime + API) on a free loopback port, inside the test's trio run."""
    async with trio.open_nursery() as nursery:
        svc = await start_service(nursery, make_settings(tmp_path / "data"))
        yield svc
        svc.stop.set()


@pytest.fixture
async def client(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
        yield http
