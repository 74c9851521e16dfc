"""Application plumbing: typed keys, middlewares, JSON replies, the scoring pipeline's lifetime."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from sidecar.backends import build_backend
from sidecar.batcher import Batcher, BatchPolicy
from sidecar.config import Settings
from sidecar.errors import SidecarError, Unauthorized
from sidecar.metrics import Metrics
from sidecar.service import RerankService

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
RERANK_SERVICE = web.AppKey("rerank_service", RerankService)

# Probes and scrapes never need the token.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def json_response(
    payload: object, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload), status=status, headers=headers, content_type="application/json"
    )


def error_response(
    status: int, error_type: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return json_response(
        {"error": {"type": error_type, "message": message}}, status=status, headers=headers
    )


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except SidecarError as exc:
        return error_response(exc.status, exc.error_type, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error_type = (
            "payload_too_large" if exc.status == 413 else exc.reason.lower().replace(" ", "_")
        )
        message = exc.text if exc.status == 413 and exc.text else exc.reason
        # Keep headers such as Allow; the body is ours, so its type and length are too.
        headers = {
            name: value
            for name, value in exc.headers.items()
            if name.lower() not in ("content-type", "content-length")
        }
        return error_response(exc.status, error_type, message, headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "the sidecar failed; see its log")


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    route = request.match_info.route.resource
    endpoint = route.canonical if route is not None else "unmatched"
    started = time.monotonic()
    status = 499  # the client left before an answer
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        metrics.requests.labels(endpoint, str(status)).inc()
        metrics.request_seconds.labels(endpoint).observe(time.monotonic() - started)


@web.middleware
async def bearer_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[SETTINGS].api_token
    if token and request.path not in OPEN_PATHS:
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            raise Unauthorized("send 'Authorization: Bearer <token>' with the sidecar's API token")
    return await handler(request)


async def scoring_pipeline(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    metrics = app[METRICS]
    encoder, backend = build_backend(settings)
    await backend.start()
    batcher = Batcher(
        backend.score,
        BatchPolicy(
            max_batch_tokens=settings.max_batch_tokens,
            max_batch_pairs=settings.max_batch_pairs,
            max_wait_s=settings.max_wait_ms / 1000,
            max_inflight_batches=settings.max_inflight_batches,
            max_queue_pairs=settings.max_queue_pairs,
        ),
        metrics,
    )
    await batcher.start()
    app[RERANK_SERVICE] = RerankService(
        encoder=encoder,
        backend=backend,
        batcher=batcher,
        metrics=metrics,
        default_instruction=settings.instruction,
        max_documents=settings.max_documents,
        timeout_s=settings.request_timeout_s,
    )
    log.info("scoring with %s (%s)", backend.model_name, backend.model_kind)
    yield
    await batcher.stop()
    await backend.close()
