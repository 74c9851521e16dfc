"""Builds the aiohttp application and runs it."""

from __future__ import annotations

import logging

from aiohttp import web

from sidecar import routes, routes_opensearch
from sidecar.app import METRICS, SETTINGS, bearer_token, errors_as_json, observe, scoring_pipeline
from sidecar.config import Settings
from sidecar.metrics import Metrics


def create_app(settings: Settings) -> web.Application:
    # `observe` is outermost so it counts the status `errors_as_json` chose, 401s included.
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[observe, errors_as_json, bearer_token],
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(scoring_pipeline)
    routes.add_routes(app)
    routes_opensearch.add_routes(app)
    return app


def serve(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # handler_cancellation: a client that hangs up cancels its handler, dropping its queued pairs.
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        handler_cancellation=True,
        access_log=None,
        print=lambda message: logging.getLogger("sidecar").info(message.strip()),
    )
