"""The web page's assets as the app serves them: the route table, types, caching, the
security headers, and that nothing is loaded from anywhere but this server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ade.api.app import create_app
from ade.api.ui import CONTENT_SECURITY_POLICY, load_assets
from ade.protocols import Store
from ade.settings import load_settings
from ade.store import open_store

ASSETS = Path(__file__).resolve().parents[2] / "ade" / "api" / "ui" / "assets"


_opened: list[Store] = []


def _app(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = load_settings({}, data_dir=tmp_path / "data")
    store = open_store(settings)
    _opened.append(store)
    return create_app(runtime=None, settings=settings, store=store)


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    """A served app never closes the store it is given: close it here, not at garbage
    collection (Python 3.13 reports a collected open sqlite connection)."""
    yield
    while _opened:
        _opened.pop().close()


async def test_the_page_and_its_assets_are_served_with_types_and_headers(tmp_path: Path) -> None:
    client = _app(tmp_path).test_client()
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert page.headers["Cache-Control"] == "no-cache"
    assert b'<script type="module" src="/ui/app.js">' in await page.get_data()

    script = await client.get("/ui/app.js")
    assert script.status_code == 200
    assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert script.headers["X-Content-Type-Options"] == "nosniff"
    again = await client.get("/ui/app.js", headers={"If-None-Match": script.headers["ETag"]})
    assert again.status_code == 304
    assert (await client.get("/ui/style.css")).headers["Content-Type"] == "text/css; charset=utf-8"

    for missing in ("/ui/nope.js", "/ui/index.html", "/ui/..%2fapp.py"):
        response = await client.get(missing)
        assert response.status_code == 404, missing
        assert (await response.get_json())["error"]["code"] == "not_found"


def test_every_asset_is_shipped_and_every_import_resolves() -> None:
    served = load_assets()
    on_disk = {p.name for p in ASSETS.iterdir() if p.suffix in (".html", ".css", ".js")}
    assert set(served) == on_disk
    for name, asset in served.items():
        text = asset.body.decode()
        # Nothing from elsewhere: no absolute URLs to fetch, no CDN, no web fonts.
        assert not re.search(r"""(src|href)=["']https?:""", text), name
        assert not re.search(r"""(import|from)\s*["']https?:""", text), name
        assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML", text), name
        for imported in re.findall(r"""from\s+["']\./([^"']+)["']""", text):
            assert imported in served, (name, imported)
        for referenced in re.findall(r"""(?:src|href)="/ui/([^"]+)\"""", text):
            assert referenced in served, (name, referenced)


def test_package_data_ships_the_assets() -> None:
    pyproject = (ASSETS.parents[3] / "pyproject.toml").read_text()
    assert '"ade.api.ui" = ["assets/*.html", "assets/*.css", "assets/*.js"]' in pyproject
