"""Admission as a plain object: the order of its steps, every problem in one refusal, and what
it undoes — driven without trio (the fake steps never suspend)."""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest

from ade.errors import BadRequest, NotFound, QueueFull
from ade.models import ConfigVersion, Document, JobRecord, JobStatus
from ade.runtime.admission import MAX_DOCUMENTS_PER_JOB, Admission, shape_problems
from ade.worker.protocol import RunRequest

T = TypeVar("T")
T0 = datetime(2026, 1, 2, tzinfo=UTC)
CONFIG = ConfigVersion("cfg", "ws", "t", "1", "hash", T0)
# What build() returns; admission only hands it on, so any object proves it arrives unchanged.
REQUEST: Any = object()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Drive a coroutine whose awaits never suspend: no event loop involved."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("admission suspended: a fake step is not plain")


def job(*document_ids: str, network: bool = False, retry_of: str | None = None) -> JobRecord:
    return JobRecord(
        "j1", "ws", JobStatus.QUEUED, "cfg", document_ids, network, 1, T0, retry_of=retry_of
    )


def document(document_id: str) -> Document:
    return Document(document_id, "ws", f"{document_id}.xlsx", 1, "x", T0)


@attrs.define
class FakeSteps:
    """Records every call; ``fail`` names a step that raises."""

    documents: dict[str, Document] = attrs.Factory(dict)
    config_found: ConfigVersion | None = CONFIG
    fail: dict[str, BaseException] = attrs.Factory(dict)
    queued: bool = True
    calls: list[tuple[str, Any]] = attrs.Factory(list)

    def _call(self, step: str, argument: Any) -> None:
        self.calls.append((step, argument))
        if step in self.fail:
            raise self.fail[step]

    async def reserve(self, job_id: str) -> None:
        self._call("reserve", job_id)

    async def release(self, job_id: str) -> None:
        self._call("release", job_id)

    async def config(self, workspace_id: str, config_id: str) -> ConfigVersion | None:
        self._call("config", config_id)
        return self.config_found

    async def document(self, workspace_id: str, document_id: str) -> Document | None:
        self._call("document", document_id)
        return self.documents.get(document_id)

    async def build(self, job: JobRecord, documents: Sequence[Document]) -> tuple[Path, Any]:
        self._call("build", tuple(d.id for d in documents))
        return Path("/jobs/j1"), REQUEST

    async def remove(self, job_dir: Path) -> None:
        self._call("remove", job_dir)

    async def accept(self, job: JobRecord) -> JobRecord:
        self._call("accept", job.id)
        return job

    async def enqueue(self, record: JobRecord, request: RunRequest) -> bool:
        self._call("enqueue", request)
        return self.queued

    async def record_cancelled(self, job_id: str) -> JobRecord:
        self._call("record_cancelled", job_id)
        return attrs.evolve(job("a"), status=JobStatus.CANCELLED)

    async def note_retry(self, original_id: str, retry_id: str) -> None:
        self._call("note_retry", (original_id, retry_id))


def steps_of(fake: FakeSteps) -> list[str]:
    return [step for step, _ in fake.calls]


def test_a_job_goes_through_every_step_in_order_and_its_request_reaches_the_queue() -> None:
    fake = FakeSteps({"a": document("a"), "b": document("b")})
    record = run(Admission(fake).admit(job("b", "a")))
    assert record == job("b", "a")
    assert fake.calls == [
        ("reserve", "j1"),
        ("config", "cfg"),
        ("document", "b"),
        ("document", "a"),
        ("build", ("b", "a")),  # the job's order
        ("accept", "j1"),
        ("enqueue", REQUEST),  # in memory, as built
    ]


