"""API keys over a real socket: every route of the route table with no key, a revoked key, a key
of another workspace, a viewer key on a write route and a member key on an admin route; what
each role may do; revocation at once; workspaces explicit; keys never leak."""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from support.api import Service, package_zip, wait_for_status, workbook_bytes
from support.auth import Keys, auth_headers, start_auth_service

from ade.auth import keys as auth_keys
from ade.client import ApiError, open_websocket


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Service, Keys]]:
    async with trio.open_nursery() as nursery:
        service, keys = await start_auth_service(nursery, tmp_path / "data")
        yield service, keys
        service.stop.set()


async def _routes(service: Service, keys: Keys) -> list[tuple[str, str, str]]:
    """(method, concrete path, required access) of every route in the OpenAPI document, which
    is built from the route table: a new route is in this list without anyone adding it."""
    async with httpx.AsyncClient(base_url=service.url, headers=auth_headers(keys.viewer)) as http:
        spec = (await http.get("/api/v1/openapi.json")).json()
    found = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            found.append((method.upper(), path, operation["x-access"]))
    for path, operation in spec["x-websockets"].items():
        found.append(("WEBSOCKET", path, operation["x-access"]))
    concrete = []
    for method, path, access in found:
        filled = path.replace("{workspace_id}", "default")
        filled = re.sub(r"\{[a-z_]+\}", "01hzzzzzzzzzzzzzzzzzzzzzzz", filled)
        concrete.append((method, filled, access))
    return concrete


async def _status(service: Service, method: str, path: str, token: str | None) -> int:
    if method == "WEBSOCKET":
        url = service.url.replace("http://", "ws://") + path
        try:
            async with open_websocket(url, api_key=token):
                return 101
        except ApiError as refused:
            return refused.status
    headers = {} if token is None else auth_headers(token)
    async with httpx.AsyncClient(base_url=service.url, headers=headers) as http:
        return (await http.request(method, path)).status_code


async def test_every_route_refuses_what_its_caller_may_not_do(served: tuple[Service, Keys]) -> None:
    service, keys = served
    routes = await _routes(service, keys)
    assert len(routes) >= 28
    seen_access = {access for _, _, access in routes}
    assert seen_access == {"public", "any_key", "read", "write", "admin"}
    for method, path, access in routes:
        route = (method, path)
        if access == "public":
            assert await _status(service, method, path, None) not in (401, 403), route
            continue
        assert await _status(service, method, path, None) == 401, route
        assert await _status(service, method, path, keys.revoked) == 401, route
        assert await _status(service, method, path, "ade_not-a-key") == 401, route
        if "/workspaces/default" in path:
            # A member of workspace "other" is refused in "default", whatever the route.
            assert await _status(service, method, path, keys.outsider) == 403, route
        if access == "write":
            assert await _status(service, method, path, keys.viewer) == 403, route
        if access == "admin":
            assert await _status(service, method, path, keys.member) == 403, route
            assert await _status(service, method, path, keys.viewer) == 403, route


async def test_401_and_403_are_in_the_one_error_shape(served: tuple[Service, Keys]) -> None:
    service, keys = served
    async with httpx.AsyncClient(base_url=service.url) as http:
        missing = await http.get("/api/v1/workspaces/default/jobs")
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        assert missing.json()["error"]["code"] == "unauthorized"
        assert set(missing.json()["error"]) == {"code", "message", "details"}
        wrong_scheme = await http.get(
            "/api/v1/workspaces/default/jobs", headers={"Authorization": f"Basic {keys.member}"}
        )
        assert wrong_scheme.json()["error"]["message"] == (
            "the Authorization header must be 'Bearer <API key>'"
        )
        revoked = await http.get(
            "/api/v1/workspaces/default/jobs", headers=auth_headers(keys.revoked)
        )
        assert revoked.json()["error"] == {
            "code": "unauthorized",
            "message": f"API key {keys.id_of('revoked')} was revoked",
            "details": {"key_id": keys.id_of("revoked")},
        }
        viewer = await http.post(
            "/api/v1/workspaces/default/jobs", json={}, headers=auth_headers(keys.viewer)
        )
        assert viewer.status_code == 403
        assert viewer.json()["error"]["code"] == "forbidden"
        assert viewer.json()["error"]["message"] == (
            f"key {keys.id_of('viewer')} is a viewer key: read only"
        )
        outsider = await http.get(
            "/api/v1/workspaces/default/jobs", headers=auth_headers(keys.outsider)
        )
        assert outsider.json()["error"]["details"] == {
            "workspace_id": "default",
            "key_workspaces": ["other"],
        }


