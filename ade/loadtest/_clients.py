"""The simulated users: each client loops over job sessions until the run's bounds stop it.

A session: upload a workbook, submit it (honouring 429 + Retry-After unless greedy), maybe cancel
it, follow it over the websocket or by polling, download its artifact and output, and maybe
retry it when it did not succeed. Every request is counted by route template and status.
"""

from __future__ import annotations

import contextlib
import json
import random
import ssl
import time
import uuid
from collections.abc import Callable
from typing import Any

import attrs
import httpx
import trio
import trio_websocket

from ade.client import ApiError, open_websocket
from ade.loadtest._ledger import JobBudget, Ledger, TrackedJob
from ade.loadtest._options import LoadTestOptions
from ade.loadtest._stats import RequestLog
from ade.loadtest._target import Target
from ade.models import TERMINAL_EVENT_TYPES
from ade.wire import NORMAL_CLOSURE, XLSX_MEDIA_TYPE

__all__ = [
    "Client",
    "Problems",
    "SessionAbandoned",
    "Shared",
    "client_loop",
    "health_monitor",
    "is_terminal_event",
    "new_http_client",
    "queue_depth_of",
    "workspace_watcher",
]


class SessionAbandoned(Exception):
    """The server gave an answer a session cannot continue from (already counted)."""


@attrs.define
class Problems:
    """Protocol breaches the clients saw, beyond status codes (each one fails an invariant)."""

    missing_retry_after: int = 0
    # Websocket streams that closed normally without a terminal event, or out of order.
    bad_streams: list[str] = attrs.field(factory=list)
    # Bodies (JSON answers, downloads) that were not what the route promises.
    bad_bodies: list[str] = attrs.field(factory=list)


def is_terminal_event(event: dict[str, Any]) -> bool:
    """The runtime's last event of a job (``finish`` / ``error`` / ``cancel``)."""
    return event.get("type") in TERMINAL_EVENT_TYPES


def queue_depth_of(health: dict[str, Any]) -> tuple[int | None, int | None]:
    """(jobs waiting, queue capacity) from a /api/v1/health body.

    ``runtime`` is the runtime's statistics snapshot; the bound ADE_QUEUE_SIZE applies to
    ``queued + reserved`` (a reservation is a submission between admission and its row), so
    that sum is the depth. (None, None) when the body lacks them: the invariant then FAILs
    with "never reported a queue depth" rather than passing on no evidence."""
    runtime = health.get("runtime")
    if not isinstance(runtime, dict):
        return None, None
    queued, reserved, capacity = (runtime.get(k) for k in ("queued", "reserved", "capacity"))
    if not (isinstance(queued, int) and isinstance(reserved, int)):
        return None, capacity if isinstance(capacity, int) else None
    return queued + reserved, capacity if isinstance(capacity, int) else None


@attrs.define
class Shared:
    """What every client of one run shares: the target, the counters and the ledger."""

    options: LoadTestOptions
    target: Target
    log: RequestLog
    ledger: Ledger
    budget: JobBudget
    problems: Problems
    # config kind -> config version id; workbook kind -> bytes
    config_ids: dict[str, str]
    workbooks: dict[str, bytes]
    cancels: int = 0
    retries: int = 0
    retry_after_waited: float = 0.0
    ws_events: int = 0
    # The API key every request sends (the private server's admin.key, or --api-key /
    # ADE_API_KEY / --data-dir's admin.key with --url); None against ADE_AUTH=disabled.
    api_key: str | None = None


def new_http_client(
    options: LoadTestOptions, tls: ssl.SSLContext, api_key: str | None = None
) -> httpx.AsyncClient:
    """One connection pool per simulated user, as real users have.

    Why not one shared pool: httpx's pool serialises its bookkeeping, and on this machine a
    single AsyncClient driving 100 concurrent requests made 142 requests/s where 100 clients
    with a pool each made 1,960/s against the same server. ``tls`` is shared because building
    an SSL context per client costs tens of milliseconds (loopback http never uses it).
    """
    headers = {} if api_key is None else {"Authorization": f"Bearer {api_key}"}
    return httpx.AsyncClient(verify=tls, timeout=options.request_timeout, headers=headers)


