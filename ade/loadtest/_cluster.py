"""A private cluster for ``ade loadtest --nodes N``: N ``ade serve`` processes sharing one data
directory and a PostgreSQL database created for the run (and dropped after it).

With ``--chaos`` one random node is SIGKILLed and not restarted: the survivors must rescue its
running jobs (ended ``error`` with the node message after the lease) and run its queued ones.
The lease is short (:data:`CHAOS_LEASE_SECONDS`) so a run does not wait half a minute for it.
"""

from __future__ import annotations

import secrets
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

import psycopg
import trio
from psycopg import sql

from ade.loadtest._server import ServerProcess
from ade.store.postgres import describe_url

__all__ = ["CHAOS_LEASE_SECONDS", "PrivateCluster", "node_message"]

# A killed node's jobs are rescued this long after its last heartbeat.
CHAOS_LEASE_SECONDS = 3.0


def node_message(node_id: str) -> str:
    from ade.runtime.ending import node_message as message

    return message(node_id)


class PrivateCluster:
    def __init__(self, admin_url: str, scratch: Path, nodes: int, env: Mapping[str, str]) -> None:
        self.admin_url = admin_url
        self.name = f"ade_loadtest_{secrets.token_hex(4)}"
        self.database_url = urllib.parse.urlsplit(admin_url)._replace(path=f"/{self.name}").geturl()
        self.data_dir = scratch / "data"
        self.servers = {
            f"node-{i + 1}": ServerProcess(
                self.data_dir,
                scratch / "logs" / f"node-{i + 1}",
                {
                    **env,
                    "ADE_DATABASE_URL": self.database_url,
                    "ADE_NODE_ID": f"node-{i + 1}",
                    "ADE_LEASE_SECONDS": str(CHAOS_LEASE_SECONDS),
                },
            )
            for i in range(nodes)
        }
        self.killed: str | None = None

    def urls(self) -> list[str]:
        return [server.url for node, server in self.servers.items() if node != self.killed]

    async def start(self) -> None:
        await trio.to_thread.run_sync(self._create_database)
        # One at a time: the first applies the migrations, the others find them done.
        for server in self.servers.values():
            await server.start()

    def kill(self, node_id: str) -> None:
        self.killed = node_id
        self.servers[node_id].kill()

    async def stop(self) -> dict[str, int | None]:
        """SIGTERM every live node (at once); their exit statuses."""
        statuses: dict[str, int | None] = {}

        async def stop_one(node_id: str, server: ServerProcess) -> None:
            statuses[node_id] = await server.stop()

        async with trio.open_nursery() as nursery:
            for node_id, server in self.servers.items():
                if node_id != self.killed:
                    nursery.start_soon(stop_one, node_id, server)
        return statuses

    async def drop(self) -> None:
        await trio.to_thread.run_sync(self._drop_database)

    def jobs_by_node(self) -> dict[str, tuple[str, str | None, str | None]]:
        """Job id -> (status, error message, node) straight from the database."""
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute("SELECT id, status, error_message, node_id FROM jobs").fetchall()
        return {job_id: (status, message, node) for job_id, status, message, node in rows}

    def _create_database(self) -> None:
        try:
            with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        except psycopg.OperationalError as exc:
            raise RuntimeError(
                f"--nodes needs PostgreSQL: cannot create a database at "
                f"{describe_url(self.admin_url)} (--postgres-url): {str(exc).strip()}"
            ) from None

    def _drop_database(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )
