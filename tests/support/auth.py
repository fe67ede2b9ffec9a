"""A served ADE with keys on (ADE_AUTH=enabled) and one key of each kind, for the auth tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from ade.api.server import run_service
from ade.auth.bootstrap import ensure_admin_key
from ade.settings import Settings
from ade.store.access import access_store
from support.api import Service, make_settings

__all__ = ["KEY_KINDS", "Keys", "auth_headers", "start_auth_service"]


@attrs.frozen
class Keys:
    admin: str  # the first admin key, as `ade serve` makes it (read from admin.key)
    member: str  # member of default
    viewer: str  # viewer of default
    outsider: str  # member of workspace "other" only
    revoked: str  # was a member of default; revoked

    def id_of(self, kind: str) -> str:
        return str(getattr(self, kind)).split("_")[1]


KEY_KINDS = ("admin", "member", "viewer", "outsider", "revoked")


def auth_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def start_auth_service(
    nursery: trio.Nursery, data_dir: Path, **overrides: Any
) -> tuple[Service, Keys]:
    settings: Settings = make_settings(data_dir, auth="enabled", **overrides)
    stop = trio.Event()

    async def bootstrap(runtime: Any) -> None:
        await ensure_admin_key(access_store(runtime.store), settings)

    url = await nursery.start(
        lambda task_status: run_service(
            settings, shutdown_trigger=stop.wait, before_serving=bootstrap, task_status=task_status
        )
    )
    admin = settings.admin_key_path.read_text().strip()
    async with httpx.AsyncClient(base_url=url, headers=auth_headers(admin), timeout=30) as http:
        created = await http.post("/api/v1/workspaces", json={"id": "other"})
        assert created.status_code == 201, created.text

        async def key(role: str, *workspaces: str) -> str:
            body = {"name": f"test {role}", "role": role, "workspaces": list(workspaces)}
            response = await http.post("/api/v1/keys", json=body)
            assert response.status_code == 201, response.text
            return str(response.json()["token"])

        keys = Keys(
            admin=admin,
            member=await key("member", "default"),
            viewer=await key("viewer", "default"),
            outsider=await key("member", "other"),
            revoked=await key("member", "default"),
        )
        revoked = await http.delete(f"/api/v1/keys/{keys.id_of('revoked')}")
        assert revoked.status_code == 200, revoked.text
    return Service(url, settings, stop), keys
