"""Concurrent callers of one probe share a single run of it.

Why: ``GET /health`` pings the store through a worker thread. A thousand clients checking
health at once (a load balancer fleet, or an attacker's thousand keep-alive connections) made a
thousand thread jobs, and every other request's store access queued behind them. With this,
the callers that arrive while a ping is in flight wait for that ping's answer instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import trio

__all__ = ["SingleFlight"]

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self, probe: Callable[[], Awaitable[T]]) -> None:
        self._probe = probe
        self._done: trio.Event | None = None
        self._result: T | None = None

    async def __call__(self) -> T:
        if self._done is not None:
            done = self._done
            await done.wait()
            return self._result  # type: ignore[return-value]
        done = self._done = trio.Event()
        try:
            # Shielded: a caller that hangs up must not leave the others waiting on an event
            # nobody sets. The probe bounds its own time.
            with trio.CancelScope(shield=True):
                self._result = await self._probe()
        finally:
            self._done = None
            done.set()
        return self._result
