"""``/documents``: upload (streamed, capped), list, describe, download."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import trio
from quart import Response, request

from ade.api.context import ApiContext
from ade.api.files import OCTET_STREAM, file_response, json_response
from ade.api.routing import WORKSPACE_PREFIX, Operation
from ade.api.uploads import receive_file
from ade.api.views import document_view, workspace_path
from ade.api.workbooks import check_workbook
from ade.errors import NotFound
from ade.ids import new_id
from ade.models import Document
from ade.serde import utcnow

__all__ = ["document_operations", "store_local_document"]


def _copy_in(source: Path, folder: Path) -> tuple[Path, int, str]:
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".upload-", dir=folder)
    temp = Path(name)
    digest = hashlib.sha256()
    size = 0
    try:
        with open(source, "rb") as src, os.fdopen(fd, "wb") as out:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp, size, digest.hexdigest()


async def store_local_document(
    store: Any, documents_dir: Path, workspace_id: str, source: Path, filename: str
) -> Document:
    """Add a file from this machine as a document (``ade serve`` stores the bundled sample)."""
    folder = documents_dir / workspace_id
    temp, size, sha256 = await trio.to_thread.run_sync(_copy_in, source, folder)
    document = Document(
        id=new_id(),
        workspace_id=workspace_id,
        filename=filename,
        size=size,
        sha256=sha256,
        created_at=utcnow(),
    )
    final = folder / document.id
    try:
        await trio.to_thread.run_sync(os.replace, temp, final)
        await store.insert_document(document)
    except BaseException:
        temp.unlink(missing_ok=True)
        final.unlink(missing_ok=True)
        raise
    return document


def document_operations(ctx: ApiContext) -> list[Operation]:
    async def upload_document(workspace_id: str) -> Response:
        folder = ctx.settings.documents_dir / workspace_id
        received = await receive_file(
            request, field="file", dest_dir=folder, max_bytes=ctx.max_upload_bytes
        )
        document = Document(
            id=new_id(),
            workspace_id=workspace_id,
            filename=received.filename,
            size=received.size,
            sha256=received.sha256,
            created_at=utcnow(),
        )
        final = folder / document.id
        try:
            # Off the loop: the central directory of a 100 MiB zip is not read on it.
            await trio.to_thread.run_sync(
                check_workbook, received.path, received.filename, ctx.max_uncompressed_bytes
            )
            # Content first, row second: a row never points at missing bytes. If the row
            # cannot be written the content goes too, so a rejected upload leaves nothing.
            await trio.to_thread.run_sync(os.replace, received.path, final)
            await ctx.store.insert_document(document)
        except BaseException:
            received.path.unlink(missing_ok=True)
            final.unlink(missing_ok=True)
            raise
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
    ]