async def test_roles_do_what_they_may(served: tuple[Service, Keys]) -> None:
    service, keys = served
    base = "/api/v1/workspaces/default"
    async with (
        httpx.AsyncClient(
            base_url=service.url, headers=auth_headers(keys.member), timeout=30
        ) as member,
        httpx.AsyncClient(
            base_url=service.url, headers=auth_headers(keys.viewer), timeout=30
        ) as viewer,
        httpx.AsyncClient(
            base_url=service.url, headers=auth_headers(keys.admin), timeout=30
        ) as admin,
    ):
        config = await member.post(
            f"{base}/configs", files={"package": ("c.zip", package_zip(), "application/zip")}
        )
        assert config.status_code == 201, config.text
        document = await member.post(
            f"{base}/documents", files={"file": ("m.xlsx", workbook_bytes())}
        )
        body = {"config_version_id": config.json()["id"], "document_ids": [document.json()["id"]]}
        submitted = await member.post(f"{base}/jobs", json=body)
        assert submitted.status_code == 202
        # The job says which key submitted it: the key's id, never the key.
        assert submitted.json()["submitted_by"] == keys.id_of("member")
        job = await wait_for_status(viewer, f"{base}/jobs/{submitted.json()['id']}", {"success"})
        assert job["submitted_by"] == keys.id_of("member")
        retried = await admin.post(f"{base}/jobs/{job['id']}/retry")
        assert retried.json()["submitted_by"] == keys.id_of("admin")
        await wait_for_status(admin, f"{base}/jobs/{retried.json()['id']}", {"success"})
        # A browser page's websocket sends the key as ?access_token=.
        ws_url = service.url.replace("http://", "ws://") + f"{base}/jobs/{job['id']}/events"
        async with open_websocket(f"{ws_url}?access_token={keys.viewer}") as ws:
            assert '"type"' in await ws.get_message()
        # Each key lists the workspaces it may use.
        listed = (await viewer.get("/api/v1/workspaces")).json()["items"]
        assert [w["id"] for w in listed] == ["default"]
        listed = (await admin.get("/api/v1/workspaces")).json()["items"]
        assert [w["id"] for w in listed] == ["default", "other"]
        keys_listed = (await admin.get("/api/v1/keys")).json()["items"]
        assert len(keys_listed) == 5
        assert all("token" not in k and "token_hash" not in k for k in keys_listed)
        member_row = next(k for k in keys_listed if k["id"] == keys.id_of("member"))
        assert member_row["last_used_at"] is not None
        assert member_row["workspaces"] == ["default"]


async def test_revocation_holds_from_the_next_request(served: tuple[Service, Keys]) -> None:
    service, keys = served
    async with httpx.AsyncClient(base_url=service.url, headers=auth_headers(keys.admin)) as admin:
        created = (
            await admin.post(
                "/api/v1/keys", json={"name": "n", "role": "viewer", "workspaces": ["default"]}
            )
        ).json()
        headers = auth_headers(created["token"])
        async with httpx.AsyncClient(base_url=service.url, headers=headers) as user:
            assert (await user.get("/api/v1/workspaces/default/jobs")).status_code == 200
            assert (await admin.delete(f"/api/v1/keys/{created['id']}")).status_code == 200
            assert (await user.get("/api/v1/workspaces/default/jobs")).status_code == 401
        missing = await admin.delete("/api/v1/keys/01hzzzzzzzzzzzzzzzzzzzzzzz")
        assert missing.status_code == 404


async def test_key_creation_is_checked(served: tuple[Service, Keys]) -> None:
    service, keys = served
    async with httpx.AsyncClient(base_url=service.url, headers=auth_headers(keys.admin)) as admin:
        bad = await admin.post("/api/v1/keys", json={"name": "x", "role": "owner"})
        assert bad.json()["error"]["details"] == [
            {"field": "role", "message": "one of admin, member, viewer"}
        ]
        bad = await admin.post("/api/v1/keys", json={"name": "x", "role": "member"})
        assert bad.json()["error"]["details"] == [
            {"field": "workspaces", "message": "a member key needs at least one workspace"}
        ]
        unknown = await admin.post(
            "/api/v1/keys", json={"name": "x", "role": "viewer", "workspaces": ["nope"]}
        )
        assert (unknown.status_code, unknown.json()["error"]["details"]) == (
            404,
            {"workspace_id": "nope"},
        )


async def test_workspaces_are_explicit(served: tuple[Service, Keys]) -> None:
    service, keys = served
    async with httpx.AsyncClient(
        base_url=service.url, headers=auth_headers(keys.admin), timeout=30
    ) as admin:
        # A typo is a 404 everywhere, not an empty workspace.
        for path in ("/jobs", "/documents", "/configs", ""):
            typo = await admin.get(f"/api/v1/workspaces/defualt{path}")
            assert typo.status_code == 404, path
            assert typo.json()["error"]["details"] == {"workspace_id": "defualt"}
        with pytest.raises(ApiError) as refused:
            async with open_websocket(
                service.url.replace("http://", "ws://") + "/api/v1/workspaces/defualt/events",
                api_key=keys.admin,
            ):
                pass
        assert refused.value.status == 404
        assert (await admin.post("/api/v1/workspaces", json={"id": "team"})).status_code == 201
        again = await admin.post("/api/v1/workspaces", json={"id": "team"})
        assert again.status_code == 409
        bad = await admin.post("/api/v1/workspaces", json={"id": "Team!"})
        assert bad.status_code == 400
        # Data follows a rename; a member key of the workspace too.
        member = (
            await admin.post(
                "/api/v1/keys", json={"name": "t", "role": "member", "workspaces": ["team"]}
            )
        ).json()
        uploaded = await admin.post(
            "/api/v1/workspaces/team/documents", files={"file": ("a.xlsx", workbook_bytes())}
        )
        renamed = await admin.patch("/api/v1/workspaces/team", json={"id": "team-2"})
        assert renamed.status_code == 200 and renamed.json()["id"] == "team-2"
        moved = await admin.get(
            f"/api/v1/workspaces/team-2/documents/{uploaded.json()['id']}/content"
        )
        assert hashlib.sha256(moved.content).hexdigest() == uploaded.json()["sha256"]
        assert (await admin.get("/api/v1/workspaces/team/documents")).status_code == 404
        listed = (await admin.get("/api/v1/keys")).json()["items"]
        assert next(k for k in listed if k["id"] == member["id"])["workspaces"] == ["team-2"]
        # Delete: refused while a job runs, then it and its rows and files are gone.
        config = await admin.post(
            "/api/v1/workspaces/team-2/configs",
            files={"package": ("c.zip", package_zip(sleep_seconds=2), "application/zip")},
        )
        job = await admin.post(
            "/api/v1/workspaces/team-2/jobs",
            json={
                "config_version_id": config.json()["id"],
                "document_ids": [uploaded.json()["id"]],
            },
        )
        busy = await admin.delete("/api/v1/workspaces/team-2")
        assert busy.status_code == 409
        assert busy.json()["error"]["details"]["active_jobs"] == 1
        await wait_for_status(
            admin, f"/api/v1/workspaces/team-2/jobs/{job.json()['id']}", {"success"}
        )
        assert (await admin.delete("/api/v1/workspaces/team-2")).status_code == 204
        assert (await admin.get("/api/v1/workspaces/team-2/jobs")).status_code == 404
        assert not (service.settings.documents_dir / "team-2").exists()
        assert not (service.settings.jobs_dir / job.json()["id"]).exists()
        # its prepared config too (no other workspace holds it)
        assert not (service.settings.venvs_dir / config.json()["id"]).exists()
        assert sorted(p.name for p in service.settings.venvs_dir.iterdir()) == []
        # `default` stays: the client commands use it when no workspace is named.
        assert (await admin.delete("/api/v1/workspaces/default")).status_code == 409


