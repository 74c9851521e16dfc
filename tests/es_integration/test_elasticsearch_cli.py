"""`python -m es_integration elasticsearch setup|status|teardown` against a fake Elasticsearch.

Layer 1 (see conftest): the fake follows the inference API's `custom` service (it calls the
sidecar stub at creation, applies the JSON paths, refuses 8.x `compatible-with=9` headers).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from tests.es_integration.conftest import SIDECAR, TOKEN, CliRunner, stub_sidecar
from tests.es_integration.fake_elasticsearch import FakeElasticsearch
from tests.es_integration.fake_opensearch import serve

EsFactory = Callable[..., tuple[FakeElasticsearch, str]]


@pytest.fixture
def elasticsearch() -> Iterator[EsFactory]:
    with ExitStack() as stack:

        def start(**kwargs: Any) -> tuple[FakeElasticsearch, str]:
            kwargs.setdefault("post", stub_sidecar)
            fake = FakeElasticsearch(**kwargs)
            return fake, stack.enter_context(serve(fake))

        yield start


def es_setup(url: str, *extra: str) -> list[str]:
    return [
        "elasticsearch",
        "setup",
        "--url",
        url,
        "--sidecar-url",
        SIDECAR,
        "--sidecar-token",
        TOKEN,
        "--fields",
        "body",
        *extra,
    ]


@pytest.mark.parametrize("version", ["8.19.2", "9.1.0", "9.2.1"])
def test_setup_creates_the_custom_endpoint_the_sidecar_answers(
    elasticsearch: EsFactory, run_cli: CliRunner, version: str
) -> None:
    fake, url = elasticsearch(version=version)
    result = run_cli(*es_setup(url))
    assert result.code == 0, result.out
    endpoint = fake.endpoints["rerank-sidecar"]
    settings = endpoint["service_settings"]
    assert settings["url"] == SIDECAR + "/v1/rerank"
    assert settings["secret_parameters"] == {"api_key": TOKEN}
    assert settings["headers"]["Authorization"] == "Bearer ${api_key}"
    assert settings["response"]["json_parser"] == {
        "reranked_index": "$.results[*].index",
        "relevance_score": "$.results[*].relevance_score",
    }
    # The creation-time validation call reached the sidecar with a well-formed body, no top_n.
    sent = json.loads(fake.remote_bodies[0])
    assert sent == {"query": "test query", "documents": ["how big"]}
    assert "text_similarity_reranker" in result.out and TOKEN not in result.out
    assert all("compatible-with" not in h.get("accept", "") for h in fake.request_headers)


def test_setup_twice_changes_nothing_and_a_new_token_replaces_the_endpoint(
    elasticsearch: EsFactory, run_cli: CliRunner
) -> None:
    fake, url = elasticsearch()
    assert run_cli(*es_setup(url)).code == 0
    calls = len(fake.calls)
    assert run_cli(*es_setup(url)).code == 0
    assert [c[0] for c in fake.calls[calls:]] == ["GET", "GET", "GET"]  # info, licence, endpoint
    args = es_setup(url)
    args[args.index(TOKEN)] = "a-different-token-456"
    assert run_cli(*args).code == 3  # replacing needs --yes
    assert (
        fake.endpoints["rerank-sidecar"]["service_settings"]["secret_parameters"]["api_key"]
        == TOKEN
    )
    assert run_cli(*args, "--yes").code == 0
    assert fake.endpoints["rerank-sidecar"]["service_settings"]["secret_parameters"]["api_key"] == (
        "a-different-token-456"
    )


def test_status_and_teardown(elasticsearch: EsFactory, run_cli: CliRunner) -> None:
    fake, url = elasticsearch()
    assert run_cli("elasticsearch", "status", "--url", url).code == 4
    assert run_cli(*es_setup(url)).code == 0
    status = run_cli("elasticsearch", "status", "--url", url, "--json")
    assert status.code == 0, status.out
    test = [c for c in status.json()["changes"] if c["resource"] == "test rerank"]
    assert test[0]["action"] == "ok"
    assert run_cli("elasticsearch", "teardown", "--url", url).code == 3
    assert run_cli("elasticsearch", "teardown", "--url", url, "--yes").code == 0
    assert fake.endpoints == {}
    again = run_cli("elasticsearch", "teardown", "--url", url, "--yes")
    assert again.code == 0 and "nothing to remove" in again.out


def test_foreign_endpoint_with_our_name_is_left_alone(
    elasticsearch: EsFactory, run_cli: CliRunner
) -> None:
    fake, url = elasticsearch()
    fake.endpoints["rerank-sidecar"] = {
        "inference_id": "rerank-sidecar",
        "service": "cohere",
        "service_settings": {"headers": {}},
    }
    assert run_cli(*es_setup(url)).code == 1
    result = run_cli("elasticsearch", "teardown", "--url", url, "--yes")
    assert "not made by this tool" in result.out
    assert "rerank-sidecar" in fake.endpoints


@pytest.mark.parametrize(
    ("version", "licence", "message"),
    [
        ("9.0.4", "trial", "9.0 lacks it"),
        ("8.18.0", "trial", "8.19"),
        ("9.1.0", "basic", "Enterprise or trial"),
    ],
)
def test_unsupported_versions_and_licences_are_refused_clearly(
    elasticsearch: EsFactory, run_cli: CliRunner, version: str, licence: str, message: str
) -> None:
    fake, url = elasticsearch(version=version, license_type=licence)
    result = run_cli(*es_setup(url))
    assert result.code == 1 and message in result.out
    assert not any(method == "PUT" for method, _, _ in fake.calls)


def test_unreachable_sidecar_at_creation_explains_what_to_check(
    elasticsearch: EsFactory, run_cli: CliRunner
) -> None:
    _fake, url = elasticsearch(post=lambda u, h, b: (401, b'{"error": {"type": "unauthorized"}}'))
    result = run_cli(*es_setup(url))
    assert result.code == 1 and "reachable from the Elasticsearch nodes" in result.out


def test_api_key_and_basic_auth_headers(elasticsearch: EsFactory, run_cli: CliRunner) -> None:
    fake, url = elasticsearch()
    run_cli("elasticsearch", "status", "--url", url, env={"ELASTICSEARCH_API_KEY": "k3y-value"})
    assert fake.request_headers[-1]["authorization"] == "ApiKey k3y-value"
    run_cli("elasticsearch", "status", "--url", url, "--username", "elastic", "--password", "pw-1")
    expected = "Basic " + base64.b64encode(b"elastic:pw-1").decode()
    assert fake.request_headers[-1]["authorization"] == expected


def test_setup_without_a_token_still_sends_secret_parameters(
    elasticsearch: EsFactory, run_cli: CliRunner
) -> None:
    """8.19 / 9.1 specifications mark secret_parameters required: a placeholder fills it."""
    fake, url = elasticsearch(version="8.19.2")
    args = [a for a in es_setup(url) if a not in ("--sidecar-token", TOKEN)]
    result = run_cli(*args)
    assert result.code == 0, result.out
    settings = fake.endpoints["rerank-sidecar"]["service_settings"]
    assert settings["secret_parameters"] == {"api_key": "unused"}
    assert "Authorization" not in settings["headers"]
    assert "authorization" not in {k.lower() for k in fake.remote_headers[0]}
    calls = len(fake.calls)
    assert run_cli(*args).code == 0
    assert [c[0] for c in fake.calls[calls:]] == ["GET", "GET", "GET"]


def test_rerank_window_sets_the_retrievers_rank_window_size(
    elasticsearch: EsFactory, run_cli: CliRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = elasticsearch(version="9.1.0")
    for extra, window in (((), 50), (("--rerank-window", "30"), 30)):
        result = run_cli(*es_setup(url, *extra, "--json"))
        assert result.code == 0, result.out
        usage = json.loads(result.out)["usage"]
        (example,) = usage.values()
        assert example["retriever"]["text_similarity_reranker"]["rank_window_size"] == window
    result = run_cli(*es_setup(url, "--rerank-window", "0"))
    assert result.code == 2 and "--rerank-window" in capsys.readouterr().err
