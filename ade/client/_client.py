"""The client itself; errors come back as :class:`ApiError` carrying the server's error body."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import trio
import trio_websocket

from ade.wire import NORMAL_CLOSURE, SLOW_CONSUMER_CLOSE_CODE

__all__ = [
    "AdeClient",
    "ApiError",
    "EventStreamClosed",
    "open_websocket",
    "server_root",
    "zip_folder",
]

_API_SUFFIX = "/api/v1"
SERVICE_UNAVAILABLE = 503
# How often a follower retries while the server is away (a restart takes about a second).
_RECONNECT_INTERVAL_SECONDS = 0.5
_SKIP_DIRS = frozenset({"__pycache__", ".git", ".mypy_cache", ".pytest_cache"})


class ApiError(Exception):
    """The server answered with an error: ``status``, and its ``code``/``message``/``details``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after


class EventStreamClosed(Exception):
    """An event stream ended before the job's terminal event (``code`` says why: 1001 the
    service is stopping, 4008 this client fell behind)."""

    def __init__(self, code: int, reason: str | None, last_seq: int) -> None:
        super().__init__(f"event stream closed with {code} ({reason or 'no reason'})")
        self.code = code
        self.reason = reason
        self.last_seq = last_seq


@asynccontextmanager
async def open_websocket(url: str) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """``trio_websocket.open_websocket_url``, but the TCP stream is ours and always closed, and
    exceptions come out as themselves.

    Why: trio-websocket 0.12 never closes a client's TCP socket after a server-initiated close
    (the reader task stops on EOF without closing it), after a rejected handshake, nor when the
    handshake or the stream is cancelled; the socket then leaks until garbage collection (a
    ResourceWarning, an error under -W error). And the connection lives in a nursery, which
    wraps whatever the ``async with`` body raises in an ExceptionGroup: a lone exception is
    unwrapped, so ``except EventStreamClosed`` (or ``ApiError`` for a refused handshake) works.
    """
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if secure:
        stream: trio.abc.Stream = await trio.open_ssl_over_tcp_stream(host, port)
    else:
        stream = await trio.open_tcp_stream(host, port)
    try:
        async with trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(
                nursery, stream, parts.netloc or host, resource
            )
            try:
                yield ws
            finally:
                # Shielded and bounded: the close handshake is sent even when the caller was
                # cancelled, and a server that never answers it cannot hold us.
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        only = group.exceptions[0]
        if isinstance(only, trio_websocket.ConnectionRejected):
            # The handshake is refused inside trio-websocket's reader task: surface it the way
            # every other refusal is reported, as an ApiError with the server's error body.
            raise _rejection_error(only) from None
        raise only from None
    finally:
        await trio.aclose_forcefully(stream)


def _rejection_error(rejected: trio_websocket.ConnectionRejected) -> ApiError:
    import json

    try:
        error = json.loads(rejected.body or b"")["error"]
        return ApiError(rejected.status_code, error["code"], error["message"], error.get("details"))
    except (ValueError, KeyError, TypeError):
        return ApiError(rejected.status_code, "http_error", "websocket handshake refused")


