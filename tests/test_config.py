"""Settings from RERANK_* environment variables, the way the chart and compose pass them."""

from __future__ import annotations

import pytest

from sidecar.config import Settings


def test_vllm_urls_come_comma_separated_and_choose_the_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RERANK_VLLM_URL", "http://vllm-0:8000/, http://vllm-1:8000")
    monkeypatch.setenv("RERANK_MAX_WAIT_MS", "2.5")
    settings = Settings()
    assert settings.vllm_url == ["http://vllm-0:8000", "http://vllm-1:8000"]
    assert settings.backend_kind == "vllm"
    assert settings.max_wait_ms == 2.5


def test_no_vllm_url_means_the_embedded_model_and_served_name_defaults_to_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RERANK_VLLM_URL", raising=False)
    settings = Settings(model="Qwen/Qwen3-Reranker-4B")
    assert settings.backend_kind == "embedded"
    assert settings.vllm_model_name == "Qwen/Qwen3-Reranker-4B"
    assert Settings(served_model_name="reranker").vllm_model_name == "reranker"


def test_a_dns_name_is_a_vllm_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RERANK_VLLM_URL", "dns+http://rerank-vllm.search.svc:8000")
    monkeypatch.setenv("RERANK_VLLM_DISCOVERY_INTERVAL_S", "5")
    settings = Settings()
    assert settings.vllm_url == ["dns+http://rerank-vllm.search.svc:8000"]
    assert settings.vllm_discovery_interval_s == 5


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("vllm:8000", "must start with http://, https://, dns+http:// or dns+https://"),
        ("ftp://vllm:8000", "must start with"),
        ("dns+http://vllm:99999", "Port out of range"),
        ("http://:8000", "has no host"),
    ],
)
def test_a_vllm_url_the_sidecar_cannot_use_is_refused_by_name(url: str, message: str) -> None:
    with pytest.raises(ValueError, match="vllm_url") as error:
        Settings(vllm_url=url)
    assert message in str(error.value)
