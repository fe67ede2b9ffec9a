"""Keys on two nodes sharing one PostgreSQL store: a key made on one node works on the other, and
a revocation made on one node is refused by the very next request on the other (no cache can
outlive it); a workspace created on one is known to the other at once."""

from __future__ import annotations

from pathlib import Path

import httpx
from support.cluster import running_cluster


async def test_a_revocation_on_one_node_holds_at_once_on_the_other(
    tmp_path: Path, postgres_url: str
) -> None:
    async with running_cluster(tmp_path, postgres_url) as cluster:
        cluster.add("a", ADE_AUTH="enabled")
        await cluster.start("a")
        # The second node starts after the first made the admin key: it makes none of its own.
        cluster.add("b", ADE_AUTH="enabled")
        await cluster.start("b")
        a, b = cluster.url("a"), cluster.url("b")
        admin = {"Authorization": f"Bearer {(cluster.data_dir / 'admin.key').read_text().strip()}"}
        async with httpx.AsyncClient(timeout=30, headers=admin) as http:
            keys = (await http.get(f"{b}/api/v1/keys")).json()["items"]
            assert [k["role"] for k in keys] == ["admin"]
            made = await http.post(
                f"{a}/api/v1/keys",
                json={"name": "n", "role": "viewer", "workspaces": ["default"]},
            )
            assert made.status_code == 201, made.text
            viewer = {"Authorization": f"Bearer {made.json()['token']}"}
            path = "/api/v1/workspaces/default/jobs"
            for _ in range(3):  # warm whatever either node might keep
                assert (await http.get(f"{b}{path}", headers=viewer)).status_code == 200
                assert (await http.get(f"{a}{path}", headers=viewer)).status_code == 200
            revoked = await http.delete(f"{a}/api/v1/keys/{made.json()['id']}")
            assert revoked.status_code == 200
            refused = await http.get(f"{b}{path}", headers=viewer)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "unauthorized"
            # Workspaces too: created on A, usable on B at once; deleted on B, gone on A.
            assert (await http.post(f"{a}/api/v1/workspaces", json={"id": "w2"})).status_code == 201
            assert (await http.get(f"{b}/api/v1/workspaces/w2/jobs")).status_code == 200
            assert (await http.delete(f"{b}/api/v1/workspaces/w2")).status_code == 204
            assert (await http.get(f"{a}/api/v1/workspaces/w2/jobs")).status_code == 404
