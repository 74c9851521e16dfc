"""Application plumbing: typed keys, middlewares, JSON replies, the scoring pipeline's lifetime."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestPayloadError

from sidecar.admission import Admission
from sidecar.backends.factory import build_backend, build_fallback, build_tokenizer_process
from sidecar.batcher import Batcher, BatchPolicy
from sidecar.config import Settings
from sidecar.errors import BadRequest, RequestTimeout, SidecarError, Unauthorized
from sidecar.memory import trim_after_large_request
from sidecar.metrics import Metrics
from sidecar.score_cache import build_score_cache
from sidecar.scoring_types import Backend, PairEncoder
from sidecar.service import RerankService, Scorer, ServicePolicy

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
RERANK_SERVICE = web.AppKey("rerank_service", RerankService)
# Set on SIGTERM: /readyz turns 503 and answers close their connections.
DRAINING = web.AppKey("draining", asyncio.Event)

# Probes, scrapes and the try-it and docs pages never need the token.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/", "/docs", "/openapi.json"})
OPEN_PREFIX = "/static/"


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
        response = error_response(exc.status, exc.error_type, exc.message, exc.headers)
        if isinstance(exc, BadRequest | RequestTimeout):
            # The rest of the body is unread or unreadable: this connection cannot be reused.
            response.force_close()
        return response
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
        response = error_response(500, "internal_error", "the sidecar failed; see its log")
        response.force_close()
        return response


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    app = request.app
    metrics = app[METRICS]
    route = request.match_info.route.resource
    endpoint = route.canonical if route is not None else "unmatched"
    started = time.monotonic()
    status = 499  # the client left before an answer
    try:
        response = await handler(request)
        status = response.status
        if app[DRAINING].is_set():
            # Clients reconnect, and so reach a replica that is not going away.
            response.force_close()
        return response
    finally:
        metrics.requests.labels(endpoint, str(status)).inc()
        metrics.request_seconds.labels(endpoint).observe(time.monotonic() - started)
        trim_after_large_request(request.content.total_bytes)


@web.middleware
async def bearer_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[SETTINGS].api_token
    # Unknown paths and methods get their 404/405 whatever the token: there is nothing to guard.
    unmatched = request.match_info.http_exception is not None
    open_path = request.path in OPEN_PATHS or request.path.startswith(OPEN_PREFIX)
    if token and not unmatched and not open_path:
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        # RFC 7235: the scheme is case-insensitive.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            sent.strip().encode(), token.encode()
        ):
            raise Unauthorized("send 'Authorization: Bearer <token>' with the sidecar's API token")
    return await handler(request)


async def read_body(request: web.Request) -> bytes:
    """The whole body, within the body timeout; unreadable bodies are 400 JSON errors."""
    timeout_s = request.app[SETTINGS].body_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout_s:g} s") from None
    except (HttpProcessingError, RequestPayloadError) as exc:
        # A body that says gzip and is not, a chunk size that is not hex, ...
        detail = " ".join(str(exc).split())
        raise BadRequest(f"the request body could not be read: {detail}") from None


async def scoring_pipeline(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    metrics = app[METRICS]
    policy = BatchPolicy(
        max_batch_tokens=settings.max_batch_tokens,
        max_batch_pairs=settings.max_batch_pairs,
        max_wait_s=settings.max_wait_ms / 1000,
        max_inflight_batches=settings.max_inflight_batches,
    )
    primary = await _start_scorer(build_backend(settings), policy, metrics, settings)
    built = build_fallback(settings)
    fallback = await _start_scorer(built, policy, metrics, settings) if built else None
    score_cache = build_score_cache(settings, metrics)
    app[RERANK_SERVICE] = RerankService(
        score_cache=score_cache,
        primary=primary,
        fallback=fallback,
        admission=Admission(
            max_pairs=settings.max_queue_pairs,
            max_requests=settings.max_concurrent_requests,
            metrics=metrics,
            retry_after_s=primary.batcher.seconds_to_drain,
        ),
        metrics=metrics,
        policy=ServicePolicy(
            default_instruction=settings.instruction,
            max_documents=settings.max_documents,
            timeout_s=settings.request_timeout_s,
            fallback_queue_fraction=settings.fallback_queue_fraction,
            tokenize_inline_max_chars=settings.tokenize_inline_max_chars,
            default_windows=(
                settings.max_windows_per_document if settings.long_documents == "chunk" else 1
            ),
            max_windows=settings.max_windows_per_document,
            max_queue_pairs=settings.max_queue_pairs,
            cache_scope=f"{settings.max_length}/{settings.window_overlap_tokens}",
        ),
    )
    log.info(
        "scoring with %s (%s)%s",
        primary.backend.model_name,
        primary.backend.model_kind,
        f", degrading to {fallback.backend.model_name}" if fallback else "",
    )
    yield
    for scorer in (primary, fallback):
        if scorer is not None:
            try:
                await scorer.batcher.stop()
                await scorer.backend.close()
            finally:
                if scorer.tokenizer_process is not None:
                    await scorer.tokenizer_process.close()
    if score_cache is not None:
        await score_cache.close()


async def _start_scorer(
    built: tuple[PairEncoder, Backend], policy: BatchPolicy, metrics: Metrics, settings: Settings
) -> Scorer:
    encoder, backend = built
    await backend.start()
    batcher = Batcher(backend.score, policy, metrics)
    await batcher.start()
    tokenizer_process = build_tokenizer_process(settings, encoder, metrics)
    if tokenizer_process is not None:
        # Ready means at full capacity; a child that does not come up only costs that capacity
        # (logged; it is started again later).
        await tokenizer_process.start()
    return Scorer(
        encoder=encoder, backend=backend, batcher=batcher, tokenizer_process=tokenizer_process
    )
