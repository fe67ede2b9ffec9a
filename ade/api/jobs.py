"""``/jobs``: submit (202/429, Idempotency-Key), list, describe, artifact, output, retry, cancel."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import PurePath

import trio
from quart import Response, request

from ade.api.bodies import (
    ID_PATTERN,
    SubmitJob,
    check_id,
    check_values,
    parse_count,
    read_json_body,
    shown_id,
    structure_body,
)
from ade.api.context import ApiContext
from ade.api.errors import BadRequest, FieldProblem
from ade.api.files import XLSX_MEDIA_TYPE, file_response, json_response
from ade.api.routing import WORKSPACE_PREFIX, Operation, Param
from ade.api.views import job_location, job_view
from ade.errors import Conflict, NotFound
from ade.models import JobRecord, JobStatus
from ade.serde import utcnow
from ade.store.idempotency import (
    KEY_PATTERN,
    Replay,
    StoredResponse,
    decide,
    fingerprint,
)

__all__ = ["ARTIFACT_FILE", "OUTPUT_FILE", "job_operations"]

ARTIFACT_FILE = "artifact.json"
OUTPUT_FILE = "normalized.xlsx"
DEFAULT_PAGE = 50
MAX_PAGE = 200


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not KEY_PATTERN.match(key):
        raise BadRequest(
            "invalid Idempotency-Key header",
            [FieldProblem("Idempotency-Key", "1-255 printable ASCII characters, no spaces")],
        )
    return key


def _accepted(job: JobRecord) -> Response:
    return json_response(job_view(job), 202, {"Location": job_location(job)})


def _replayed(stored: StoredResponse) -> Response:
    headers = {"Idempotent-Replayed": "true"}
    if stored.location:
        headers["Location"] = stored.location
    return Response(
        stored.body, status=stored.status, content_type="application/json", headers=headers
    )


async def _idempotent(
    ctx: ApiContext, workspace_id: str, canonical: bytes, create: Callable[[], Awaitable[Response]]
) -> Response:
    """Run ``create`` once per Idempotency-Key (if the request carries one)."""
    key = _idempotency_key()
    if key is None:
        return await create()
    request_hash = fingerprint(request.method, request.path, canonical)
    async with ctx.key_locks.hold(workspace_id, key):
        entry = await ctx.idempotency.lookup(workspace_id, key)
        decision = decide(entry, request_hash, key, utcnow())
        if isinstance(decision, Replay):
            return _replayed(decision.response)
        response = await create()
        if 200 <= response.status_code < 300:
            # Shielded: the job exists now. Were the request cancelled here (the client hung
            # up) the key would be forgotten, and the client's retry with it would create a
            # second job -- exactly what the key is for.
            with trio.CancelScope(shield=True):
                body = (await response.get_data(as_text=True)) or ""
                await ctx.idempotency.remember(
                    workspace_id,
                    key,
                    StoredResponse(
                        status=response.status_code,
                        body=body,
                        location=response.headers.get("Location"),
                        request_hash=request_hash,
                        created_at=utcnow(),
                    ),
                )
        return response


def job_operations(ctx: ApiContext) -> list[Operation]:
    def check_submission(body: SubmitJob) -> None:
        """The checks that need no lookup, every problem listed (the runtime stops at one).
        The sizes were bounded when the body was read; this is linear."""
        check_values(body)

    async def explain_refusal(workspace_id: str, body: SubmitJob) -> None:
        """After the runtime refused a submission (NotFound or Conflict), look again and raise
        the API's fuller error: every missing document, ids escaped, network access as a 400.
        Returns if nothing is wrong any more (the caller re-raises the runtime's error)."""
        config = await ctx.config(workspace_id, body.config_version_id)
        missing = []
        for document_id in body.document_ids:
            found = (
                await ctx.store.get_document(workspace_id, document_id)
                if check_id(document_id)
                else None
            )
            if found is None:
                missing.append(shown_id(document_id))
        if missing:
            listed = ", ".join(missing[:5]) + (
                f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            )
            raise NotFound(
                f"document(s) not found in workspace {workspace_id}: {listed}",
                {"document_ids": missing},
            )
        if body.runtime_network_access and not config.runtime_network_access:
            raise BadRequest(
                "this config version does not allow network access",
                [
                    FieldProblem(
                        "runtime_network_access",
                        "the config's manifest does not allow runtime network access",
                    )
                ],
            )

    async def submit_job(workspace_id: str) -> Response:
        data = await read_json_body(request, ctx.max_json_bytes)
        body = structure_body(data, SubmitJob)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

        async def create() -> Response:
            check_submission(body)
            # The runtime looks the config and documents up itself: looking them up here first
            # too doubled the store round trips of every submission (429s included).
            try:
                job = await ctx.runtime.submit(
                    workspace_id=workspace_id,
                    config_version_id=body.config_version_id,
                    document_ids=body.document_ids,
                    runtime_network_access=body.runtime_network_access,
                )
            except (NotFound, Conflict):
                await explain_refusal(workspace_id, body)
                raise
            return _accepted(job)

        return await _idempotent(ctx, workspace_id, canonical, create)

    async def list_jobs(workspace_id: str) -> Response:
        args = request.args
        problems: list[FieldProblem] = []
        status: JobStatus | None = None
        if "status" in args:
            try:
                status = JobStatus(args["status"])
            except ValueError:
                allowed = ", ".join(s.value for s in JobStatus)
                problems.append(FieldProblem("status", f"one of {allowed}"))
        limit = DEFAULT_PAGE
        if "limit" in args:
            parsed = parse_count(args["limit"])
            if parsed is not None and 1 <= parsed <= MAX_PAGE:
                limit = parsed
            else:
                problems.append(FieldProblem("limit", f"a whole number from 1 to {MAX_PAGE}"))
        cursor = args.get("cursor")
        if cursor is not None and not check_id(cursor):
            problems.append(FieldProblem("cursor", "not a cursor this API returned"))
        if problems:
            raise BadRequest("invalid query parameters", problems)
        jobs = await ctx.store.list_jobs(
            workspace_id, status=status, limit=limit + 1, before_id=cursor
        )
        page, more = jobs[:limit], len(jobs) > limit
        return json_response(
            {"items": [job_view(j) for j in page], "next_cursor": page[-1].id if more else None}
        )

    async def get_job(workspace_id: str, job_id: str) -> Response:
        return json_response(job_view(await ctx.job(workspace_id, job_id)))

    async def finished_job(workspace_id: str, job_id: str, what: str) -> JobRecord:
        job = await ctx.job(workspace_id, job_id)
        if not job.status.is_terminal:
            raise Conflict(
                f"job {job.id} is {job.status.value}; its {what} exists once it has finished",
                {"status": job.status.value},
            )
        return job

    async def get_artifact(workspace_id: str, job_id: str) -> Response:
        job = await finished_job(workspace_id, job_id, "artifact")
        path = ctx.settings.jobs_dir / job.id / ARTIFACT_FILE
        try:
            return await file_response(
                path, "application/json", download_name=f"{job.id}.artifact.json"
            )
        except FileNotFoundError:
            raise NotFound(
                f"job {job.id} ended {job.status.value} without an artifact",
                {"status": job.status.value, "error_message": job.error_message},
            ) from None

    async def get_output(workspace_id: str, job_id: str) -> Response:
        job = await finished_job(workspace_id, job_id, "output")
        if job.status is not JobStatus.SUCCESS:
            raise NotFound(
                f"job {job.id} ended {job.status.value}; it has no output"
                + (f": {job.error_message}" if job.error_message else ""),
                {"status": job.status.value, "error_message": job.error_message},
            )
        path = ctx.settings.jobs_dir / job.id / OUTPUT_FILE
        name = await download_name(job)
        try:
            return await file_response(path, XLSX_MEDIA_TYPE, download_name=name)
        except FileNotFoundError:
            raise NotFound(f"the output of job {job.id} is missing") from None

    async def download_name(job: JobRecord) -> str:
        first = await ctx.store.get_document(job.workspace_id, job.document_ids[0])
        stem = PurePath(first.filename).stem if first is not None else ""
        return f"{stem or job.id}.normalized.xlsx"

    async def retry_job(workspace_id: str, job_id: str) -> Response:
        job = await ctx.job(workspace_id, job_id)

        async def create() -> Response:
            return _accepted(await ctx.runtime.retry(workspace_id, job.id))

        return await _idempotent(ctx, workspace_id, b"", create)

    async def cancel_job(workspace_id: str, job_id: str) -> Response:
        job = await ctx.job(workspace_id, job_id)
        if job.status.is_terminal:
            raise Conflict(
                f"job {job.id} already ended {job.status.value}; nothing to cancel",
                {"status": job.status.value},
            )
        cancelled = await ctx.runtime.cancel(workspace_id, job.id)
        return json_response(job_view(cancelled), 202, {"Location": job_location(cancelled)})

    base = f"{WORKSPACE_PREFIX}/jobs"
    one = f"{base}/{{job_id}}"
    idem = Param(
        "Idempotency-Key",
        "replay the first response for the same key and request; 422 if reused for another",
        {"type": "string", "pattern": KEY_PATTERN.pattern},
    )
    return [
        Operation(
            "POST",
            base,
            "submit_job",
            submit_job,
            "Submit a job",
            {
                202: ("accepted; Location names the job", "Job"),
                400: ("malformed body; details list each field", "Error"),
                404: ("unknown config version or document", "Error"),
                415: ("not application/json", "Error"),
                422: ("Idempotency-Key reused for a different request", "Error"),
                429: ("queue full; Retry-After; nothing persisted", "QueueFull"),
                503: ("the service is shutting down; Retry-After", "Error"),
            },
            request_body=("json", "SubmitJob"),
            headers=(idem,),
        ),
        Operation(
            "GET",
            base,
            "list_jobs",
            list_jobs,
            "List jobs, newest first",
            {200: ("a page of jobs", "JobPage"), 400: ("bad query parameter", "Error")},
            query=(
                Param(
                    "status", "only jobs in this status", {"$ref": "#/components/schemas/JobStatus"}
                ),
                Param("limit", "page size", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
                Param(
                    "cursor",
                    "next_cursor of the previous page",
                    {"type": "string", "pattern": ID_PATTERN.pattern},
                ),
            ),
        ),
        Operation(
            "GET",
            one,
            "get_job",
            get_job,
            "Describe one job",
            {200: ("the job", "Job"), 404: ("unknown job", "Error")},
        ),
        Operation(
            "GET",
            f"{one}/artifact",
            "get_artifact",
            get_artifact,
            "The job's artifact.json",
            {
                200: ("artifact.json", "application/json"),
                404: ("unknown job, or it ended without an artifact", "Error"),
                409: ("the job has not finished", "Error"),
            },
        ),
        Operation(
            "GET",
            f"{one}/output",
            "get_output",
            get_output,
            "Download normalized.xlsx",
            {
                200: ("normalized.xlsx", XLSX_MEDIA_TYPE),
                404: ("unknown job, or it did not succeed", "Error"),
                409: ("the job has not finished", "Error"),
            },
        ),
        Operation(
            "POST",
            f"{one}/retry",
            "retry_job",
            retry_job,
            "Run a finished job again as a new job (attempt + 1)",
            {
                202: ("the new job; Location names it", "Job"),
                404: ("unknown job", "Error"),
                409: ("the job has not finished", "Error"),
                429: ("queue full; Retry-After; nothing persisted", "QueueFull"),
                503: ("the service is shutting down; Retry-After", "Error"),
            },
            headers=(idem,),
        ),
        Operation(
            "POST",
            f"{one}/cancel",
            "cancel_job",
            cancel_job,
            "Cancel a queued or running job",
            {
                202: ("cancellation recorded or under way", "Job"),
                404: ("unknown job", "Error"),
                409: ("the job has already finished", "Error"),
            },
        ),
    ]
