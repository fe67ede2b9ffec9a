"""The cluster's plain decisions, without a database: the dispatcher's local state, when a
node fences itself, event pointers and the relay's choice of what to read."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ade.cluster.dispatcher import ClusterDispatcherState
from ade.cluster.node import Pulse
from ade.cluster.relay import EventPointer, EventRelay, format_pointer, parse_pointer
from ade.models import JobEvent, JobRecord, JobStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def job(job_id: str) -> JobRecord:
    return JobRecord(job_id, "ws", JobStatus.RUNNING, "cfg", ("d",), False, 1, T0)


def test_the_cluster_dispatcher_claims_only_for_idle_workers_until_draining() -> None:
    state = ClusterDispatcherState(capacity=5, workers=2)
    assert not state.can_claim()
    state.worker_idle(0)
    state.worker_idle(1)
    assert state.can_claim()
    assert state.claimed(job("j1")).worker_id == 0
    assert state.claimed(job("j2")).worker_id == 1
    assert not state.can_claim()
    assert state.cancel("j1").where == "running"
    assert state.cancel("elsewhere").where == "unknown"
    state.worker_finished(0, "j1", 1.5)
    assert state.can_claim()
    with pytest.raises(ValueError, match="was not running"):
        state.worker_finished(0, "j2", 1.0)
    state.stop_admitting("shutdown")
    assert not state.can_claim()
    stats = state.statistics()
    assert (stats.running, stats.idle_workers, stats.accepting) == (1, 1, False)
    assert stats.recent_mean_duration_seconds == 1.5


def test_a_node_fences_itself_once_per_outage_after_a_whole_lease() -> None:
    pulse = Pulse(lease_seconds=3.0)
    assert pulse.interval == 1.0
    assert pulse.failed(100.0) is False  # never in contact yet: nothing of ours to stop
    pulse.succeeded(100.0)
    assert pulse.failed(102.9) is False
    assert pulse.failed(103.0) is True
    assert pulse.failed(110.0) is False  # once per outage
    pulse.succeeded(111.0)
    assert pulse.failed(114.5) is True


def test_event_pointers_round_trip_and_garbage_is_refused() -> None:
    pointer = EventPointer("node-1", "ws", "job1", 3, 5)
    assert parse_pointer(format_pointer(pointer)) == pointer
    assert parse_pointer("node ws job") is None
    assert parse_pointer("node ws job x 5") is None


class Hub:
    def __init__(self, wanted: set[str]) -> None:
        self.wanted = wanted
        self.published: list[JobEvent] = []

    def wants(self, workspace_id: str, job_id: str) -> bool:
        return job_id in self.wanted

    def publish(self, event: JobEvent) -> None:
        self.published.append(event)


def event(seq: int, type_: str = "progress", job_id: str = "job1") -> JobEvent:
    return JobEvent(seq, T0, job_id, "ws", 1, type_)


async def test_the_relay_reads_only_what_a_local_party_wants_and_never_twice() -> None:
    log = [event(1, "enqueue"), event(2, "start"), event(3), event(4), event(5, "finish")]
    reads: list[int] = []

    def read(path: Path, after: int) -> list[JobEvent]:
        reads.append(after)
        return [e for e in log if e.seq > after]

    hub = Hub({"job1"})
    relay = EventRelay(hub, Path("/jobs"), "me", read=read)
    await relay.handle("me ws job1 1 1")  # our own events: already published here
    await relay.handle("other ws job9 1 1")  # nobody here wants job9
    assert reads == []
    await relay.handle("other ws job1 3 3")  # first sight: from the pointer's first seq
    assert [e.seq for e in hub.published] == [3, 4, 5]
    assert reads == [2]
    # The terminal event ended the job's relay; a late duplicate pointer starts over from
    # its own range and the subscriber's seq check drops what it has seen.
    await relay.handle("other ws job1 4 4")
    assert reads == [2, 3]