def test_tokens_are_prefixed_random_and_stored_only_as_hashes(tmp_path: Path) -> None:
    from ade.auth import Role, issue_key, key_id_of, token_matches
    from ade.serde import utcnow

    issued = {issue_key("k", Role.VIEWER, ("default",), now=utcnow()) for _ in range(50)}
    tokens = {i.token for i in issued}
    assert len(tokens) == 50
    for one in issued:
        assert re.fullmatch(r"ade_[0-9a-z]{26}_[A-Za-z0-9_-]{43}", one.token)
        assert key_id_of(one.token) == one.key.id
        assert one.key.token_hash == hashlib.sha256(one.token.encode()).hexdigest()
        assert one.token not in repr(one) and one.token not in repr(one.key)
        assert token_matches(one.token, one.key.token_hash)
        assert not token_matches(one.token[:-1] + "x", one.key.token_hash)


async def test_the_key_check_compares_in_constant_time(
    served: tuple[Service, Keys], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, keys = served
    calls: list[tuple[bytes, bytes]] = []
    real = auth_keys.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_keys.hmac, "compare_digest", spy)
    forged = keys.member[:-4] + "AAAA"  # the right key id, a wrong secret
    assert await _status(service, "GET", "/api/v1/workspaces/default/jobs", forged) == 401
    assert await _status(service, "GET", "/api/v1/workspaces/default/jobs", keys.member) == 200
    # Both went through hmac.compare_digest, on hashes of equal length.
    assert len(calls) == 2
    assert all(len(a) == len(b) == 64 for a, b in calls)


async def test_keys_never_appear_in_logs_events_artifacts_or_errors(
    served: tuple[Service, Keys], caplog: pytest.LogCaptureFixture
) -> None:
    service, keys = served
    caplog.set_level(logging.DEBUG)
    base = "/api/v1/workspaces/default"
    texts: list[str] = []
    async with httpx.AsyncClient(
        base_url=service.url, headers=auth_headers(keys.member), timeout=30
    ) as http:
        config = await http.post(
            f"{base}/configs", files={"package": ("c.zip", package_zip(), "application/zip")}
        )
        document = await http.post(
            f"{base}/documents", files={"file": ("m.xlsx", workbook_bytes())}
        )
        body = {"config_version_id": config.json()["id"], "document_ids": [document.json()["id"]]}
        job = (await http.post(f"{base}/jobs", json=body)).json()
        await wait_for_status(http, f"{base}/jobs/{job['id']}", {"success"})
        for path in (
            f"{base}/jobs/{job['id']}",
            f"{base}/jobs/{job['id']}/artifact",
            f"{base}/jobs",
        ):
            texts.append((await http.get(path)).text)
        # Refusals of every kind: none repeats the key it was given.
        for token in (keys.member[:-3] + "xyz", keys.revoked, keys.viewer, keys.outsider):
            for method, path in (
                ("GET", f"{base}/jobs"),
                ("POST", f"{base}/jobs"),
                ("GET", "/api/v1/keys"),
            ):
                response = await http.request(method, path, headers=auth_headers(token), json={})
                texts.append(response.text)
        bad = await http.post(
            f"{base}/jobs", content=keys.member, headers={"Content-Type": "text/plain"}
        )
        texts.append(bad.text)
    texts.append(caplog.text)
    # Structured log fields too (the access log carries them as extras): the key *id* is there,
    # the key never.
    texts.extend(repr(vars(record)) for record in caplog.records)
    access = [repr(vars(r)) for r in caplog.records if r.name == "ade.access"]
    assert any(keys.id_of("member") in line for line in access)
    for path in service.settings.data_dir.rglob("*"):
        if path.is_file() and path.name != "admin.key":
            texts.append(path.read_bytes().decode("latin-1"))
    for kind in ("member", "viewer", "outsider", "revoked", "admin"):
        token = getattr(keys, kind)
        secret = token[len("ade_") + 27 :]  # after "ade_<26-character id>_"
        assert len(secret) == 43
        for text in texts:
            assert token not in text and secret not in text, kind
    # The key ids are what the records carry.
    with closing(sqlite3.connect(service.settings.db_path)) as conn:
        rows = conn.execute("SELECT submitted_by FROM jobs").fetchall()
    assert rows == [(keys.id_of("member"),)]