def zip_folder(folder: Path) -> bytes:
    """A config package folder as a .zip in memory (caches and symlinks left out)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
            for name in sorted(files):
                path = Path(root) / name
                if path.is_symlink() or name.endswith((".pyc", ".pyo")):
                    continue
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def server_root(url: str) -> str:
    """The server's root URL: ``ade serve`` prints ``.../api/v1`` as the API's address, and
    either spelling may end up in ADE_URL, so a trailing ``/api/v1`` (and slashes) is dropped."""
    root = url.rstrip("/")
    if root.endswith(_API_SUFFIX):
        root = root[: -len(_API_SUFFIX)].rstrip("/")
    return root


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        code, message, details = error["code"], error["message"], error.get("details")
    except (ValueError, KeyError, TypeError):
        code, message, details = "http_error", response.text[:200] or response.reason_phrase, None
    retry_after = response.headers.get("Retry-After")
    raise ApiError(
        response.status_code,
        code,
        message,
        details,
        float(retry_after)
        if retry_after and retry_after.isascii() and retry_after.isdigit()
        else None,
    )


class AdeClient:
    """One workspace of one ADE server. Use as ``async with``."""

    def __init__(
        self,
        url: str,
        workspace: str = "default",
        *,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = server_root(url)
        self.workspace = workspace
        self._prefix = f"/api/v1/workspaces/{quote(workspace, safe='')}"
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout, transport=transport)

    async def __aenter__(self) -> AdeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._http.request(method, path, **kwargs)
        _raise_for(response)
        return response.json()

    # -- service ----------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        response = await self._http.get("/api/v1/health")
        if response.status_code not in (200, 503):
            _raise_for(response)
        return response.json()  # type: ignore[no-any-return]

    # -- documents --------------------------------------------------------------------------

    async def upload_document(
        self, path: Path | None = None, *, filename: str | None = None, data: bytes | None = None
    ) -> dict[str, Any]:
        """Upload a file from ``path`` (streamed), or ``data`` under ``filename``."""
        if path is not None:
            with open(path, "rb") as handle:
                files = {"file": (filename or path.name, handle)}
                return await self._json("POST", f"{self._prefix}/documents", files=files)  # type: ignore[no-any-return]
        if data is None or filename is None:
            raise ValueError("give a path, or data and a filename")
        return await self._json(  # type: ignore[no-any-return]
            "POST", f"{self._prefix}/documents", files={"file": (filename, data)}
        )

    async def list_documents(self) -> list[dict[str, Any]]:
        return (await self._json("GET", f"{self._prefix}/documents"))["items"]  # type: ignore[no-any-return]

    async def get_document(self, document_id: str) -> dict[str, Any]:
        return await self._json(  # type: ignore[no-any-return]
            "GET", f"{self._prefix}/documents/{quote(document_id, safe='')}"
        )

    async def document_content(self, document_id: str) -> bytes:
        response = await self._http.get(
            f"{self._prefix}/documents/{quote(document_id, safe='')}/content"
        )
        _raise_for(response)
        return response.content

    # -- configs ----------------------------------------------------------------------------

    async def add_config(self, path: Path) -> dict[str, Any]:
        """Publish a config package: a .zip as is, a folder zipped on the fly."""
        if path.is_dir():
            data, name = zip_folder(path), f"{path.name}.zip"
        else:
            data, name = await trio.to_thread.run_sync(path.read_bytes), path.name
        files = {"package": (name, data, "application/zip")}
        return await self._json("POST", f"{self._prefix}/configs", files=files)  # type: ignore[no-any-return]

    async def list_configs(self) -> list[dict[str, Any]]:
        return (await self._json("GET", f"{self._prefix}/configs"))["items"]  # type: ignore[no-any-return]

    async def get_config(self, config_id: str) -> dict[str, Any]:
        return await self._json("GET", f"{self._prefix}/configs/{quote(config_id, safe='')}")  # type: ignore[no-any-return]

    # -- jobs -------------------------------------------------------------------------------

    async def submit(
        self,
        config_version_id: str,
        document_ids: Sequence[str],
        *,
        runtime_network_access: bool = False,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "config_version_id": config_version_id,
            "document_ids": list(document_ids),
        }
        if runtime_network_access:
            body["runtime_network_access"] = True
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await self._json("POST", f"{self._prefix}/jobs", json=body, headers=headers)  # type: ignore[no-any-return]

    async def list_jobs(
        self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        params = {
            k: v
            for k, v in {"status": status, "limit": limit, "cursor": cursor}.items()
            if v is not None
        }
        return await self._json("GET", f"{self._prefix}/jobs", params=params)  # type: ignore[no-any-return]

    async def get_job(self, job_id: str) -> dict[str, Any]:
        return await self._json("GET", f"{self._prefix}/jobs/{quote(job_id, safe='')}")  # type: ignore[no-any-return]

    async def artifact(self, job_id: str) -> dict[str, Any]:
        return await self._json("GET", f"{self._prefix}/jobs/{quote(job_id, safe='')}/artifact")  # type: ignore[no-any-return]

    async def download_output(self, job_id: str, destination: Path) -> Path:
        """Stream normalized.xlsx to ``destination`` (a file, or a folder: the server's name)."""
        async with self._http.stream(
            "GET", f"{self._prefix}/jobs/{quote(job_id, safe='')}/output"
        ) as response:
            if not response.is_success:
                await response.aread()
                _raise_for(response)
            if destination.is_dir():
                destination = destination / _download_name(response, f"{job_id}.xlsx")
            # Into a hidden neighbour, renamed once complete: a download cut short (the server
            # gone, Ctrl+C) leaves no truncated workbook under the real name.
            partial = destination.with_name(f".{destination.name}.part")
            try:
                with open(partial, "wb") as out:
                    async for chunk in response.aiter_bytes():
                        out.write(chunk)
                partial.replace(destination)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        return destination

    async def retry(self, job_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await self._json(
            "POST", f"{self._prefix}/jobs/{quote(job_id, safe='')}/retry", headers=headers
        )  # type: ignore[no-any-return]

    async def cancel(self, job_id: str) -> dict[str, Any]:
        return await self._json("POST", f"{self._prefix}/jobs/{quote(job_id, safe='')}/cancel")  # type: ignore[no-any-return]

    # -- deletions (204; 409 while something queued or running needs the record) -----------

    async def _delete(self, kind: str, id_: str) -> None:
        response = await self._http.delete(f"{self._prefix}/{kind}/{quote(id_, safe='')}")
        _raise_for(response)

    async def delete_job(self, job_id: str) -> None:
        """Delete a finished job, its record and its directory."""
        await self._delete("jobs", job_id)

    async def delete_document(self, document_id: str) -> None:
        await self._delete("documents", document_id)

    async def delete_config(self, config_id: str) -> None:
        await self._delete("configs", config_id)

    # -- event streams ----------------------------------------------------------------------

    def _ws_url(self, path: str) -> str:
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path + path, "", ""))

    async def events(self, job_id: str, *, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """The job's events with ``seq > after``: the replay, then live, ending after the
        terminal event. Raises :class:`EventStreamClosed` if the stream ends early."""
        url = (
            self._ws_url(f"{self._prefix}/jobs/{quote(job_id, safe='')}/events") + f"?after={after}"
        )
        last = after
        async with open_websocket(url) as ws:
            while True:
                try:
                    message = await ws.get_message()
                except trio_websocket.ConnectionClosed as closed:
                    code = closed.reason.code if closed.reason else 1006
                    if code == NORMAL_CLOSURE:
                        return
                    raise EventStreamClosed(
                        code, closed.reason.reason if closed.reason else None, last
                    ) from None
                event = _parse_event(message)
                last = int(event.get("seq", last))
                yield event

    async def workspace_events(self) -> AsyncIterator[dict[str, Any]]:
        """Live events of every job in the workspace, until the server closes the stream."""
        async with open_websocket(self._ws_url(f"{self._prefix}/events")) as ws:
            while True:
                try:
                    message = await ws.get_message()
                except trio_websocket.ConnectionClosed:
                    return
                yield _parse_event(message)

    async def follow(
        self,
        job_id: str,
        *,
        outlast_restarts: float | None = None,
        on_outage: Callable[[str], None] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """All of the job's events, each once, to its terminal event: :meth:`events`, but after
        a drop (4008, this client fell behind) it reconnects with ``?after=<last seq>``.

        When the service goes away (1001 on shutdown, an abrupt close, connection refused, 503
        while it drains) this raises :class:`EventStreamClosed` (or the transport error) —
        unless ``outlast_restarts`` is a number of seconds: then it keeps reconnecting, twice
        a second, until the server is back (the job's ending is in its events.ndjson whatever
        happened meanwhile) or that long has passed without a connection. ``on_outage(reason)``
        is called once per outage, so a command can say what it is waiting for.
        """
        after = 0
        down_since: float | None = None
        while True:
            try:
                async for event in self.events(job_id, after=after):
                    down_since = None
                    after = int(event.get("seq", after))
                    yield event
                return
            except EventStreamClosed as closed:
                after = closed.last_seq
                if closed.code == SLOW_CONSUMER_CLOSE_CODE:
                    continue
                reason: BaseException = closed
            except ApiError as refused:
                if refused.status != SERVICE_UNAVAILABLE:
                    raise
                reason = refused
            except (
                OSError,
                httpx.TransportError,
                trio.BrokenResourceError,
                trio_websocket.HandshakeError,
            ) as lost:
                reason = lost
            if outlast_restarts is None:
                raise reason
            now = trio.current_time()
            if down_since is None:
                down_since = now
                if on_outage is not None:
                    on_outage(str(reason))
            elif now - down_since > outlast_restarts:
                raise reason
            await trio.sleep(_RECONNECT_INTERVAL_SECONDS)

    async def wait(self, job_id: str) -> dict[str, Any]:
        """Follow the job's events to the end (reconnecting after a drop) and return the job."""
        async for _ in self.follow(job_id):
            pass
        return await self.get_job(job_id)


def _parse_event(message: str | bytes) -> dict[str, Any]:
    import json

    value = json.loads(message)
    if not isinstance(value, dict):
        raise ValueError("an event message must be a JSON object")
    return value


def _download_name(response: httpx.Response, fallback: str) -> str:
    from email.message import Message

    header = response.headers.get("Content-Disposition", "")
    message = Message()
    message["content-disposition"] = header
    name = message.get_filename() or fallback
    return Path(name.replace("\\", "/")).name or fallback
