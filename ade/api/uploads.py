"""Receive one file from a ``multipart/form-data`` body, streamed to disk under a hard size cap.

Why not ``await request.files``: that buffers the whole form (in memory or a spooled file) before
we get to see its size, and it trusts nothing but its own limits. Here the body is decoded chunk
by chunk as it arrives (werkzeug's sans-I/O multipart decoder), the file part is written straight
to a hidden temporary file next to its final place, and the byte count is checked on every chunk,
whatever ``Content-Length`` claimed (a chunked request has none at all). On any failure, a
cancellation (client gone) included, the temporary file is removed: a rejected upload leaves
nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import attrs
import trio
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from ade.api.errors import BadRequest, FieldProblem, PayloadTooLarge, UnsupportedMediaType

__all__ = ["MULTIPART_OVERHEAD", "ReceivedFile", "display_name", "receive_file"]

# Room for boundaries, part headers and small form fields on top of the file itself.
MULTIPART_OVERHEAD = 1024 * 1024
# After the cap is hit we keep reading (and discarding) this much more, so a client that sends a
# moderately oversized file reads our 413 instead of a reset connection mid-write.
_DRAIN_BYTES = 8 * 1024 * 1024
_MAX_DECODER_BUFFER = 256 * 1024
_FEED_SLICE = 64 * 1024
_MAX_PARTS = 16
_DRAIN_SECONDS = 10.0
_MAX_NAME_CHARS = 255
_WRITE_BATCH = 256 * 1024


@attrs.frozen
class ReceivedFile:
    """A complete upload in a temporary file; the caller renames it into place or deletes it."""

    path: Path
    filename: str
    size: int
    sha256: str


def display_name(raw: str | None) -> str:
    """The uploaded filename as display data: last path component, no control characters.

    It is never used as a path (storage uses ids), but it is shown in listings, artifacts and a
    download's Content-Disposition, where a ``../`` or a newline has no business."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    if name in ("", ".", ".."):
        return "upload"
    return name[:_MAX_NAME_CHARS]


def _boundary(content_type: str | None) -> bytes:
    media, options = parse_options_header(content_type or "")
    if media.lower() != "multipart/form-data":
        raise UnsupportedMediaType(
            f"expected Content-Type multipart/form-data, got {media or 'none'}",
            {"expected": "multipart/form-data", "got": media or None},
        )
    boundary = options.get("boundary", "")
    if not boundary:
        raise BadRequest(
            "multipart/form-data without a boundary",
            [FieldProblem("Content-Type", "boundary parameter missing")],
        )
    return boundary.encode("latin-1")


