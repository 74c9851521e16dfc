"""Builds the aiohttp application and runs it, with a drain on SIGTERM.

SIGTERM: /readyz turns 503 at once (the endpoint controller takes the pod out of the Service),
requests are still served for `drain_delay_s` (they keep arriving until every proxy has noticed),
then the listener closes and in-flight requests get `shutdown_timeout_s` to finish; exit 0.
SIGINT (Ctrl-C) skips the drain delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import uvloop
from aiohttp import web

from sidecar import routes, routes_query_dsl, webui
from sidecar.app import (
    DRAINING,
    METRICS,
    SETTINGS,
    bearer_token,
    errors_as_json,
    observe,
    scoring_pipeline,
)
from sidecar.config import Settings
from sidecar.http_protocol import SidecarRunner, close_old_connections
from sidecar.metrics import Metrics
from sidecar.timing import stage_timing

log = logging.getLogger("sidecar")


def create_app(settings: Settings) -> web.Application:
    # `observe` is outermost so it counts the status `errors_as_json` chose, 401s included.
    metrics = Metrics()
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            close_old_connections,
            observe,
            stage_timing(metrics, send_header=settings.server_timing),
            errors_as_json,
            bearer_token,
        ],
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[DRAINING] = asyncio.Event()
    app.cleanup_ctx.append(scoring_pipeline)
    routes.add_routes(app)
    routes_query_dsl.add_routes(app)
    webui.add_routes(app)
    return app


def make_runner(app: web.Application, settings: Settings) -> SidecarRunner:
    # handler_cancellation: a client that hangs up cancels its handler, dropping its queued pairs.
    return SidecarRunner(
        app,
        header_timeout_s=settings.header_timeout_s,
        max_connection_age_s=settings.max_connection_age_s,
        handler_cancellation=True,
        access_log=None,
        keepalive_timeout=settings.keepalive_timeout_s,
        shutdown_timeout=settings.shutdown_timeout_s,
    )


async def run(settings: Settings) -> None:
    app = create_app(settings)
    runner = make_runner(app, settings)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    log.info("serving on http://%s:%d", settings.host, settings.port)
    received: asyncio.Queue[signal.Signals] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, received.put_nowait, signum)
    signum = await received.get()
    app[DRAINING].set()
    if signum == signal.SIGTERM and settings.drain_delay_s > 0:
        log.info("SIGTERM: not ready; serving for %.1f s more", settings.drain_delay_s)
        with contextlib.suppress(TimeoutError):  # a second signal ends the wait
            await asyncio.wait_for(received.get(), settings.drain_delay_s)
    log.info("closing; in-flight requests get %.1f s", settings.shutdown_timeout_s)
    await runner.cleanup()
    log.info("stopped")


def serve(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # uvloop: a faster event loop and HTTP parsing under the same asyncio API.
    loop_factory = uvloop.new_event_loop if settings.event_loop == "uvloop" else None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(run(settings))
