"""HTTP handlers: the rerank contract, health, readiness and metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sidecar.app import DRAINING, METRICS, RERANK_SERVICE, json_response, read_body
from sidecar.schemas import RerankRequest, parse_body, rerank_response
from sidecar.scoring_types import ScoreResult

# Set, with the reason, on answers the fallback model scored.
DEGRADED_HEADER = "X-Rerank-Degraded"


def degraded_headers(result: ScoreResult) -> dict[str, str] | None:
    return {DEGRADED_HEADER: result.degraded} if result.degraded else None


async def rerank(request: web.Request) -> web.Response:
    body = parse_body(await read_body(request), RerankRequest)
    service = request.app[RERANK_SERVICE]
    documents = body.document_texts()
    result = await service.score_detailed(
        body.query,
        documents,
        instruction=body.instruction,
        max_tokens_per_doc=body.max_tokens_per_doc,
        max_windows=body.max_chunks_per_doc,
    )
    return json_response(
        rerank_response(
            documents=documents,
            result=result,
            top_n=body.top_n,
            return_documents=body.return_documents,
        ),
        headers=degraded_headers(result),
    )


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    """From cached state only (background health checks), so it answers at once."""
    service = request.app[RERANK_SERVICE]
    problem, degraded = service.readiness()
    if request.app[DRAINING].is_set():
        problem = "the sidecar is shutting down"
    if problem is not None:
        return json_response(
            {"status": "not ready", "model": service.model_name, "reason": problem}, status=503
        )
    if degraded is not None:
        return json_response(
            {"status": "degraded", "model": service.model_name, "reason": degraded}
        )
    return json_response({"status": "ready", "model": service.model_name})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    for path in ("/v1/rerank", "/v2/rerank", "/rerank"):
        app.router.add_post(path, rerank)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
