"""LISTEN on PostgreSQL channels from a trio program, without an asyncio bridge.

A dedicated autocommit connection (not from the pool: it is busy listening all the time) waits
for notifications in a worker thread, in slices of :data:`_WAIT_SLICE_SECONDS` so it notices
promptly when it should stop. Each notification is handed to the trio side with
``trio.from_thread.run_sync`` into a bounded channel; if that channel is full the notification
is dropped and counted. That is safe because every consumer treats notifications as hints and
has a slow poll behind it (claiming, cancel requests, event relay, waiting for a job's end).

A broken connection (the server restarted, a network cut) is reconnected with a back-off; the
notifications sent meanwhile are lost, which the same polls cover.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import attrs
import psycopg
import trio
from psycopg import sql

from ade.errors import StoreUnavailable
from ade.store.postgres import connect

__all__ = ["Listener", "Notification"]

logger = logging.getLogger(__name__)

_WAIT_SLICE_SECONDS = 0.5
_RECONNECT_SECONDS = 1.0


@attrs.frozen
class Notification:
    channel: str
    payload: str


class Listener:
    """Receives notifications of ``channels`` into :attr:`receive` while :meth:`run` runs."""

    def __init__(self, url: str, channels: Sequence[str], *, buffer: int = 1024) -> None:
        self._url = url
        self._channels = tuple(channels)
        self._send, self.receive = trio.open_memory_channel[Notification](buffer)
        self._stop = threading.Event()
        self.dropped = 0
        self.listening = trio.Event()

    async def run(self) -> None:
        """Listen until cancelled; the worker thread stops within one wait slice."""
        token = trio.lowlevel.current_trio_token()
        try:
            await trio.to_thread.run_sync(self._loop, token, abandon_on_cancel=True)
        finally:
            self._stop.set()

    def _deliver(self, notification: Notification) -> None:
        try:
            self._send.send_nowait(notification)
        except trio.WouldBlock:
            self.dropped += 1

    def _loop(self, token: trio.lowlevel.TrioToken) -> None:
        while not self._stop.is_set():
            try:
                conn = connect(self._url, autocommit=True)
            except StoreUnavailable as exc:
                logger.warning("cannot LISTEN for notifications: %s", exc.message)
                self._stop.wait(_RECONNECT_SECONDS)
                continue
            try:
                self._listen(conn, token)
            except psycopg.OperationalError as exc:
                logger.warning("the notification connection broke (%s); reconnecting", exc)
                self._stop.wait(_RECONNECT_SECONDS)
            finally:
                conn.close()

    def _listen(self, conn: psycopg.Connection[Any], token: trio.lowlevel.TrioToken) -> None:
        for channel in self._channels:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        trio.from_thread.run_sync(self.listening.set, trio_token=token)
        while not self._stop.is_set():
            for notify in conn.notifies(timeout=_WAIT_SLICE_SECONDS):
                message = Notification(notify.channel, notify.payload)
                try:
                    trio.from_thread.run_sync(self._deliver, message, trio_token=token)
                except trio.RunFinishedError:
                    return
            # Also a liveness probe: a dead server raises OperationalError here.
            conn.execute("SELECT 1")
