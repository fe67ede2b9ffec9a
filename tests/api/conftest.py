from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio
from api_support import Service, make_settings, start_service


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    """ADE (runtime + API) on a free loopback port, inside the test's trio run."""
    async with trio.open_nursery() as nursery:
        svc = await start_service(nursery, make_settings(tmp_path / "data"))
        yield svc
        svc.stop.set()


@pytest.fixture
async def client(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
        yield http