def test_every_shape_problem_is_refused_before_a_slot_is_reserved() -> None:
    fake = FakeSteps()
    with pytest.raises(BadRequest) as refused:
        run(Admission(fake).admit(job()))
    assert refused.value.details == [
        {"field": "document_ids", "message": "at least one document id is required"}
    ]
    assert refused.value.message == (
        "invalid submission: document_ids: at least one document id is required"
    )
    many = [f"d{i}" for i in range(MAX_DOCUMENTS_PER_JOB)] + ["d0", "d1"]
    twice = "listed twice; each document once"
    assert shape_problems(many) == [
        {"field": f"document_ids[{MAX_DOCUMENTS_PER_JOB}]", "message": twice},
        {"field": f"document_ids[{MAX_DOCUMENTS_PER_JOB + 1}]", "message": twice},
        {"field": "document_ids", "message": f"at most {MAX_DOCUMENTS_PER_JOB} documents per job"},
    ]
    assert fake.calls == []


def test_a_full_queue_is_refused_before_anything_is_looked_up() -> None:
    fake = FakeSteps(fail={"reserve": QueueFull(4, 4, 2)})
    with pytest.raises(QueueFull):
        run(Admission(fake).admit(job("a")))
    assert steps_of(fake) == ["reserve"]


def test_every_missing_document_is_named_once_and_ids_that_cannot_exist_are_not_looked_up() -> None:
    fake = FakeSteps({"a": document("a")})
    hostile = "x" * 70 + "/.."
    with pytest.raises(NotFound) as refused:
        run(Admission(fake).admit(job("gone1", "a", hostile, "gone2")))
    shown = '"' + "x" * 61 + '..."'
    assert refused.value.message == f"document(s) not found in workspace ws: gone1, {shown}, gone2"
    assert refused.value.details == {"document_ids": ["gone1", shown, "gone2"]}
    assert [a for s, a in fake.calls if s == "document"] == ["gone1", "a", "gone2"]
    assert steps_of(fake)[-1] == "release"
    with pytest.raises(NotFound, match=r"^document gone1 not found in workspace ws$"):
        run(Admission(FakeSteps()).admit(job("gone1")))


def test_an_unknown_config_spares_the_document_lookups() -> None:
    fake = FakeSteps({"a": document("a")}, config_found=None)
    with pytest.raises(NotFound, match=r"^config version cfg not found in workspace ws$"):
        run(Admission(fake).admit(job("a")))
    assert steps_of(fake) == ["reserve", "config", "release"]


def test_network_access_the_config_does_not_allow_is_a_field_problem() -> None:
    fake = FakeSteps({"a": document("a")})
    with pytest.raises(BadRequest, match="does not allow runtime network access") as refused:
        run(Admission(fake).admit(job("a", network=True)))
    assert refused.value.details[0]["field"] == "runtime_network_access"
    assert steps_of(fake) == ["reserve", "config", "document", "release"]


@pytest.mark.parametrize(
    ("failing", "undone"),
    [("build", ["release"]), ("accept", ["release", "remove"])],
)
def test_a_failure_before_the_row_undoes_everything(failing: str, undone: list[str]) -> None:
    fake = FakeSteps({"a": document("a")}, fail={failing: OSError("disk full")})
    with pytest.raises(OSError, match="disk full"):
        run(Admission(fake).admit(job("a")))
    steps = steps_of(fake)
    assert steps[steps.index(failing) + 1 :] == undone


def test_a_cancel_that_overtakes_the_job_is_recorded() -> None:
    fake = FakeSteps({"a": document("a")}, queued=False)
    record = run(Admission(fake).admit(job("a")))
    assert record.status is JobStatus.CANCELLED
    assert steps_of(fake)[-2:] == ["enqueue", "record_cancelled"]


def test_a_retry_notes_the_original_and_a_failed_note_does_not_fail_the_retry() -> None:
    fake = FakeSteps({"a": document("a")})
    run(Admission(fake).admit(job("a", retry_of="j0")))
    assert fake.calls[-1] == ("note_retry", ("j0", "j1"))
    broken = FakeSteps({"a": document("a")}, fail={"note_retry": OSError("gone")})
    assert run(Admission(broken).admit(job("a", retry_of="j0"))).id == "j1"
