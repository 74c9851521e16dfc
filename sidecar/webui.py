"""The try-it page (`GET /`), the API docs page (`GET /docs`) and `GET /openapi.json`.

Plain HTML, CSS and JavaScript shipped as package data (`sidecar/static/`) and served from memory:
no CDN, no build step, works offline. The page calls the public `POST /v1/rerank`, with the
bearer token the user types when the sidecar has one; the pages themselves need no token
(`app.OPEN_PATHS`), they hold nothing the API does not describe.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from sidecar.app import OPEN_PREFIX as STATIC_PREFIX
from sidecar.app import SETTINGS, json_response
from sidecar.openapi import openapi_document

_CONTENT_TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
}
PAGES = {"/": "index.html", "/docs": "docs.html"}
OPENAPI_PATH = "/openapi.json"


def _load_static() -> dict[str, tuple[bytes, str]]:
    files: dict[str, tuple[bytes, str]] = {}
    for entry in resources.files("sidecar").joinpath("static").iterdir():
        suffix = entry.name[entry.name.rfind(".") :]
        if entry.is_file() and suffix in _CONTENT_TYPES:
            files[entry.name] = (entry.read_bytes(), _CONTENT_TYPES[suffix])
    return files


_STATIC = web.AppKey("static_files", dict[str, tuple[bytes, str]])


def _file_response(request: web.Request, name: str) -> web.Response:
    found = request.app[_STATIC].get(name)
    if found is None:
        raise web.HTTPNotFound()
    body, content_type = found
    return web.Response(body=body, content_type=content_type, charset="utf-8")


async def page(request: web.Request) -> web.Response:
    return _file_response(request, PAGES[request.path])


async def static_file(request: web.Request) -> web.Response:
    return _file_response(request, request.match_info["name"])


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(openapi_document(request.app[SETTINGS]))


def add_routes(app: web.Application) -> None:
    app[_STATIC] = _load_static()
    for path in PAGES:
        app.router.add_get(path, page)
    app.router.add_get(STATIC_PREFIX + "{name}", static_file)
    app.router.add_get(OPENAPI_PATH, openapi_json)
