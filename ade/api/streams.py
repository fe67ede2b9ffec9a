"""Websocket event streams: one job's events (replay + live), or a whole workspace's live events.

Theory of operation
-------------------
A job stream must show every event exactly once, in ``seq`` order, even while the job is
running. So it *subscribes first* and only then reads ``events.ndjson``: an event published
before the subscription is in the file; one published after is in the subscription (and maybe in
the file too, so live events with ``seq`` already sent are skipped). The stream closes with 1000
after the terminal event.

Slow consumers: the runtime never waits for a reader. The subscription's buffer is bounded and a
subscriber that lets it fill is dropped by the recorder; sending to the socket is also bounded in
time. Either way the stream closes with :data:`SLOW_CONSUMER_CLOSE_CODE`, and the client can
reconnect with ``?after=<last seq seen>`` to replay the gap from the file.

Quart accepts a websocket lazily (on the first send); a stream that may wait before its first
event must ``accept()`` explicitly, or the client's handshake hangs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
from quart import websocket

from ade.api.bodies import parse_count
from ade.api.context import ApiContext
from ade.api.errors import BadRequest, FieldProblem
from ade.api.routing import WORKSPACE_PREFIX, Operation, Param
from ade.models import TERMINAL_EVENT_TYPES, JobEvent
from ade.serde import converter
from ade.wire import GOING_AWAY, NORMAL_CLOSURE, SLOW_CONSUMER_CLOSE_CODE

__all__ = ["SEND_TIMEOUT_SECONDS", "stream_operations"]

# A client that cannot take one small message in this long is not keeping up.
SEND_TIMEOUT_SECONDS = 10.0
# A finished job whose log lacks its terminal line (a crash between store and file) gets
# this long for the line to arrive live before the stream closes anyway.
_TERMINAL_GRACE_SECONDS = 2.0


class _SlowConsumer(Exception):
    pass


async def _send(event: JobEvent) -> None:
    payload = converter.dumps(event)
    with trio.move_on_after(SEND_TIMEOUT_SECONDS) as scope:
        await websocket.send(payload)
    if scope.cancelled_caught:
        raise _SlowConsumer


def _after_param() -> int:
    after = parse_count(websocket.args.get("after", "0"))
    if after is None:
        raise BadRequest(
            "invalid query parameter", [FieldProblem("after", "a whole number >= 0 (an event seq)")]
        )
    return after


async def _until_shutdown(ctx: ApiContext, body: Callable[[], Awaitable[int]]) -> int:
    """Run ``body()`` -> close code, or return 1001 as soon as the service shuts down."""
    code = GOING_AWAY
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            await ctx.shutting_down.wait()
            nursery.cancel_scope.cancel()

        async def run() -> None:
            nonlocal code
            try:
                code = await body()
            except _SlowConsumer:
                code = SLOW_CONSUMER_CLOSE_CODE
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        nursery.start_soon(run)
    return code


_REASONS = {
    NORMAL_CLOSURE: "job finished",
    GOING_AWAY: "service shutting down",
    SLOW_CONSUMER_CLOSE_CODE: "slow consumer: reconnect with ?after=<last seq>",
}


async def _close(code: int) -> None:
    with trio.move_on_after(SEND_TIMEOUT_SECONDS):
        await websocket.close(code, _REASONS.get(code, ""))


def stream_operations(ctx: ApiContext) -> list[Operation]:
    async def job_events(workspace_id: str, job_id: str) -> None:
        # Checks before accept(): a refusal is an HTTP error response to the handshake.
        after = _after_param()
        job = await ctx.job(workspace_id, job_id)
        subscription = ctx.runtime.subscribe(workspace_id, job.id)
        try:
            await websocket.accept()

            async def stream() -> int:
                last = after
                for event in await ctx.runtime.read_events(workspace_id, job.id, after=after):
                    await _send(event)
                    last = event.seq
                    if event.type in TERMINAL_EVENT_TYPES:
                        return NORMAL_CLOSURE
                current = await ctx.job(workspace_id, job.id)
                grace = _TERMINAL_GRACE_SECONDS if current.status.is_terminal else float("inf")
                with trio.move_on_after(grace):
                    async for event in subscription:
                        if event.seq <= last:
                            continue
                        await _send(event)
                        last = event.seq
                        if event.type in TERMINAL_EVENT_TYPES:
                            return NORMAL_CLOSURE
                    if subscription.dropped:
                        return SLOW_CONSUMER_CLOSE_CODE
                    return GOING_AWAY
                return NORMAL_CLOSURE  # finished, its terminal line never came

            code = await _until_shutdown(ctx, stream)
            await _close(code)
        finally:
            subscription.close()

    async def workspace_events(workspace_id: str) -> None:
        subscription = ctx.runtime.subscribe(workspace_id, None)
        try:
            await websocket.accept()

            async def stream() -> int:
                async for event in subscription:
                    await _send(event)
                return SLOW_CONSUMER_CLOSE_CODE if subscription.dropped else GOING_AWAY

            code = await _until_shutdown(ctx, stream)
            await _close(code)
        finally:
            subscription.close()

    return [
        Operation(
            "WEBSOCKET",
            f"{WORKSPACE_PREFIX}/jobs/{{job_id}}/events",
            "job_events",
            job_events,
            "Websocket: the job's events from events.ndjson after `after`, then live; "
            "closes with 1000 after the terminal event",
            {
                101: ("websocket; each message is one event object", "Event"),
                400: ("bad `after`", "Error"),
                404: ("unknown job", "Error"),
            },
            query=(
                Param(
                    "after",
                    "replay events with seq greater than this",
                    {"type": "integer", "minimum": 0},
                ),
            ),
        ),
        Operation(
            "WEBSOCKET",
            f"{WORKSPACE_PREFIX}/events",
            "workspace_events",
            workspace_events,
            "Websocket: live events of every job in the workspace",
            {101: ("websocket; each message is one event object", "Event")},
        ),
    ]
