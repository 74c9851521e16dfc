"""End-to-end contract: setup's own connectors and pipelines, filled and applied the way OpenSearch
does it (`mlcommons_sim`), against a real sidecar process (embedded CPU model).

Layer 2 of 3 (see conftest). The flow per path: run the CLI against the fake cluster -> search the
fake cluster -> it renders the request, fills the connector template (escaping, raw JSON), calls
the sidecar over HTTP with the stored bearer credential, post-processes, writes/rescores/sorts
per the processors -> we check the hits come back in the order the sidecar's scores say, with
those scores, and that requests without query text pass through untouched.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.es_integration import mlcommons_sim as sim
from tests.es_integration.conftest import TOKEN, CliRunner, ClusterFactory
from tests.es_integration.fake_elasticsearch import FakeElasticsearch
from tests.es_integration.fake_opensearch import FakeOpenSearch, serve
from tests.support.servers import sidecar_process

QUERY = 'how tall is the "Eiffel" tower / in metres?'
DOCS: list[dict[str, Any]] = [
    {"_id": "banana", "_source": {"title": "Bananas", "body": "Bananas are rich in potassium."}},
    {"_id": "paris", "_source": {"title": "Paris", "body": "Paris is the capital of France."}},
    {
        "_id": "height",
        "_source": {
            "title": "Eiffel Tower height",
            "body": "The Eiffel Tower is 330 metres tall, as high as an 81-storey building.",
        },
    },
    {
        "_id": "odd",
        "_source": {"title": 'He said "tall" / short \\ Zürich 東京', "body": ["a", "b"]},
    },
    {"_id": "bare", "_source": {"price": 3}},
]


@pytest.fixture(scope="module")
def live_sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m sidecar serve` (embedded CPU model) with an API token, on loopback."""
    log = tmp_path_factory.mktemp("sidecar") / "sidecar.log"
    env = {"RERANK_API_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1"}
    with sidecar_process(log, env=env) as server:
        yield server.url


