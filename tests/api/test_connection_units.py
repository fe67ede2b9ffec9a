"""The plain decisions behind the connection layer, without sockets."""

from __future__ import annotations

import trio

from ade.api.connections import AcceptTrouble, ConnectionCount
from ade.api.single_flight import SingleFlight


def test_accept_trouble_is_one_episode_however_accepts_flap() -> None:
    trouble = AcceptTrouble(quiet_seconds=1.0)
    assert trouble.failed(10.0) is True  # the episode begins: log
    assert trouble.succeeded(10.1) is None  # a success right after: still the episode
    assert trouble.failed(10.2) is False
    assert trouble.failed(10.3) is False
    assert trouble.succeeded(11.5) == 3  # quiet for a second: the episode ends, with its count
    assert trouble.succeeded(12.0) is None
    assert trouble.failed(20.0) is True  # a new episode


def test_connection_count_refuses_beyond_the_limit_and_counts_refusals() -> None:
    count = ConnectionCount(2)
    assert [count.admit(), count.admit(), count.admit()] == [True, True, False]
    assert (count.open, count.refused) == (2, 1)
    count.release()
    assert count.admit() is True


async def test_single_flight_shares_one_probe_among_concurrent_callers() -> None:
    calls = 0

    async def probe() -> int:
        nonlocal calls
        calls += 1
        await trio.sleep(0.05)
        return calls

    shared = SingleFlight(probe)
    results: list[int] = []

    async def caller() -> None:
        results.append(await shared())

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(caller)
    assert (calls, results) == (1, [1] * 50)
    assert await shared() == 2  # the next call after the flight landed probes again
