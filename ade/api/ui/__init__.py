"""The web page: ``GET /`` and its assets under ``/ui/``, served by the API's own app.

Why plain files: the page is HTML, CSS and JavaScript modules shipped in the package
(``assets/``), with no build step and nothing fetched from elsewhere at run time — a fresh
``pip install`` serves it as is. It talks to the public API only (the same routes, auth and
error shape as any client), so it can never see more than a client could. The assets are read
once at start-up; each response carries an ETag and ``Cache-Control: no-cache`` (a browser
revalidates, an upgrade is picked up at once) and a Content-Security-Policy that lets the page
load nothing but its own assets and talk to nothing but this server.
"""

from __future__ import annotations

import hashlib
from importlib import resources

import attrs
from quart import Response, request

from ade.api.routing import Operation
from ade.auth import Access
from ade.errors import NotFound

__all__ = ["UI_PREFIX", "Asset", "load_assets", "ui_operations"]

UI_PREFIX = "/ui"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
# 'self' for scripts, styles, images and API calls; websockets to this host (ws:/wss: with
# 'self' is not understood by every browser, so the event streams are allowed by scheme).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@attrs.frozen
class Asset:
    body: bytes
    media_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file of ``assets/`` by name (a flat folder: names never contain a slash)."""
    assets: dict[str, Asset] = {}
    for entry in resources.files(__package__).joinpath("assets").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if not entry.is_file() or suffix not in _TYPES:
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assets[entry.name] = Asset(body, _TYPES[suffix], etag)
    return assets


def _respond(asset: Asset) -> Response:
    headers = {
        "ETag": asset.etag,
        "Cache-Control": "no-cache",
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    if asset.etag in request.headers.get("If-None-Match", ""):
        return Response(b"", status=304, headers=headers)
    return Response(asset.body, status=200, content_type=asset.media_type, headers=headers)


def ui_operations() -> list[Operation]:
    assets = load_assets()

    async def page() -> Response:
        return _respond(assets["index.html"])

    async def asset(name: str) -> Response:
        found = assets.get(name)
        if found is None or name == "index.html":
            raise NotFound(f"no such asset: {name}")
        return _respond(found)

    return [
        Operation(
            "GET",
            "/",
            "web_page",
            page,
            "The web page (sign in, upload and run, jobs, decisions, configs, health)",
            {200: ("the page", "text/html")},
            tag="web page",
            access=Access.PUBLIC,  # the page asks for a key itself (sign-in)
        ),
        Operation(
            "GET",
            f"{UI_PREFIX}/{{name}}",
            "web_asset",
            asset,
            "A script or stylesheet of the web page",
            {200: ("the asset", "text/javascript"), 404: ("no such asset", "Error")},
            tag="web page",
            access=Access.PUBLIC,  # the page asks for a key itself (sign-in)
        ),
    ]
