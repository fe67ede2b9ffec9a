"""A real ``ade serve`` subprocess on loopback, owned by the harness.

Why a subprocess and not the app in-process: the harness must be able to SIGKILL the server
(chaos) and to prove that no worker survives it, which only a separate process can show.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import trio

__all__ = ["LOOPBACK", "ServerProcess", "ServerStartError", "free_port", "worker_processes"]

LOOPBACK = "127.0.0.1"

# Start `ade serve` through the CLI entry point with the harness's own interpreter, so the
# server runs the code of this checkout whatever is on PATH.
_SERVE_ARGV = ("-c", "import sys; from ade.cli import main; sys.exit(main())", "serve")


class ServerStartError(RuntimeError):
    """`ade serve` exited or never answered /api/v1/health; the message quotes its log tail."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the kernel picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def worker_processes(data_dir: Path) -> list[tuple[int, str]]:
    """(pid, cmdline) of every live process whose command line names ``ade.worker`` and that
    belongs to ``data_dir`` (the path in its command line, or its working directory inside it:
    a worker runs in its job directory) — this server's workers, not anyone else's."""
    root = str(data_dir.resolve())
    found: list[tuple[int, str]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # exited while we looked
        if state == "Z":
            continue  # a zombie runs nothing; its parent has not reaped it yet
        cmdline = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        if "ade.worker" not in cmdline:
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            cwd = ""
        if root in cmdline or cwd == root or cwd.startswith(root + os.sep):
            found.append((int(entry.name), cmdline))
    return found


class ServerProcess:
    """Start, kill and restart one ``ade serve`` on a fixed data directory."""

    def __init__(
        self,
        data_dir: Path,
        log_dir: Path,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        start_timeout: float = 60.0,
        args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.extra_env = dict(env)
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.args = args  # extra `ade serve` arguments (--workers 0, --no-sample)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.last_ready_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"serve-{self.starts}.log"

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.extra_env)
        env["ADE_DATA_DIR"] = str(self.data_dir)
        env["ADE_HOST"] = LOOPBACK
        env["ADE_PORT"] = str(self.port)
        # Unbuffered, so the log tail quoted in a ServerStartError is what the server last said.
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    async def start(self) -> float:
        """Spawn the server and wait until /api/v1/health answers 200; returns seconds taken."""
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        begin = time.monotonic()
        with self.log_path.open("wb") as log:
            # Popen (not trio.open_process): the harness kills and reaps it explicitly and it
            # must outlive any one nursery of client tasks.
            self.process = subprocess.Popen(
                [sys.executable, *_SERVE_ARGV, *self.args],
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = begin + self.start_timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise ServerStartError(
                        f"ade serve exited with status {self.process.returncode} before it "
                        f"answered /api/v1/health; log {self.log_path}:\n{self.log_tail()}"
                    )
                try:
                    response = await client.get(f"{self.url}/api/v1/health")
                    if response.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise ServerStartError(
                        f"ade serve did not answer /api/v1/health within {self.start_timeout:.0f}"
                        f" s; log {self.log_path}:\n{self.log_tail()}"
                    )
                await trio.sleep(0.05)
        self.last_ready_seconds = time.monotonic() - begin
        return self.last_ready_seconds

    def kill(self) -> None:
        """SIGKILL the server process only (not its group): a crash, as chaos means it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    async def stop(self, timeout: float = 60.0) -> int | None:
        """Graceful SIGTERM; SIGKILL if it does not exit within ``timeout``. Returns the exit
        status (0 after a graceful shutdown; -9 when it had to be killed)."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while process.poll() is None and time.monotonic() < deadline:
                await trio.sleep(0.05)
            if process.poll() is None:
                process.kill()
                process.wait()
        return process.returncode