def rerank_oracle(sidecar: str, query: str, texts: list[str]) -> list[float]:
    """The sidecar's own Cohere endpoint, called directly: scores in document order."""
    status, raw = sim.urllib_post(
        sidecar + "/v1/rerank",
        {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
        json.dumps({"query": query, "documents": texts}).encode(),
    )
    assert status == 200, raw
    scores = [0.0] * len(texts)
    for item in json.loads(raw)["results"]:
        scores[item["index"]] = item["relevance_score"]
    return scores


def search(url: str, body: dict[str, Any], pipeline: str | None = None) -> dict[str, Any]:
    target = url + "/products/_search" + (f"?search_pipeline={pipeline}" if pipeline else "")
    request = urllib.request.Request(
        target,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return dict(json.loads(response.read()))


def ids(response: dict[str, Any]) -> list[str]:
    return [hit["_id"] for hit in response["hits"]["hits"]]


def wire_cluster(
    opensearch: ClusterFactory, run_cli: CliRunner, sidecar: str, version: str, *extra: str
) -> tuple[FakeOpenSearch, str]:
    fake, url = opensearch(version=version, post=sim.urllib_post)
    fake.documents["products"] = json.loads(json.dumps(DOCS))
    result = run_cli(
        "opensearch",
        "setup",
        "--url",
        url,
        "--sidecar-url",
        sidecar,
        "--sidecar-token",
        TOKEN,
        "--fields",
        "title,body",
        "--index",
        "products",
        "--yes",
        *extra,
    )
    assert result.code == 0, result.out
    return fake, url


def assert_reranked(response: dict[str, Any], expected: dict[str, float]) -> None:
    hits = response["hits"]["hits"]
    scores = [hit["_score"] for hit in hits]
    assert scores == sorted(scores, reverse=True)
    assert hits[0]["_id"] == "height"
    for hit in hits:
        assert hit["_score"] == pytest.approx(expected[hit["_id"]], abs=2e-4), hit["_id"]
        assert "rerank_sidecar_score" not in hit["_source"]
    assert response["hits"]["max_score"] == hits[0]["_score"]


@pytest.mark.parametrize("version", ["2.17.0", "2.19.0"])
def test_ml_opensearch_path_212_to_2190(
    live_sidecar: str, opensearch: ClusterFactory, run_cli: CliRunner, version: str
) -> None:
    fake, url = wire_cluster(opensearch, run_cli, live_sidecar, version)
    plain = search(url, {"query": {"match": {"body": "tower"}}}, pipeline="_none")
    reranked = search(
        url,
        {
            "query": {"match": {"body": "tower"}},
            "ext": {"rerank": {"query_context": {"query_text": QUERY}}},
        },
    )
    # neural-search concatenates the fields with no separator, lists joined by a space.
    texts = [
        "BananasBananas are rich in potassium.",
        "ParisParis is the capital of France.",
        "Eiffel Tower heightThe Eiffel Tower is 330 metres tall, as high as an 81-storey building.",
        'He said "tall" / short \\ Zürich 東京a b',
        "",
    ]
    expected = dict(
        zip([d["_id"] for d in DOCS], rerank_oracle(live_sidecar, QUERY, texts), strict=True)
    )
    assert_reranked(reranked, expected)
    (call,) = fake.remote_calls
    sent = json.loads(call.body)  # the filled template is valid JSON despite quotes, / and \\
    assert sent["query"] == QUERY and sent["documents"] == texts and sent["top_n"] == 5
    assert call.headers["Authorization"] == f"Bearer {TOKEN}"
    assert '\\"Eiffel\\" tower \\/' in call.body  # commons-text escapeJson, then quoted by us
    # Unchanged clients (no ext.rerank): their hits, untouched; the failure is ignored.
    untouched = search(url, {"query": {"match": {"body": "tower"}}})
    assert untouched["hits"] == plain["hits"]
    assert len(fake.remote_calls) == 1 and fake.pipeline_errors
    counts = search(url, {"size": 0, "aggs": {"n": {"value_count": {"field": "price"}}}})
    assert counts["hits"]["hits"] == [] and len(fake.remote_calls) == 1


QUERY_SHAPES: list[dict[str, Any]] = [
    {"match": {"body": QUERY}},
    {"match_phrase": {"title": {"query": QUERY}}},
    {"multi_match": {"query": QUERY, "fields": ["title^2", "body"]}},
    {"query_string": {"query": QUERY.replace('"', "").replace("/", "") + " -banana"}},
    {"simple_query_string": {"query": QUERY.replace('"', "").replace("/", "")}},
    {"bool": {"must": [{"match": {"title": QUERY}}], "filter": [{"term": {"brand": "x"}}]}},
    {
        "bool": {
            "should": [{"match": {"body": QUERY}}, {"match": {"title": QUERY}}],
            "must_not": [{"match": {"body": "banana"}}],
        }
    },
]


def _dsl_expected(sidecar: str, query_text: str) -> dict[str, float]:
    # The sidecar's document rule: the listed fields joined by newlines, lists by spaces.
    texts = [
        "Bananas\nBananas are rich in potassium.",
        "Paris\nParis is the capital of France.",
        "Eiffel Tower height\nThe Eiffel Tower is 330 metres tall, as high as an 81-storey "
        "building.",
        'He said "tall" / short \\ Zürich 東京\na b',
        "",
    ]
    return dict(
        zip([d["_id"] for d in DOCS], rerank_oracle(sidecar, query_text, texts), strict=True)
    )


@pytest.mark.parametrize(
    "query", QUERY_SHAPES, ids=lambda q: next(iter(q)) + str(len(json.dumps(q)))
)
def test_ml_inference_by_field_path_reranks_plain_query_dsl(
    live_sidecar: str, opensearch: ClusterFactory, run_cli: CliRunner, query: dict[str, Any]
) -> None:
    fake, url = wire_cluster(opensearch, run_cli, live_sidecar, "2.19.1")
    response = search(url, {"query": query, "size": 10})
    (call,) = fake.remote_calls  # one call per search (one_to_one false)
    sent = json.loads(call.body)
    assert sent["query"] == sim.render_query(query)  # the whole DSL object, raw JSON
    assert sent["documents"][3]["title"] == DOCS[3]["_source"]["title"]
    answer = json.loads(call.response)
    assert_reranked(response, _dsl_expected(live_sidecar, answer["query_text"]))
    assert "eiffel" in answer["query_text"].lower() and "banana" not in answer["query_text"]
    assert fake.pipeline_errors == []


def test_requests_without_text_pass_through_untouched(
    live_sidecar: str, opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = wire_cluster(opensearch, run_cli, live_sidecar, "2.19.1")
    for body in (
        {"query": {"match_all": {}}},
        {"query": {"term": {"brand": "acme"}}},
        {},  # no query at all: fails before any call
        {
            "size": 0,
            "query": {"match": {"body": "tower"}},
            "aggs": {"p": {"max": {"field": "price"}}},
        },
    ):
        plain = search(url, body, pipeline="_none")
        assert search(url, body)["hits"] == plain["hits"], body
    # match_all and term (and, with a default for a missing query, the empty body) reached the
    # sidecar, which found no text: 422 no_query_text, passed over by ignore_failure.
    statuses = [call.status for call in fake.remote_calls]
    assert len(statuses) >= 2 and set(statuses) == {422}
    assert all(
        json.loads(c.response)["error"]["type"] == "no_query_text" for c in fake.remote_calls
    )


def test_one_to_one_gives_the_same_order_with_one_call_per_hit(
    live_sidecar: str, opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = wire_cluster(opensearch, run_cli, live_sidecar, "2.19.1", "--one-to-one")
    response = search(url, {"query": {"match": {"body": QUERY}}})
    assert len(fake.remote_calls) == len(DOCS)
    assert all(len(json.loads(c.body)["documents"]) == 1 for c in fake.remote_calls)
    query_text = json.loads(fake.remote_calls[0].response)["query_text"]
    assert_reranked(response, _dsl_expected(live_sidecar, query_text))


def test_status_predicts_through_both_models(
    live_sidecar: str, opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    _fake, url = wire_cluster(opensearch, run_cli, live_sidecar, "2.19.1")
    result = run_cli("opensearch", "status", "--url", url, "--fields", "title", "--json")
    assert result.code == 0, result.out
    tests = {c["resource"]: c for c in result.json()["changes"] if "test rerank" in c["resource"]}
    assert len(tests) == 2 and all(c["action"] == "ok" for c in tests.values())


def test_concurrent_one_to_one_calls_are_batched_by_the_sidecar(live_sidecar: str) -> None:
    """What one_to_one sends (one document per call, all hits at once) coalesces into fewer
    backend calls; timings go to the report, only the batching is asserted."""
    n = 24
    body = {"query": {"match": {"body": QUERY}}, "fields": ["title", "body"]}
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    before = _backend_calls(live_sidecar)
    barrier = threading.Barrier(n)
    results: list[int] = []

    def one(i: int) -> None:
        doc = DOCS[i % len(DOCS)]["_source"]
        payload = json.dumps({**body, "documents": [doc]}).encode()
        barrier.wait()
        status, _ = sim.urllib_post(live_sidecar + "/v1/rerank/query-dsl", headers, payload)
        results.append(status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    calls = _backend_calls(live_sidecar) - before
    print(
        f"\n{n} concurrent one-document calls: {elapsed * 1000:.0f} ms, {calls:.0f} backend calls"
    )
    assert results == [200] * n
    assert calls < n


def _backend_calls(sidecar: str) -> float:
    with urllib.request.urlopen(sidecar + "/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("rerank_backend_calls_total "):
                return float(line.split()[1])
    raise AssertionError("rerank_backend_calls_total not in /metrics")


def test_elasticsearch_custom_endpoint_json_paths(live_sidecar: str, run_cli: CliRunner) -> None:
    fake = FakeElasticsearch(version="8.19.3", post=sim.urllib_post)
    with serve(fake) as url:
        result = run_cli(
            "elasticsearch",
            "setup",
            "--url",
            url,
            "--sidecar-url",
            live_sidecar,
            "--sidecar-token",
            TOKEN,
            "--fields",
            "body",
        )
        assert result.code == 0, result.out  # ES's creation-time call reached the sidecar
        texts = [d["_source"].get("body", "") for d in DOCS]
        texts = [" ".join(t) if isinstance(t, list) else t for t in texts]
        status, answer = fake.handle(
            "POST", "/_inference/rerank/rerank-sidecar", {}, {"query": QUERY, "input": texts}
        )
    assert status == 200, answer
    ranked = answer["rerank"]
    assert sorted(r["index"] for r in ranked) == list(range(len(texts)))  # every doc, no top_n
    oracle = rerank_oracle(live_sidecar, QUERY, texts)
    for item in ranked:
        assert item["relevance_score"] == pytest.approx(oracle[item["index"]], abs=2e-4)
    assert ranked[0]["index"] == 2
    assert json.loads(fake.remote_bodies[-1]) == {"query": QUERY, "documents": texts}
