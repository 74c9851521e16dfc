"""Readiness against a real vLLM CPU server: the model must be served with a long enough context."""

from __future__ import annotations

import aiohttp
import pytest

from sidecar.config import Settings
from tests.conftest import SidecarFactory

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
