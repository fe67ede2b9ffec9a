"""The server under test as the clients see it: its URL and whether a chaos kill has it down.

Why outage windows: after a SIGKILL every request in flight fails and new ones cannot connect.
Those failures are the experiment, not a defect, so the harness records them apart and makes the
client wait until the restarted server answers, then repeat the request.
"""

from __future__ import annotations

import time

import trio

__all__ = ["Target"]


class Target:
    def __init__(self, base_url: str | list[str], workspace: str) -> None:
        # Several URLs (a cluster's nodes): requests take them in turn.
        self._urls = [base_url] if isinstance(base_url, str) else list(base_url)
        self._turn = 0
        self.workspace = workspace
        self._up = trio.Event()
        self._up.set()
        # (start, end) in time.monotonic(); end is None while the server is down.
        self.outages: list[tuple[float, float | None]] = []

    @property
    def base_url(self) -> str:
        url = self._urls[self._turn % len(self._urls)].rstrip("/")
        self._turn += 1
        return url

    @property
    def api(self) -> str:
        """Prefix of every workspace route."""
        return f"{self.base_url}/api/v1/workspaces/{self.workspace}"

    @property
    def ws_api(self) -> str:
        return "ws" + self.api.removeprefix("http")

    @property
    def health_url(self) -> str:
        return f"{self.base_url}/api/v1/health"

    @property
    def is_up(self) -> bool:
        return self._up.is_set()

    def mark_down(self) -> None:
        """Call *before* killing the server, so every failure from then on counts as outage."""
        if self._up.is_set():
            self._up = trio.Event()
            self.outages.append((time.monotonic(), None))

    def mark_up(self, base_url: str | list[str]) -> None:
        """The server answers again at ``base_url`` (or the cluster at these nodes' URLs)."""
        self._urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if self.outages and self.outages[-1][1] is None:
            start, _ = self.outages[-1]
            self.outages[-1] = (start, time.monotonic())
        self._up.set()

    async def wait_up(self) -> None:
        await self._up.wait()

    def overlaps_outage(self, started: float, ended: float) -> bool:
        for start, end in self.outages:
            if started <= (end if end is not None else float("inf")) and ended >= start:
                return True
        return False