@attrs.define
class Client:
    """One simulated user: its own HTTP connection pool, the run's shared state."""

    shared: Shared
    http: httpx.AsyncClient

    @property
    def options(self) -> LoadTestOptions:
        return self.shared.options

    @property
    def target(self) -> Target:
        return self.shared.target

    @property
    def log(self) -> RequestLog:
        return self.shared.log

    @property
    def ledger(self) -> Ledger:
        return self.shared.ledger

    @property
    def problems(self) -> Problems:
        return self.shared.problems

    async def request(self, route: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One HTTP request, counted. Waits out and repeats across a chaos outage; any other
        transport failure is counted and abandons the session."""
        while True:
            await self.target.wait_up()
            started = time.monotonic()
            try:
                response = await self.http.request(method, self.target.api + path, **kwargs)
            except httpx.TransportError as exc:
                outage = self.target.overlaps_outage(started, time.monotonic())
                self.log.record(route, f"transport:{type(exc).__name__}", during_outage=outage)
                if outage:
                    continue
                raise SessionAbandoned(f"{route}: {type(exc).__name__}") from None
            elapsed = time.monotonic() - started
            self.log.record(
                route,
                str(response.status_code),
                during_outage=self.target.overlaps_outage(started, time.monotonic()),
            )
            if route == "POST /jobs":
                self.log.record_submit_latency(elapsed)
            return response

    def body(self, route: str, response: httpx.Response) -> dict[str, Any]:
        """The JSON object a 2xx promises; a malformed one is recorded and ends the session."""
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            self.problems.bad_bodies.append(
                f"{route} {response.status_code}: not a JSON object with an id"
            )
            raise SessionAbandoned(f"{route}: malformed body")
        return data

    async def upload(self, workbook_kind: str, rng: random.Random) -> str:
        name = f"{workbook_kind}-{rng.randrange(10**9)}.xlsx"
        response = await self.request(
            "POST /documents",
            "POST",
            "/documents",
            files={"file": (name, self.shared.workbooks[workbook_kind], XLSX_MEDIA_TYPE)},
        )
        if response.status_code != 201:
            raise SessionAbandoned(f"upload answered {response.status_code}")
        return str(self.body("POST /documents", response)["id"])

    async def admit(self, route: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        """POST until 202. On 429 wait Retry-After (greedy: retry at once). A fresh
        Idempotency-Key per attempt after a 429 (nothing was persisted); the same key when a
        chaos outage forces a repeat, so the server replays instead of creating a second job."""
        while True:
            headers = {"Idempotency-Key": uuid.uuid4().hex}
            kwargs: dict[str, Any] = {"headers": headers}
            if body is not None:
                kwargs["json"] = body
            response = await self.request(route, "POST", path, **kwargs)
            if response.status_code == 202:
                return self.body(route, response)
            if response.status_code != 429:
                raise SessionAbandoned(f"{route} answered {response.status_code}")
            delay = _retry_after(response)
            if delay is None:
                self.problems.missing_retry_after += 1
                delay = 1.0
            if self.options.greedy:
                await trio.sleep(0)
                continue
            self.shared.retry_after_waited += delay
            await trio.sleep(delay)

    async def job(self, job_id: str) -> dict[str, Any]:
        response = await self.request("GET /jobs/{id}", "GET", f"/jobs/{job_id}")
        if response.status_code != 200:
            raise SessionAbandoned(f"GET /jobs/{job_id} answered {response.status_code}")
        return self.body("GET /jobs/{id}", response)

    async def poll(self, tracked: TrackedJob) -> None:
        while True:
            tracked.record = await self.job(tracked.job_id)
            if tracked.terminal:
                return
            await trio.sleep(self.options.poll_interval)

    async def watch(self, tracked: TrackedJob) -> None:
        """Follow the job's event stream to its terminal event, then read its final record.
        A stream cut by a chaos kill falls back to polling."""
        url = f"{self.target.ws_api}/jobs/{tracked.job_id}/events"
        route = "WS /jobs/{id}/events"
        started = time.monotonic()
        last_seq = 0
        saw_terminal = False
        close_code: int | None = None
        try:
            async with open_websocket(url, api_key=self.shared.api_key) as ws:
                self.log.record(route, "101")
                while True:
                    try:
                        message = await ws.get_message()
                    except trio_websocket.ConnectionClosed as closed:
                        close_code = closed.reason.code if closed.reason else None
                        self.log.record(f"{route} close", str(close_code))
                        break
                    try:
                        event = json.loads(message)
                        seq = int(event["seq"])
                    except (ValueError, TypeError, KeyError):
                        self.problems.bad_streams.append(
                            f"{tracked.job_id}: a message is not an event with a seq"
                        )
                        continue
                    self.shared.ws_events += 1
                    if seq <= last_seq:
                        self.problems.bad_streams.append(
                            f"{tracked.job_id}: seq {seq} after {last_seq}"
                        )
                    last_seq = seq
                    if is_terminal_event(event):
                        saw_terminal = True
        except ApiError as rejected:  # the handshake was refused
            self.log.record(route, str(rejected.status))
        except (trio_websocket.HandshakeError, OSError) as exc:
            outage = self.target.overlaps_outage(started, time.monotonic())
            self.log.record(route, f"transport:{type(exc).__name__}", during_outage=outage)
            if not outage:
                raise SessionAbandoned(f"{route}: {type(exc).__name__}") from None
        # A normal closure (1000) promises the terminal event came first. Other closes (a slow
        # consumer dropped, the service going away, a chaos kill) are allowed: fall back to
        # polling, which is what a well-behaved client does.
        if close_code == NORMAL_CLOSURE and not saw_terminal:
            self.problems.bad_streams.append(
                f"{tracked.job_id}: closed with 1000 before a terminal event"
            )
        await self.poll(tracked)

    async def download(self, tracked: TrackedJob) -> None:
        artifact = await self.request(
            "GET /jobs/{id}/artifact", "GET", f"/jobs/{tracked.job_id}/artifact"
        )
        if artifact.status_code == 200:
            try:
                json.loads(artifact.content)
            except ValueError:
                self.problems.bad_bodies.append(f"{tracked.job_id}: artifact is not JSON")
        output = await self.request(
            "GET /jobs/{id}/output", "GET", f"/jobs/{tracked.job_id}/output"
        )
        if output.status_code == 200 and not output.content.startswith(b"PK"):
            self.problems.bad_bodies.append(f"{tracked.job_id}: output is not an xlsx")
        if tracked.status == "success" and output.status_code != 200:
            self.problems.bad_bodies.append(
                f"{tracked.job_id}: success but output answered {output.status_code}"
            )

    async def cancel(self, tracked: TrackedJob, rng: random.Random) -> None:
        """Cancel a little after submitting: sometimes queued, sometimes running, sometimes
        already finished (409), as a user who changes their mind would."""
        await trio.sleep(rng.uniform(0.0, 0.5))
        tracked.cancel_requested = True
        self.shared.cancels += 1
        with contextlib.suppress(SessionAbandoned):  # counted; the follow-up still ends the job
            await self.request("POST /jobs/{id}/cancel", "POST", f"/jobs/{tracked.job_id}/cancel")

    async def follow(self, tracked: TrackedJob, rng: random.Random) -> None:
        if rng.random() < self.options.watch_fraction:
            await self.watch(tracked)
        else:
            await self.poll(tracked)
        await self.download(tracked)

    async def session(self, rng: random.Random) -> None:
        workbook_kind = _pick(rng, self.options.workbook_mix)
        config_kind = _pick(rng, self.options.config_mix)
        document_id = await self.upload(workbook_kind, rng)
        body = {
            "config_version_id": self.shared.config_ids[config_kind],
            "document_ids": [document_id],
        }
        job = await self.admit("POST /jobs", "/jobs", body)
        tracked = self.ledger.accept(
            TrackedJob(
                job["id"], config_kind, workbook_kind, "submit", time.monotonic(), record=job
            )
        )
        async with trio.open_nursery() as nursery:
            if rng.random() < self.options.cancel_fraction:
                nursery.start_soon(self.cancel, tracked, rng)
            await self.follow(tracked, rng)
        if tracked.status != "success" and rng.random() < self.options.retry_fraction:
            retried = await self.admit(
                "POST /jobs/{id}/retry", f"/jobs/{tracked.job_id}/retry", None
            )
            self.shared.retries += 1
            again = self.ledger.accept(
                TrackedJob(
                    retried["id"],
                    config_kind,
                    workbook_kind,
                    "retry",
                    time.monotonic(),
                    record=retried,
                )
            )
            await self.follow(again, rng)


def _pick(rng: random.Random, mix: dict[str, float]) -> str:
    kinds = [kind for kind, weight in mix.items() if weight > 0]
    return rng.choices(kinds, weights=[mix[kind] for kind in kinds])[0]


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        return None


async def client_loop(shared: Shared, tls: ssl.SSLContext, rng: random.Random) -> None:
    """Sessions back to back until the job budget is spent (the caller enforces the deadline)."""
    async with new_http_client(shared.options, tls, shared.api_key) as http:
        client = Client(shared, http)
        while shared.budget.take():
            abandoned = False
            try:
                await client.session(rng)
            except* SessionAbandoned:
                # Already counted where it happened; also arrives wrapped in an ExceptionGroup
                # from the session's cancel nursery, hence except*.
                abandoned = True
            if abandoned:
                await trio.sleep(0.05)  # do not spin on a server that keeps refusing


async def health_monitor(
    context: Client, on_sample: Callable[[int | None, int | None], None]
) -> None:
    """Poll /api/v1/health for the queue depth until cancelled."""
    while True:
        await context.target.wait_up()
        started = time.monotonic()
        try:
            response = await context.http.get(context.target.health_url)
        except httpx.TransportError as exc:
            outage = context.target.overlaps_outage(started, time.monotonic())
            context.log.record(
                "GET /health", f"transport:{type(exc).__name__}", during_outage=outage
            )
        else:
            context.log.record(
                "GET /health",
                str(response.status_code),
                during_outage=context.target.overlaps_outage(started, time.monotonic()),
            )
            if response.status_code == 200:
                on_sample(*queue_depth_of(response.json()))
        await trio.sleep(context.options.health_interval)


async def workspace_watcher(context: Client) -> None:
    """A UI-like subscriber of WS /events for the whole run (reconnecting after a close)."""
    route = "WS /events"
    while True:
        await context.target.wait_up()
        started = time.monotonic()
        try:
            async with open_websocket(
                f"{context.target.ws_api}/events", api_key=context.shared.api_key
            ) as ws:
                context.log.record(route, "101")
                while True:
                    try:
                        await ws.get_message()
                    except trio_websocket.ConnectionClosed as closed:
                        code = closed.reason.code if closed.reason else None
                        context.log.record(f"{route} close", str(code))
                        break
                    context.shared.ws_events += 1
        except ApiError as rejected:  # the handshake was refused
            context.log.record(route, str(rejected.status))
            await trio.sleep(1.0)
        except (trio_websocket.HandshakeError, OSError) as exc:
            outage = context.target.overlaps_outage(started, time.monotonic())
            context.log.record(route, f"transport:{type(exc).__name__}", during_outage=outage)
            await trio.sleep(0.2)
