"""``/documents``: upload (streamed, capped), list, describe, download."""

from __future__ import annotations

import trio
from quart import Response, request

from ade.api.context import ApiContext
from ade.api.files import OCTET_STREAM, file_response, json_response
from ade.api.routing import WORKSPACE_PREFIX, Operation
from ade.api.uploads import receive_file
from ade.api.views import document_view, workspace_path
from ade.api.workbooks import check_workbook
from ade.errors import NotFound
from ade.telemetry.context import current_request_id

__all__ = ["document_operations"]


def document_operations(ctx: ApiContext) -> list[Operation]:
    async def upload_document(workspace_id: str) -> Response:
        received = await receive_file(
            request,
            field="file",
            dest_dir=ctx.catalog.documents_folder(workspace_id),
            max_bytes=ctx.max_upload_bytes,
        )
        try:
            # Before the document exists, off the loop (the central directory of a 100 MiB zip
            # is not read on it): a zip bomb is refused and leaves nothing behind.
            await trio.to_thread.run_sync(
                check_workbook, received.path, received.filename, ctx.max_uncompressed_bytes
            )
        except BaseException:
            received.path.unlink(missing_ok=True)
            raise
        document = await ctx.catalog.add_document(
            workspace_id, received.path, received.filename, received.size, received.sha256
        )
        location = workspace_path(workspace_id, f"/documents/{document.id}")
        return json_response(document_view(document), 201, {"Location": location})

    async def list_documents(workspace_id: str) -> Response:
        documents = await ctx.store.list_documents(workspace_id)
        return json_response({"items": [document_view(d) for d in documents]})

    async def get_document(workspace_id: str, document_id: str) -> Response:
        return json_response(document_view(await ctx.document(workspace_id, document_id)))

    async def get_document_content(workspace_id: str, document_id: str) -> Response:
        document = await ctx.document(workspace_id, document_id)
        path = ctx.settings.documents_dir / workspace_id / document.id
        try:
            return await file_response(path, OCTET_STREAM, download_name=document.filename)
        except FileNotFoundError:
            raise NotFound(f"the content of document {document.id} is missing") from None

    async def delete_document(workspace_id: str, document_id: str) -> Response:
        await ctx.document(workspace_id, document_id)  # 404 in the API's words first
        await ctx.retention.delete_document(
            workspace_id, document_id, request_id=current_request_id()
        )
        return Response("", status=204)

    base = f"{WORKSPACE_PREFIX}/documents"
    return [
        Operation(
            "POST",
            base,
            "upload_document",
            upload_document,
            "Upload a document (multipart field `file`)",
            {
                201: ("document stored", "Document"),
                400: ("malformed form or missing `file` part", "Error"),
                413: ("larger than ADE_MAX_UPLOAD_MB; nothing is kept", "Error"),
                415: ("not multipart/form-data", "Error"),
                422: (
                    "a workbook that expands beyond ADE_MAX_UNCOMPRESSED_MB or 100:1; "
                    "nothing is kept",
                    "Error",
                ),
            },
            request_body=("multipart", "file"),
            tag="documents",
        ),
        Operation(
            "GET",
            base,
            "list_documents",
            list_documents,
            "List the workspace's documents, oldest first",
            {200: ("documents", "DocumentList")},
            tag="documents",
        ),
        Operation(
            "GET",
            f"{base}/{{document_id}}",
            "get_document",
            get_document,
            "Describe one document",
            {200: ("the document", "Document"), 404: ("unknown document", "Error")},
            tag="documents",
        ),
        Operation(
            "GET",
            f"{base}/{{document_id}}/content",
            "get_document_content",
            get_document_content,
            "Download the document's bytes as uploaded",
            {
                200: ("the uploaded bytes", "application/octet-stream"),
                404: ("unknown document", "Error"),
            },
            tag="documents",
        ),
        Operation(
            "DELETE",
            f"{base}/{{document_id}}",
            "delete_document",
            delete_document,
            "Delete a document: its record and its stored bytes (jobs keep their own copies)",
            {
                204: ("deleted", None),
                404: ("unknown document", "Error"),
                409: ("a queued or running job uses it", "Error"),
            },
            tag="documents",
        ),
    ]
