"""``/jobs``: submit (202/429, Idempotency-Key), list, describe, artifact, output, retry, cancel."""

from __future__ import annotations

import json
from pathlib import PurePath

from quart import Response, request

from ade.api.auth import current_key_id
from ade.api.bodies import (
    ID_PATTERN,
    SubmitJob,
    check_id,
    parse_count,
    read_json_body,
    structure_body,
)
from ade.api.context import ApiContext
from ade.api.errors import BadRequest, FieldProblem
from ade.api.files import file_response, json_response
from ade.api.idempotency import KEY_PATTERN, idempotent
from ade.api.routing import WORKSPACE_PREFIX, Operation, Param
from ade.api.views import job_location, job_view
from ade.errors import Conflict, NotFound
from ade.models import JobRecord, JobStatus
from ade.telemetry.context import current_request_id
from ade.wire import XLSX_MEDIA_TYPE

__all__ = ["job_operations"]

DEFAULT_PAGE = 50
MAX_PAGE = 200


def _accepted(job: JobRecord) -> Response:
    return json_response(job_view(job), 202, {"Location": job_location(job)})


def job_operations(ctx: ApiContext) -> list[Operation]:
    async def submit_job(workspace_id: str) -> Response:
        data = await read_json_body(request, ctx.max_json_bytes)
        body = structure_body(data, SubmitJob)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

        async def create() -> Response:
            # Admission checks everything, every problem listed, and its refusal is the
            # response as it is (ade.runtime.admission): nothing is checked twice.
            job = await ctx.runtime.submit(
                workspace_id=workspace_id,
                config_version_id=body.config_version_id,
                document_ids=body.document_ids,
                runtime_network_access=body.runtime_network_access,
                submitted_by=current_key_id(),
            )
            return _accepted(job)

        return await idempotent(
            ctx.store.idempotency_keys, ctx.key_locks, workspace_id, canonical, create
        )

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
        path = ctx.runtime.layout(job.id).artifact
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
        path = ctx.runtime.layout(job.id).normalized
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
            return _accepted(
                await ctx.runtime.retry(workspace_id, job.id, submitted_by=current_key_id())
            )

        return await idempotent(
            ctx.store.idempotency_keys, ctx.key_locks, workspace_id, b"", create
        )

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

    async def delete_job(workspace_id: str, job_id: str) -> Response:
        await ctx.job(workspace_id, job_id)  # 404 in the API's words first
        await ctx.retention.delete_job(workspace_id, job_id, request_id=current_request_id())
        return Response("", status=204)

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
        Operation(
            "DELETE",
            one,
            "delete_job",
            delete_job,
            "Delete a finished job: its record and its directory (output, artifact, events)",
            {
                204: ("deleted", None),
                404: ("unknown job", "Error"),
                409: ("the job is queued or running (cancel it first)", "Error"),
            },
        ),
    ]