async def receive_file(request: Any, *, field: str, dest_dir: Path, max_bytes: int) -> ReceivedFile:
    """Stream the multipart part named ``field`` of ``request`` into ``dest_dir``.

    Raises 415 for another media type, 400 for a broken form or a missing part, 413 when the
    file (or the whole body) exceeds ``max_bytes``. Other parts are read and ignored.
    """
    declared = request.headers.get("Content-Length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes + MULTIPART_OVERHEAD:
        # Refused before a byte is read (CloseUnreadBodies closes the connection after).
        raise _too_large(max_bytes)
    decoder = MultipartDecoder(
        _boundary(request.headers.get("Content-Type")),
        max_form_memory_size=_MAX_DECODER_BUFFER,
        max_parts=_MAX_PARTS,
    )
    parts = _FormState(field)
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=".upload-", dir=dest_dir)
    temp = Path(temp_name)
    out = os.fdopen(fd, "wb")
    digest = hashlib.sha256()
    size = 0
    received = 0
    too_large = False
    kept = False
    # Small pieces are gathered and handed to a thread together: a trickling client (50 bytes a
    # second, times 200) must not cost a thread hop per piece, which queued every other
    # request's store access behind them.
    pending = bytearray()
    try:
        async for chunk in request.body:
            received += len(chunk)
            if received > max_bytes + MULTIPART_OVERHEAD:
                too_large = True
                break
            data = parts.feed(decoder, chunk)
            if data:
                size += len(data)
                if size > max_bytes:
                    too_large = True
                    break
                pending += data
                if len(pending) >= _WRITE_BATCH:
                    await trio.to_thread.run_sync(_hash_and_write, digest, out, bytes(pending))
                    pending.clear()
        if too_large:
            raise _too_large(max_bytes)
        data = parts.feed(decoder, None)
        if data:
            size += len(data)
            if size > max_bytes:
                raise _too_large(max_bytes)
            pending += data
        if pending:
            await trio.to_thread.run_sync(_hash_and_write, digest, out, bytes(pending))
        if not parts.done:
            raise BadRequest(
                "the multipart body ended before its closing boundary",
                [FieldProblem("(body)", "truncated multipart data")],
            )
        if parts.filename is None:
            raise BadRequest(
                f"no file part named {field!r} in the form",
                [FieldProblem(field, "required file part missing")],
            )
        await trio.to_thread.run_sync(out.flush)
        out.close()
        kept = True
        return ReceivedFile(temp, parts.filename, size, digest.hexdigest())
    except (BadRequest, PayloadTooLarge):
        # Read (and discard) the rest of the body before answering: hypercorn cannot reuse a
        # connection whose request was not read to the end, and a client still sending would
        # see a reset instead of our error. Bounded, so a huge body cannot keep us reading.
        await _drain(request.body, received, max_bytes + MULTIPART_OVERHEAD + _DRAIN_BYTES)
        raise
    finally:
        if not kept:
            out.close()
            temp.unlink(missing_ok=True)


def _hash_and_write(digest: Any, out: Any, data: bytes) -> None:
    """Off the event loop: hashing grows with the upload, so it runs with the write."""
    digest.update(data)
    out.write(data)


async def _drain(body: Any, received: int, limit: int) -> None:
    with trio.move_on_after(_DRAIN_SECONDS):
        async for chunk in body:
            received += len(chunk)
            if received > limit:
                return


class _FormState:
    """Which part the decoder is in; collects the target file's bytes from each fed chunk."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.filename: str | None = None
        self.in_target = False
        self.done = False

    def feed(self, decoder: MultipartDecoder, chunk: bytes | None) -> bytes:
        """Feed ``chunk`` (None: end of body) and return the target file's bytes in it."""
        pending: list[bytes] = []
        try:
            if chunk is None:
                decoder.receive_data(None)
                self._drain(decoder, pending)
            else:
                # In slices: the decoder refuses to buffer more than _MAX_DECODER_BUFFER.
                for start in range(0, len(chunk), _FEED_SLICE):
                    decoder.receive_data(chunk[start : start + _FEED_SLICE])
                    self._drain(decoder, pending)
        except RequestEntityTooLarge:
            raise BadRequest(
                "malformed form: too many parts, or too much data outside any part",
                [FieldProblem("(body)", f"at most {_MAX_PARTS} parts")],
            ) from None
        except ValueError as exc:
            raise BadRequest(
                "the multipart body is malformed",
                [FieldProblem("(body)", str(exc) or "malformed multipart data")],
            ) from None
        return b"".join(pending)

    def _drain(self, decoder: MultipartDecoder, pending: list[bytes]) -> None:
        while not self.done:
            event = decoder.next_event()
            if isinstance(event, NeedData):
                return
            if isinstance(event, File):
                self.in_target = event.name == self.field and self.filename is None
                if self.in_target:
                    self.filename = display_name(event.filename)
            elif isinstance(event, Field):
                self.in_target = False
            elif isinstance(event, Data) and self.in_target:
                pending.append(event.data)
            elif isinstance(event, Epilogue):
                self.done = True


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the upload is larger than the limit of {_mib(max_bytes)} (ADE_MAX_UPLOAD_MB)",
        {"max_bytes": max_bytes},
    )


def _mib(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n % (1024 * 1024) == 0 else f"{n} bytes"
