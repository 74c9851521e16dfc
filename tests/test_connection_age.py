"""A client's kept-alive connection is closed once it is older than `max_connection_age_s`, so a
pool of connections (OpenSearch keeps dozens) reconnects through the Service to new pods."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from sidecar.config import Settings
from tests.conftest import SidecarFactory


@pytest.fixture
def null_settings(tiny_model_dir: Path) -> Settings:
    return Settings(backend="null", model=str(tiny_model_dir))


async def connections_used(url: str, requests: int) -> tuple[int, list[str | None]]:
    """How many connections a one-connection client opened, and each answer's Connection header."""
    opened = 0

    async def count(*_: object) -> None:
        nonlocal opened
        opened += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(count)
    headers = []
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1), trace_configs=[trace]
    ) as http:
        for _ in range(requests):
            body = {"query": "backpack", "documents": ["a waterproof backpack"]}
            async with http.post(f"{url}/v1/rerank", json=body) as response:
                assert response.status == 200
                headers.append(response.headers.get("Connection"))
    return opened, headers


async def test_a_connection_younger_than_its_age_serves_every_request(
    start_sidecar: SidecarFactory, null_settings: Settings
) -> None:
    url = await start_sidecar(null_settings)  # 300 s by default
    opened, headers = await connections_used(url, 4)
    assert opened == 1
    assert headers == [None] * 4


async def test_a_connection_past_its_age_is_closed_after_its_answer(
    start_sidecar: SidecarFactory, null_settings: Settings
) -> None:
    # Every connection is past a nanosecond by its first answer: one connection per request.
    url = await start_sidecar(null_settings, max_connection_age_s=1e-9)
    opened, headers = await connections_used(url, 4)
    assert opened == 4
    assert headers == ["close"] * 4
