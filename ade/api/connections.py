"""Accept HTTP connections under control: a cap on open connections, calm file-descriptor
exhaustion, and the fd limit raised where allowed.

Why our own accept loop around hypercorn's per-connection server: ``hypercorn.trio.serve``
hands its listeners straight to ``trio.serve_listeners``, which (a) accepts without any bound,
so 1,000 idle sockets are 1,000 descriptors, and (b) logs a full traceback every 0.1 s while
``accept`` fails with EMFILE -- 1,484 of them in one measured run. Here each listener is
wrapped so that a capacity error is one log line per episode (and one when accepting works
again), and each accepted connection beyond ``max_connections`` gets one canned 503 in the API's
error shape and is closed. Everything else -- the lifespan, the HTTP/1.1 and websocket
protocol, graceful shutdown -- is hypercorn's own, reused as its ``worker_serve`` does.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import resource
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import attrs
import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState, LifespanState
from hypercorn.utils import repr_socket_addr

__all__ = [
    "ACCEPT_CAPACITY_ERRNOS",
    "AcceptTrouble",
    "ConnectionCount",
    "connection_cap",
    "raise_fd_limit",
    "serve_http",
]

log = logging.getLogger("ade.api.connections")

# accept() fails with these when the process or the system is out of descriptors or buffers;
# the listening socket itself is fine, so wait a moment and try again.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_ACCEPT_RETRY_SECONDS = 0.1
# Descriptors kept back from the connection cap: the store, logs, job directories, workers'
# pipes. Each connection may hold two (its socket and an upload's temporary file).
_RESERVED_FDS = 256
# A refused connection: the 503 is written, then the request is read and discarded this long so
# the client sees the answer rather than a reset.
_REFUSAL_LINGER_SECONDS = 1.0
_REFUSAL_BODY = json.dumps(
    {
        "error": {
            "code": "too_many_connections",
            "message": "the server has too many open connections; retry shortly",
            "details": None,
        }
    }
).encode()
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: application/json\r\n"
    b"retry-after: 1\r\n"
    b"connection: close\r\n"
    b"content-length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n\r\n" + _REFUSAL_BODY
)


def raise_fd_limit() -> tuple[int, int]:
    """Raise this process's soft open-file limit to its hard limit; returns (before, after).

    Where the hard limit cannot be read or raising is refused, the limit stays as it was."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
            return soft, soft
        return soft, target
    return soft, soft


def connection_cap(configured: int) -> int:
    """``configured`` (ADE_MAX_CONNECTIONS), lowered to what the open-file limit can carry."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    affordable = max(16, (soft - _RESERVED_FDS) // 2)
    return min(configured, affordable)


@attrs.define
class ConnectionCount:
    """Open connections and refusals (the decision is plain: no I/O here)."""

    limit: int
    open: int = 0
    refused: int = 0

    def admit(self) -> bool:
        if self.open >= self.limit:
            self.refused += 1
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1


@attrs.define
class AcceptTrouble:
    """One episode of failing accepts: say so once when it begins and once when accepts have
    worked again for a while (accepts flap while descriptors come and go; that is one episode,
    not dozens)."""

    quiet_seconds: float = 1.0
    failures: int = 0
    last_failure: float = 0.0

    def failed(self, now: float) -> bool:
        """Record a failure; True when it begins an episode (log it)."""
        begins = self.failures == 0
        self.failures += 1
        self.last_failure = now
        return begins

    def succeeded(self, now: float) -> int | None:
        """Record a success; the episode's failure count when this ends it (log it)."""
        if self.failures and now - self.last_failure >= self.quiet_seconds:
            failures, self.failures = self.failures, 0
            return failures
        return None


class _CalmListener(trio.abc.Listener[trio.SocketStream]):
    """A SocketListener whose accept waits out descriptor exhaustion with one log line."""

    def __init__(self, inner: trio.SocketListener) -> None:
        self.inner = inner
        self.trouble = AcceptTrouble()

    async def accept(self) -> trio.SocketStream:
        while True:
            try:
                stream = await self.inner.accept()
            except OSError as exc:
                if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                if self.trouble.failed(trio.current_time()):
                    log.error(
                        "cannot accept connections: %s (%s); waiting for descriptors to free up",
                        errno.errorcode.get(exc.errno or 0, "?"),
                        os.strerror(exc.errno or 0),
                    )
                await trio.sleep(_ACCEPT_RETRY_SECONDS)
                continue
            failures = self.trouble.succeeded(trio.current_time())
            if failures:
                log.warning("accepting connections again after %d failed attempts", failures)
            return stream

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _refuse(stream: trio.SocketStream) -> None:
    with trio.move_on_after(_REFUSAL_LINGER_SECONDS):
        try:
            await stream.send_all(REFUSAL)
            await stream.send_eof()
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client is gone already: nothing left to tell it
    await stream.aclose()


async def serve_http(
    app: Any,
    config: Config,
    *,
    max_connections: int,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` (ASGI) on ``config.bind`` until ``shutdown_trigger`` returns.

    ``task_status.started(urls)`` once listening. After the trigger, no new connection is
    accepted and open ones get ``config.graceful_timeout`` to finish.
    """
    wrapped = ASGIWrapper(app)
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(wrapped, config, lifespan_state)
    context = WorkerContext(None)
    count = ConnectionCount(max_connections)

    async def handle(stream: trio.SocketStream) -> None:
        if not count.admit():
            if count.refused == 1 or count.refused % 1000 == 0:
                log.warning(
                    "connection refused: %d open (ADE_MAX_CONNECTIONS); %d refused so far",
                    count.open,
                    count.refused,
                )
            await _refuse(stream)
            return
        try:
            await TCPServer(
                wrapped, config, context, ConnectionState(lifespan_state.copy()), stream
            )
        finally:
            count.release()

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as connections:
            sockets = config.create_sockets()
            listeners = []
            urls = []
            for sock in sockets.insecure_sockets:
                sock.listen(config.backlog)
                listeners.append(
                    _CalmListener(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
                )
                urls.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
            task_status.started(urls)
            try:
                async with trio.open_nursery() as accepting:
                    accepting.start_soon(
                        partial(
                            trio.serve_listeners, handle, listeners, handler_nursery=connections
                        )
                    )
                    await shutdown_trigger()
                    accepting.cancel_scope.cancel()
            finally:
                # Stop accepting (done above), tell open connections to finish, bound the wait.
                await context.terminated.set()
                connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
