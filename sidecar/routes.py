"""HTTP handlers: the rerank contract, health, readiness and metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sidecar.app import METRICS, RERANK_SERVICE, json_response
from sidecar.errors import BackendUnavailable
from sidecar.schemas import RerankRequest, parse_body, rerank_response


async def rerank(request: web.Request) -> web.Response:
    body = parse_body(await request.read(), RerankRequest)
    service = request.app[RERANK_SERVICE]
    documents = body.document_texts()
    result = await service.score_detailed(
        body.query,
        documents,
        instruction=body.instruction,
        max_tokens_per_doc=body.max_tokens_per_doc,
    )
    return json_response(
        rerank_response(
            model=service.model_name,
            model_kind=service.model_kind,
            documents=documents,
            scores=result.scores,
            top_n=body.top_n,
            return_documents=body.return_documents,
            input_tokens=result.input_tokens,
            truncated_documents=result.truncated_documents,
        )
    )


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    service = request.app[RERANK_SERVICE]
    try:
        await service.check_ready()
    except BackendUnavailable as exc:
        return json_response(
            {"status": "not ready", "model": service.model_name, "reason": exc.message}, status=503
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
