"""Readiness and replicas against a real vLLM CPU server."""

from __future__ import annotations

import time

import aiohttp
import pytest

from sidecar.config import Settings
from tests.conftest import SidecarFactory
from tests.support.servers import ServerProcess, free_port

pytestmark = pytest.mark.vllm


async def test_readyz_refuses_a_max_length_beyond_vllms_context(
    start_sidecar: SidecarFactory, vllm_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(vllm_settings, max_length=16384)
    async with http.get(f"{url}/readyz") as response:
        assert response.status == 503
        assert "max_model_len 8192" in (await response.json())["reason"]
    ready_url = await start_sidecar(vllm_settings)
    async with http.get(f"{ready_url}/readyz") as response:
        assert response.status == 200


async def test_a_replica_that_refuses_connections_is_skipped(
    start_sidecar: SidecarFactory, vllm_settings: Settings, http: aiohttp.ClientSession
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    url = await start_sidecar(vllm_settings, vllm_url=[dead, *vllm_settings.vllm_url])
    async with http.get(f"{url}/readyz") as response:
        assert response.status == 200
    for _ in range(3):
        async with http.post(f"{url}/v1/rerank", json={"query": "q", "documents": ["a", "b"]}) as r:
            assert r.status == 200, await r.text()


async def test_readyz_is_503_within_seconds_when_vllm_stops_answering(
    start_sidecar: SidecarFactory,
    vllm_settings: Settings,
    vllm_server: ServerProcess,
    http: aiohttp.ClientSession,
) -> None:
    url = await start_sidecar(vllm_settings)
    with vllm_server.paused():
        started = time.monotonic()
        async with http.get(f"{url}/readyz") as response:
            assert response.status == 503
        assert time.monotonic() - started < 8
    async with http.get(f"{url}/readyz") as response:
        assert response.status == 200
