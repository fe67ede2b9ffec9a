"""The OpenAPI document matches the url map exactly; websocket close codes for slow consumers
and shutdown; health."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio_websocket
from support.api import Service, make_settings

from ade.api import create_app
from ade.api.server import serve_api
from ade.client import AdeClient, EventStreamClosed, open_websocket
from ade.models import JobEvent, JobRecord, JobStatus
from ade.settings import Settings
from ade.store import SqliteStore, open_store
from ade.wire import SLOW_CONSUMER_CLOSE_CODE

_opened: list[SqliteStore] = []


def _open_store(settings: Settings) -> SqliteStore:
    """A store closed when the test ends (a served app never closes the store it is given)."""
    store = open_store(settings)
    _opened.append(store)
    return store


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


async def test_openapi_paths_and_methods_match_the_url_map_exactly(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    with closing(open_store(settings)) as store:
        app = create_app(runtime=None, settings=settings, store=store)
        served: set[tuple[str, str]] = set()
        for rule in app.url_map.iter_rules():
            path = re.sub(r"<(?:[a-z_]+:)?([a-z_]+)>", r"{\1}", rule.rule)
            if rule.websocket:
                served.add((path, "get (websocket)"))
            else:
                served |= {(path, m.lower()) for m in rule.methods & _METHODS}
        # The document this very app serves.
        response = await app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = await response.get_json()
    documented: set[tuple[str, str]] = set()
    # HTTP routes under paths; websocket routes outside them, under x-websockets.
    operations = [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    ] + [(path, "get (websocket)", operation) for path, operation in spec["x-websockets"].items()]
    for path, method, operation in operations:
        documented.add((path, method))
        declared = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
        assert declared == set(re.findall(r"\{([a-z_]+)\}", path)), (path, method)
        assert operation["responses"], (path, method)
        if "{workspace_id}" in path:
            assert "400" in operation["responses"], (path, method)
    assert not set(spec["paths"]) & set(spec["x-websockets"])
    assert served == documented
    # health, openapi, metrics, 5 document, 4 config and 8 job routes (each with its DELETE),
    # 2 websocket streams, the web page and its assets, 3 key and 5 workspace routes
    assert len(served) == 32
    assert {("/", "get"), ("/ui/{name}", "get")} <= served


async def test_openapi_is_served_and_health_reports(
    service: Service, client: httpx.AsyncClient
) -> None:
    spec = (await client.get("/api/v1/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/workspaces/{workspace_id}/jobs" in spec["paths"]
    assert set(spec["paths"]["/api/v1/workspaces/{workspace_id}/jobs"]) == {"get", "post"}
    health = await client.get("/api/v1/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok"
    assert body["store"]["ok"] is True
    assert body["runtime"]["capacity"] == service.settings.queue_size
    assert body["runtime"]["workers"] == service.settings.max_concurrency
    assert body["runtime"]["worker_start"] == "fork"
    runtime = body["runtime"]
    assert (runtime["template_restarts"], runtime["last_template_restart"]) == (0, None)
    assert (runtime["ahead_discards"], runtime["last_ahead_discard"]) == (0, None)
    assert body["sandbox"]["mode"] == "best-effort"
    assert {layer["name"] for layer in body["sandbox"]["layers"]} >= {"rlimits"}


class _Subscription:
    """Stands in for the runtime's subscription: delivers ``events`` then ends as ``dropped``
    (when ``drop``) or stays open (a live stream that only ends at shutdown)."""

    def __init__(self, events: list[JobEvent], drop: bool) -> None:
        self.events = events
        self.drop = drop
        self.dropped = False
        self.closed = False

    # An iterator object, not an async generator: the stream may stop reading it half-way, and
    # an unfinished async generator left to the garbage collector is a ResourceWarning.
    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> JobEvent:
        if self.events:
            return self.events.pop(0)
        if self.drop:
            self.dropped = True
            raise StopAsyncIteration
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.closed = True


class _Runtime:
    def __init__(self, subscription: _Subscription) -> None:
        self.subscription = subscription

    def subscribe(self, workspace_id: str, job_id: str | None = None) -> _Subscription:
        assert (workspace_id, job_id) == ("default", None)
        return self.subscription

    async def read_events(self, workspace_id: str, job_id: str, *, after: int = 0) -> list[Any]:
        return []  # nothing logged yet: every event comes live


def _event(seq: int) -> JobEvent:
    return JobEvent(seq, datetime(2026, 1, 1, tzinfo=UTC), "j1", "default", 1, "progress", {})


@pytest.mark.parametrize("drop", [True, False])
async def test_workspace_stream_closes_4008_for_a_dropped_subscriber_and_1001_on_shutdown(
    tmp_path: Path, drop: bool
) -> None:
    settings = make_settings(tmp_path / "data")
    subscription = _Subscription([_event(1), _event(2)], drop=drop)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        url = await nursery.start(
            lambda task_status: serve_api(
                settings,
                _Runtime(subscription),
                _open_store(settings),
                shutdown_trigger=stop.wait,
                task_status=task_status,
            )
        )
        received = []
        with trio.fail_after(10):
            async with open_websocket(
                url.replace("http://", "ws://") + "/api/v1/workspaces/default/events"
            ) as ws:
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    while True:
                        received.append(json.loads(await ws.get_message()))
                        if len(received) == 2 and not drop:
                            stop.set()
        assert [e["seq"] for e in received] == [1, 2]
        expected = SLOW_CONSUMER_CLOSE_CODE if drop else 1001
        assert closed.value.reason.code == expected
        assert subscription.closed
        stop.set()


class _JobRuntime(_Runtime):
    def subscribe(self, workspace_id: str, job_id: str | None = None) -> _Subscription:
        assert (workspace_id, job_id) == ("default", "j1")
        return self.subscription


async def test_client_event_stream_raises_event_stream_closed_itself(tmp_path: Path) -> None:
    """A dropped stream comes out of AdeClient.events as EventStreamClosed (what wait() and
    `ade submit --wait` catch), not wrapped in the websocket nursery's ExceptionGroup."""
    settings = make_settings(tmp_path / "data")
    store = _open_store(settings)
    await store.insert_job(
        JobRecord("j1", "default", JobStatus.RUNNING, "c1", ("d1",), False, 1, _event(1).ts)
    )
    subscription = _Subscription([_event(1), _event(2)], drop=True)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        url = await nursery.start(
            lambda task_status: serve_api(
                settings,
                _JobRuntime(subscription),
                store,
                shutdown_trigger=stop.wait,
                task_status=task_status,
            )
        )
        seen = []
        with trio.fail_after(10):
            async with AdeClient(url) as client:
                with pytest.raises(EventStreamClosed) as closed:
                    async for event in client.events("j1"):
                        seen.append(event["seq"])
        assert seen == [1, 2]
        assert (closed.value.code, closed.value.last_seq) == (SLOW_CONSUMER_CLOSE_CODE, 2)
        # Any exception of the `async with` body comes out as itself.
        with pytest.raises(LookupError), trio.fail_after(10):
            async with open_websocket(
                url.replace("http://", "ws://") + "/api/v1/workspaces/default/jobs/j1/events"
            ):
                raise LookupError("from the body")
        stop.set()


