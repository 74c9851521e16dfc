"""Readiness and replicas against a real vLLM CPU server."""

from __future__ import annotations

import asyncio
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


async def readyz_status(http: aiohttp.ClientSession, url: str) -> int:
    # Answered from the cached background checks: it never waits on vLLM.
    async with asyncio.timeout(1), http.get(f"{url}/readyz") as response:
        return response.status


async def until_status(http: aiohttp.ClientSession, url: str, status: int) -> None:
    deadline = time.monotonic() + 30
    while await readyz_status(http, url) != status:
        assert time.monotonic() < deadline, f"/readyz did not turn {status}"
        await asyncio.sleep(0.05)


async def test_readyz_follows_vllm_from_background_checks_and_answers_at_once(
    start_sidecar: SidecarFactory,
    vllm_settings: Settings,
    vllm_server: ServerProcess,
    http: aiohttp.ClientSession,
) -> None:
    url = await start_sidecar(vllm_settings, health_check_interval_s=0.5, health_check_timeout_s=1)
    assert await readyz_status(http, url) == 200
    with vllm_server.paused():
        await until_status(http, url, 503)
    await until_status(http, url, 200)
