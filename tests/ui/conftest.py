"""Fixtures of the browser tests: a real `ade serve` process and Debian's Chromium driven by
Playwright (its own browser downloads are not used: `executable_path` points at the system
binary)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.browser import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    HISTORY_WORKSPACE,
    Server,
    ensure_workspace,
    seed_history,
    start_server,
    stop_server,
)


@pytest.fixture(scope="module")
def history(server: Server) -> list[str]:
    return server.history


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One worker and a queue of one (so a 429 is easy to provoke), uploads capped at 1 MiB."""
    import trio

    tmp = tmp_path_factory.mktemp("web")
    history = trio.run(seed_history, tmp / "data")
    running = start_server(
        tmp,
        history,
        ADE_MAX_CONCURRENCY="1",
        ADE_QUEUE_SIZE="1",
        ADE_MAX_UPLOAD_MB="1",
        ADE_SHUTDOWN_GRACE_SECONDS="5",
    )
    try:
        ensure_workspace(running, HISTORY_WORKSPACE)
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        message = (
            f"{CHROMIUM} is missing: `apt-get install chromium` (./scripts/test installs it "
            "when it runs as root)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()
