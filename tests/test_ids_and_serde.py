import time
from datetime import UTC, datetime

from ade.ids import new_id
from ade.models import JobEvent, JobRecord, JobStatus
from ade.serde import converter


def test_ids_sort_by_creation_time_and_do_not_collide() -> None:
    first = new_id()
    time.sleep(0.002)
    later = [new_id() for _ in range(1000)]
    assert len(first) == 26
    assert all(first < other for other in later)
    assert len(set(later)) == 1000
    assert new_id("job_").startswith("job_")


def test_job_record_round_trips_through_the_edge_converter() -> None:
    job = JobRecord(
        id=new_id(),
        workspace_id="default",
        status=JobStatus.QUEUED,
        config_version_id="cfg",
        document_ids=("d1", "d2"),
        runtime_network_access=False,
        attempt=1,
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        sandbox_layers=("rlimits",),
    )
    raw = converter.unstructure(job)
    assert raw["status"] == "queued"
    assert raw["created_at"] == "2026-01-02T03:04:05+00:00"
    assert raw["document_ids"] == ["d1", "d2"]
    assert converter.structure(raw, JobRecord) == job


def test_event_detail_stays_a_plain_dict() -> None:
    event = JobEvent(
        seq=1,
        ts=datetime(2026, 1, 1, tzinfo=UTC),
        job_id="j",
        workspace_id="default",
        attempt=1,
        type="enqueue",
        detail={"queued": 1},
    )
    assert converter.loads(converter.dumps(event), JobEvent) == event