async def test_openapi_declares_the_bearer_scheme(served: tuple[Service, Keys]) -> None:
    service, keys = served
    async with httpx.AsyncClient(base_url=service.url, headers=auth_headers(keys.viewer)) as http:
        spec: dict[str, Any] = (await http.get("/api/v1/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert spec["security"] == [{"apiKey": []}]
    assert spec["paths"]["/api/v1/health"]["get"]["security"] == []
    jobs = spec["paths"]["/api/v1/workspaces/{workspace_id}/jobs"]["post"]
    assert {"401", "403", "404"} <= set(jobs["responses"])
    assert "security" not in jobs  # the document-wide requirement applies


async def test_openapi_declares_no_scheme_with_auth_disabled(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/api/v1/openapi.json")).json()
    assert "securitySchemes" not in spec["components"]
    assert "security" not in spec
    assert "401" not in spec["paths"]["/api/v1/workspaces/{workspace_id}/jobs"]["post"]["responses"]


class _ReadsThenWaits:
    """An access store whose reads return what the table held when they ran, but only once
    ``release`` is set: a read in flight while another request changes keys or workspaces."""

    def __init__(self, access: Any) -> None:
        self._access = access
        self.release = trio.Event()
        self.reading = trio.Event()

    async def get_key(self, key_id: str) -> Any:
        key = await self._access.get_key(key_id)
        self.reading.set()
        await self.release.wait()
        return key

    async def list_workspaces(self) -> Any:
        workspaces = await self._access.list_workspaces()
        self.reading.set()
        await self.release.wait()
        return workspaces

    def __getattr__(self, name: str) -> Any:
        return getattr(self._access, name)


async def test_a_read_in_flight_during_a_revocation_cannot_put_the_key_back_in_the_cache(
    tmp_path: Path,
) -> None:
    from ade.api.auth import Authenticator
    from ade.auth import Role, issue_key
    from ade.errors import Unauthorized
    from ade.serde import utcnow
    from ade.settings import load_settings
    from ade.store import open_store
    from ade.store.access import access_store

    store = open_store(load_settings({}, data_dir=tmp_path / "data"))
    try:
        access = access_store(store)
        issued = issue_key("k", Role.VIEWER, ("default",), now=utcnow())
        await access.insert_key(issued.key)
        slow = _ReadsThenWaits(access)
        auth = Authenticator(slow, enabled=True, cacheable=True)  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(auth.principal, issued.token)  # read before the revocation
            await slow.reading.wait()
            await access.revoke_key(issued.key.id, utcnow())  # as DELETE /keys/{id} does
            auth.forget()
            slow.release.set()
        with pytest.raises(Unauthorized, match="was revoked"):
            await auth.principal(issued.token)
    finally:
        store.close()


async def test_a_read_in_flight_during_a_workspace_delete_cannot_put_it_back_in_the_cache(
    tmp_path: Path,
) -> None:
    from ade.api.auth import Authenticator
    from ade.auth import Workspace
    from ade.errors import NotFound
    from ade.serde import utcnow
    from ade.settings import load_settings
    from ade.store import open_store
    from ade.store.access import access_store

    store = open_store(load_settings({}, data_dir=tmp_path / "data"))
    try:
        access = access_store(store)
        await access.create_workspace(Workspace("team", utcnow()))
        slow = _ReadsThenWaits(access)
        auth = Authenticator(slow, enabled=True, cacheable=True)  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(auth.check_workspace, "team")  # read before the delete
            await slow.reading.wait()
            await access.delete_workspace("team")  # as DELETE /workspaces/{id} does
            auth.forget()
            slow.release.set()
        with pytest.raises(NotFound, match="workspace team not found"):
            await auth.check_workspace("team")
    finally:
        store.close()
