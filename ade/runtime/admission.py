"""Admission: how a submission becomes a queued job, as one plain object.

Theory of operation
-------------------
:meth:`Admission.admit` runs the steps in this order and undoes what it did when one fails:

1. **shape** — what needs no lookup (no documents, one listed twice, too many); refused before
   anything else, every problem listed (:func:`shape_problems`);
2. **reserve** a queue slot — a full queue (QueueFull) or a draining runtime (ShuttingDown) is
   refused before anything is looked up or written; under overload most submissions end here;
3. **validate** everything that needs the store in one pass: the config version, every
   document, network access — every problem collected (:func:`found_refusal`);
4. **build** the job directory (all at once or not at all; the run request is written once and
   kept in memory for the worker);
5. **accept** — the job's row, the commit point; up to here a failure releases the slot and
   removes the directory, so nothing half-made is left;
6. **enqueue** — or, if a cancel overtook the job in between, record it cancelled.

The I/O of each step belongs to the caller (:class:`AdmissionSteps`: the runtime talks to its
actors and the disk); this object decides the order, the checks and the undoing, and is tested
with plain fakes, without trio. The caller runs :meth:`Admission.admit` shielded from
cancellation: a client that hangs up must not leave a reservation held, a directory without a
row, or a row that is never enqueued.

The API does not check again what admission checks: a refusal is the API's error as it is
(status and details by class, :mod:`ade.api.errors`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import attrs

from ade.errors import AdeError, BadRequest, FieldProblem, NotFound
from ade.ids import is_id, shown_id
from ade.models import ConfigVersion, Document, JobRecord
from ade.worker.protocol import RunRequest

__all__ = [
    "MAX_DOCUMENTS_PER_JOB",
    "Admission",
    "AdmissionSteps",
    "found_refusal",
    "shape_problems",
]

logger = logging.getLogger(__name__)

MAX_DOCUMENTS_PER_JOB = 100
# Missing documents named in one message; all of them are in the details.
_NAMED_IN_MESSAGE = 5


def shape_problems(document_ids: Sequence[str]) -> list[FieldProblem]:
    """Every problem of the submission that needs no lookup."""
    problems: list[FieldProblem] = []
    if not document_ids:
        problems.append(FieldProblem("document_ids", "at least one document id is required"))
    for index, document_id in enumerate(document_ids):
        if document_id in document_ids[:index]:
            problems.append(
                FieldProblem(f"document_ids[{index}]", "listed twice; each document once")
            )
    if len(document_ids) > MAX_DOCUMENTS_PER_JOB:
        problems.append(
            FieldProblem("document_ids", f"at most {MAX_DOCUMENTS_PER_JOB} documents per job")
        )
    return problems


def shape_refusal(document_ids: Sequence[str]) -> BadRequest | None:
    problems = shape_problems(document_ids)
    if not problems:
        return None
    listed = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    return BadRequest(f"invalid submission: {listed}", problems)


def found_refusal(
    job: JobRecord,
    config: ConfigVersion | None,
    documents: Mapping[str, Document | None],
) -> AdeError | None:
    """The refusal of a submission whose ids were looked up (``documents`` maps every id of
    the job to its record, or None), or None when it may be admitted. Every missing document is
    named; the first kind of problem found decides the error (an unknown config, then unknown
    documents: 404; network access the config does not allow: 400)."""
    workspace = job.workspace_id
    if config is None:
        shown = shown_id(job.config_version_id)
        return NotFound(
            f"config version {shown} not found in workspace {workspace}",
            {"config_version_id": shown},
        )
    missing = [shown_id(d) for d in job.document_ids if documents.get(d) is None]
    if len(missing) == 1:
        return NotFound(
            f"document {missing[0]} not found in workspace {workspace}",
            {"document_ids": missing},
        )
    if missing:
        named = ", ".join(missing[:_NAMED_IN_MESSAGE])
        if len(missing) > _NAMED_IN_MESSAGE:
            named += f" and {len(missing) - _NAMED_IN_MESSAGE} more"
        return NotFound(
            f"document(s) not found in workspace {workspace}: {named}",
            {"document_ids": missing},
        )
    if job.runtime_network_access and not config.runtime_network_access:
        return BadRequest(
            f"config version {config.id} does not allow runtime network access; submit without "
            "runtime_network_access or use a config that declares it",
            [
                FieldProblem(
                    "runtime_network_access",
                    "the config's manifest does not allow runtime network access",
                )
            ],
        )
    return None


class AdmissionSteps(Protocol):
    """The I/O of each step; the runtime implements it over its actors and the disk."""

    async def reserve(self, job_id: str) -> None:
        """Hold a queue slot; raises QueueFull or ShuttingDown."""
        ...

    async def release(self, job_id: str) -> None: ...

    async def config(self, workspace_id: str, config_id: str) -> ConfigVersion | None: ...

    async def document(self, workspace_id: str, document_id: str) -> Document | None: ...

    async def build(
        self, job: JobRecord, documents: Sequence[Document]
    ) -> tuple[Path, RunRequest]: ...

    async def remove(self, job_dir: Path) -> None: ...

    async def accept(self, job: JobRecord) -> JobRecord: ...

    async def enqueue(self, record: JobRecord, request: RunRequest) -> bool:
        """False when a cancel overtook the job before it reached the queue."""
        ...

    async def record_cancelled(self, job_id: str) -> JobRecord: ...

    async def note_retry(self, original_id: str, retry_id: str) -> None: ...


@attrs.define
class Admission:
    steps: AdmissionSteps

    async def admit(self, job: JobRecord) -> JobRecord:
        """Admit ``job`` (a new queued record) and return its record as stored: ``queued``, or
        ``cancelled`` if a cancel overtook it. Raises the refusal; then nothing was persisted."""
        refusal = shape_refusal(job.document_ids)
        if refusal is not None:
            raise refusal
        await self.steps.reserve(job.id)
        job_dir: Path | None = None
        try:
            documents = await self._validate(job)
            job_dir, request = await self.steps.build(job, documents)
            record = await self.steps.accept(job)
        except BaseException:
            await self.steps.release(job.id)
            if job_dir is not None:
                await self.steps.remove(job_dir)
            raise
        if not await self.steps.enqueue(record, request):
            record = await self.steps.record_cancelled(job.id)
        if job.retry_of is not None:
            try:
                await self.steps.note_retry(job.retry_of, job.id)
            except (AdeError, OSError):
                # The retry job is committed; failing to annotate the original (its
                # directory removed by hand, say) must not turn its 202 into an error.
                logger.exception("could not note the retry on job %s", job.retry_of)
        return record

    async def _validate(self, job: JobRecord) -> list[Document]:
        """Look every id up once (an id that cannot exist is not looked up) and refuse with
        every problem; returns the documents in the job's order."""
        workspace = job.workspace_id
        config = (
            await self.steps.config(workspace, job.config_version_id)
            if is_id(job.config_version_id)
            else None
        )
        documents: dict[str, Document | None] = {}
        # An unknown config refuses the job whatever its documents are: spare their lookups.
        for document_id in job.document_ids if config is not None else ():
            documents[document_id] = (
                await self.steps.document(workspace, document_id) if is_id(document_id) else None
            )
        refusal = found_refusal(job, config, documents)
        if refusal is not None:
            raise refusal
        return [d for d in documents.values() if d is not None]
