"""Stream a file from disk as a response body without blocking the event loop."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import trio
from quart import Response

from ade.wire import XLSX_MEDIA_TYPE

__all__ = ["XLSX_MEDIA_TYPE", "content_disposition", "file_response", "json_response"]

_CHUNK = 256 * 1024


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(data, separators=(",", ":")),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback and the exact UTF-8 name (RFC 6266 / 5987)."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


async def file_response(
    path: Path, media_type: str, *, download_name: str | None = None
) -> Response:
    """A streamed response of ``path``. The file is opened before returning, so a file that
    vanished is a clean error here rather than a truncated body later."""
    handle = await trio.open_file(path, "rb")
    size = (await trio.to_thread.run_sync(path.stat)).st_size

    async def body() -> AsyncIterator[bytes]:
        try:
            while chunk := await handle.read(_CHUNK):
                yield chunk
        finally:
            with trio.CancelScope(shield=True):
                await handle.aclose()

    headers = {"Content-Length": str(size)}
    if download_name is not None:
        headers["Content-Disposition"] = content_disposition(download_name)
    return Response(body(), status=200, content_type=media_type, headers=headers)
