"""A real `ade serve` process and Debian's Chromium driven by Playwright (its own browser
downloads are not used: `executable_path` points at the system binary)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

CHROMIUM = os.environ.get("ADE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BIN = Path(sys.executable).parent


@attrs.frozen
class Server:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def api(self) -> str:
        return f"{self.url}/api/v1/workspaces/default"


def _start(tmp: Path, **env: str) -> Server:
    data = tmp / "data"
    log = open(tmp / "serve.log", "wb")
    process = subprocess.Popen(
        [str(BIN / "ade"), "serve", "--data-dir", str(data), "--port", "0", "--no-sample"],
        stdout=subprocess.PIPE,
        stderr=log,
        env={**os.environ, "ADE_HOST": "127.0.0.1", **env},
    )
    log.close()
    assert process.stdout is not None
    seen = b""
    while b"ADE serving on " not in seen:
        line = process.stdout.readline()
        if not line:
            process.wait(10)
            raise AssertionError(f"ade serve did not start: {(tmp / 'serve.log').read_text()}")
        seen += line
    url = re.search(rb"ADE serving on (http://\S+)", seen)
    assert url is not None
    return Server(url.group(1).decode(), data, process)


def _stop(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(30)
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        assert server.process.stdout is not None
        server.process.stdout.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One worker and a queue of one (so a 429 is easy to provoke), uploads capped at 1 MiB."""
    running = _start(
        tmp_path_factory.mktemp("web"),
        ADE_MAX_CONCURRENCY="1",
        ADE_QUEUE_SIZE="1",
        ADE_MAX_UPLOAD_MB="1",
        ADE_SHUTDOWN_GRACE_SECONDS="5",
    )
    yield running
    _stop(running)


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
