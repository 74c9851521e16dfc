"""Every error class a client can meet, over real HTTP: JSON bodies, right status, named field."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from sidecar.config import Settings
from tests.conftest import SidecarFactory
from tests.support.servers import free_port


@pytest.fixture
def null_settings(tiny_model_dir: Path) -> Settings:
    """The real Qwen tokenizer and prompt encoder, no model behind it."""
    return Settings(backend="null", model=str(tiny_model_dir))


async def expect_error(
    response: aiohttp.ClientResponse, status: int, error_type: str, mentions: str = ""
) -> dict[str, object]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["error"]["type"] == error_type
    assert mentions in body["error"]["message"]
    return body


async def test_invalid_json_is_400(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(null_settings)
    async with http.post(f"{url}/v1/rerank", data=b'{"query": "q", "documents": [') as r:
        await expect_error(r, 400, "invalid_json")


async def test_schema_errors_are_422_naming_the_field(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(null_settings)
    async with http.post(f"{url}/v2/rerank", json={"query": "q", "documents": ["a", 3]}) as r:
        await expect_error(r, 422, "validation_error", "documents[1]")
    async with http.post(f"{url}/rerank", json={"query": "q", "documents": []}) as r:
        await expect_error(r, 422, "validation_error", "documents")
    async with http.post(
        f"{url}/rerank", json={"query": "q", "documents": ["a"], "top_n": "x"}
    ) as r:
        await expect_error(r, 422, "validation_error", "top_n")


async def test_too_many_documents_and_too_big_bodies_are_413(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(null_settings, max_documents=3, max_body_bytes=4096)
    async with http.post(f"{url}/v1/rerank", json={"query": "q", "documents": ["a"] * 4}) as r:
        await expect_error(r, 413, "payload_too_large", "documents")
    async with http.post(f"{url}/v1/rerank", json={"query": "q", "documents": ["a" * 5000]}) as r:
        await expect_error(r, 413, "payload_too_large")


async def test_over_long_query_is_422_not_a_silent_cut(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(null_settings, max_length=128)
    async with http.post(
        f"{url}/v1/rerank", json={"query": "word " * 300, "documents": ["a"]}
    ) as r:
        await expect_error(r, 422, "validation_error", "query")


async def test_full_queue_is_429_with_retry_after_and_the_throttling_header(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(null_settings, max_queue_pairs=2)
    async with http.post(
        f"{url}/v1/rerank", json={"query": "q", "documents": ["a", "b", "c"]}
    ) as r:
        await expect_error(r, 429, "overloaded", "queue full")
        assert int(r.headers["Retry-After"]) >= 1
        assert r.headers["x-amzn-ErrorType"].startswith("ThrottlingException")


async def test_unreachable_backend_is_503_quickly_and_readyz_says_why(
    start_sidecar: SidecarFactory, tiny_model_dir: Path, http: aiohttp.ClientSession
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    url = await start_sidecar(
        Settings(vllm_url=dead, model=str(tiny_model_dir), request_timeout_s=5)
    )
    async with asyncio.timeout(5):
        async with http.post(f"{url}/v1/rerank", json={"query": "q", "documents": ["a"]}) as r:
            await expect_error(r, 503, "backend_unavailable", "unreachable")
            assert r.headers["x-amzn-ErrorType"].startswith("ThrottlingException")
        async with http.get(f"{url}/readyz") as r:
            assert r.status == 503
            assert dead in (await r.json())["reason"]
        async with http.get(f"{url}/healthz") as r:
            assert r.status == 200


async def test_api_token_guards_rerank_but_not_probes(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(null_settings, api_token="s3cret")
    body = {"query": "q", "documents": ["a"]}
    async with http.post(f"{url}/v1/rerank", json=body) as r:
        await expect_error(r, 401, "unauthorized", "Bearer")
    async with http.post(
        f"{url}/v1/rerank", json=body, headers={"Authorization": "Bearer nope"}
    ) as r:
        await expect_error(r, 401, "unauthorized")
    async with http.post(
        f"{url}/v1/rerank", json=body, headers={"Authorization": "Bearer s3cret"}
    ) as r:
        assert r.status == 200
    for path in ("/healthz", "/readyz", "/metrics"):
        async with http.get(f"{url}{path}") as r:
            assert r.status == 200, path


async def test_unknown_paths_and_methods_are_json_errors(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(null_settings)
    async with http.get(f"{url}/v1/nothing") as r:
        await expect_error(r, 404, "not_found")
    async with http.get(f"{url}/v1/rerank") as r:
        await expect_error(r, 405, "method_not_allowed")


async def test_metrics_count_requests_by_endpoint_and_status(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(null_settings)
    async with http.post(f"{url}/v1/rerank", json={"query": "q", "documents": ["a", "b"]}) as r:
        assert r.status == 200
    async with http.post(f"{url}/v1/rerank", data=b"{") as r:
        assert r.status == 400
    async with http.get(f"{url}/metrics") as r:
        text = await r.text()
    assert 'rerank_requests_total{endpoint="/v1/rerank",status="200"} 1.0' in text
    assert 'rerank_requests_total{endpoint="/v1/rerank",status="400"} 1.0' in text
    assert "rerank_pairs_total 2.0" in text
    assert "rerank_batch_pairs_count 1.0" in text
