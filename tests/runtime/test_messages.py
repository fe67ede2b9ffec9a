"""Messages are frozen values; a Reply is answered exactly once."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

from ade.models import JobStatus
from ade.runtime.ending import JobEnding
from ade.runtime.messages import Reply, ReserveSlot, StartJob


def test_messages_are_frozen_and_compare_by_value_not_by_reply() -> None:
    a, b = ReserveSlot("job1"), ReserveSlot("job1")
    assert a == b and a.reply is not b.reply
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        a.job_id = "other"  # type: ignore[misc]
    assert JobEnding(JobStatus.SUCCESS) == JobEnding(JobStatus.SUCCESS)


async def test_reply_delivers_a_value_once() -> None:
    reply: Reply[int] = Reply()
    assert not reply.done
    async with trio.open_nursery() as nursery:
        got: list[int] = []

        async def waiter() -> None:
            got.append(await reply.wait())

        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        reply.set(7)
    assert got == [7] and reply.done
    with pytest.raises(RuntimeError, match="already given"):
        reply.set(8)
    with pytest.raises(RuntimeError, match="already given"):
        reply.fail(ValueError("late"))


async def test_reply_raises_the_failure_to_the_waiter() -> None:
    message = StartJob("job1")
    message.reply.fail(LookupError("no such job"))
    with pytest.raises(LookupError, match="no such job"):
        await message.reply.wait()
