"""A bare aiohttp server that reads the JSON body and echoes it: the floor for P1."""

from __future__ import annotations

import sys

import orjson
from aiohttp import web


async def echo(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    app = web.Application(client_max_size=10 * 1024 * 1024)
    app.router.add_post("/v1/rerank", echo)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