class _EventList:
    """A live subscription that delivers ``events`` and then waits (an iterator object, not an
    async generator: the stream stops reading it at the terminal event)."""

    def __init__(self, events: list[JobEvent]) -> None:
        self.events = list(events)
        self.dropped = False

    def __aiter__(self) -> _EventList:
        return self

    async def __anext__(self) -> JobEvent:
        if not self.events:
            await trio.sleep_forever()
        return self.events.pop(0)

    def close(self) -> None:
        pass


async def test_client_follow_reconnects_after_a_drop_and_sees_each_event_once(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path / "data")
    store = _open_store(settings)
    await store.insert_job(
        JobRecord("j1", "default", JobStatus.RUNNING, "c1", ("d1",), False, 1, _event(1).ts)
    )
    # First connection: seq 1-2 then dropped (4008); the reconnect (after=2) gets 3 and the end.
    finish = JobEvent(4, _event(1).ts, "j1", "default", 1, "finish", {"status": "success"})
    streams = iter(
        [
            _Subscription([_event(1), _event(2)], drop=True),
            _EventList([_event(2), _event(3), finish]),
        ]
    )

    class Runtime:
        def subscribe(self, workspace_id: str, job_id: str | None = None) -> Any:
            return next(streams)

        async def read_events(self, workspace_id: str, job_id: str, *, after: int = 0) -> list:
            return []  # nothing logged: every event comes live

    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        url = await nursery.start(
            lambda task_status: serve_api(
                settings, Runtime(), store, shutdown_trigger=stop.wait, task_status=task_status
            )
        )
        with trio.fail_after(10):
            async with AdeClient(url) as client:
                seen = [event["seq"] async for event in client.follow("j1")]
        assert seen == [1, 2, 3, 4]
        stop.set()
